// The device's two ceilings, measured in the process that reports figures against them.
#include "kernels.cuh"
#include "routereplay_cuda.h"

#include <algorithm>
#include <vector>

namespace rr {

namespace {

template <typename F>
double median_ms(cudaStream_t s, F&& run) {
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    for (int i = 0; i < 3; ++i) run();
    std::vector<float> times;
    for (int i = 0; i < 10; ++i) {
        check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
        run();
        check_cuda(cudaEventRecord(stop, s), "cudaEventRecord");
        check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0.f;
        check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return 0.5 * (times[4] + times[5]);
}

// Sums 16-byte words of `words`, one partial per block: a read-only pass over the buffer.
__global__ void read_kernel(const uint4* __restrict__ words, size_t count, unsigned* __restrict__ partial) {
    unsigned sum = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = words[i];
        sum += v.x ^ v.y ^ v.z ^ v.w;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 16);
    if ((threadIdx.x & 31) == 0) atomicAdd(partial + blockIdx.x, sum);
}

}  // namespace

}  // namespace rr

using namespace rr;

extern "C" int rr_measure_ceilings(uint64_t copy_bytes, int32_t gemm_n, double* copy_gbps, double* read_gbps, double* gemm_tflops) {
    void *a = nullptr, *b = nullptr, *x = nullptr, *w = nullptr, *y = nullptr;
    cudaStream_t s = nullptr;
    cublasHandle_t handle = nullptr;
    int status = RR_OK;
    try {
        check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        check_cuda(cudaMalloc(&a, copy_bytes), "cudaMalloc(copy source)");
        check_cuda(cudaMalloc(&b, copy_bytes), "cudaMalloc(copy destination)");
        check_cuda(cudaMemsetAsync(a, 1, copy_bytes, s), "cudaMemset");
        const double copy_ms = median_ms(s, [&] {
            check_cuda(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
        });
        *copy_gbps = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
        int sms = 0;
        check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
        const int blocks = sms * 8;
        const size_t words = copy_bytes / 16;
        const double read_ms = median_ms(s, [&] {
            read_kernel<<<blocks, 512, 0, s>>>(static_cast<const uint4*>(a), words, static_cast<unsigned*>(b));
            check_launch("read");
        });
        *read_gbps = (double)words * 16 / (read_ms * 1e-3) / 1e9;
        cudaFree(a), cudaFree(b);
        a = b = nullptr;

        const size_t n = gemm_n, elements = n * n;
        check_cuda(cudaMalloc(&x, elements * 2), "cudaMalloc(gemm)");
        check_cuda(cudaMalloc(&w, elements * 2), "cudaMalloc(gemm)");
        check_cuda(cudaMalloc(&y, elements * 2), "cudaMalloc(gemm)");
        launch_fill_normal(s, static_cast<bf16*>(x), elements, 1, 0.f, 1.f);
        launch_fill_normal(s, static_cast<bf16*>(w), elements, 2, 0.f, 1.f);
        check_cublas(cublasCreate(&handle), "cublasCreate");
        check_cublas(cublasSetStream(handle, s), "cublasSetStream");
        const float alpha = 1.f, beta = 0.f;
        const double gemm_ms = median_ms(s, [&] {
            check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, gemm_n, gemm_n, gemm_n, &alpha, w, CUDA_R_16BF, gemm_n, x,
                                      CUDA_R_16BF, gemm_n, &beta, y, CUDA_R_16BF, gemm_n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx");
        });
        *gemm_tflops = 2.0 * n * n * n / (gemm_ms * 1e-3) / 1e12;
    } catch (const Failure& f) {
        set_error(f.message);
        status = RR_ERROR;
    }
    if (handle) cublasDestroy(handle);
    for (void* p : {a, b, x, w, y}) if (p) cudaFree(p);
    if (s) cudaStreamDestroy(s);
    return status;
}
