// Shared helpers: error reporting, bf16 rounding, fixed-order reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace rr {

typedef __nv_bfloat16 bf16;

// The calling thread's last error message (rr_last_error).
void set_error(const std::string& message);
const char* last_error();

// Thrown inside the library and turned into RR_ERROR at the C ABI boundary.
struct Failure {
    std::string message;
};

[[noreturn]] void fail(const std::string& message);
void check_cuda(cudaError_t status, const char* what);
void check_cublas(cublasStatus_t status, const char* what);
void check_launch(const char* kernel);

// Rounds to the nearest bf16 (ties to even) and back: the rounding every bf16 tensor operation applies.
__device__ __forceinline__ float bf16r(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the block in a fixed order (warp trees, then warps in order); every thread gets the result.
// scratch holds at least 33 floats; the call synchronizes the block.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.f;
        for (int w = 0; w < warps; ++w) total += scratch[w];
        scratch[32] = total;
    }
    __syncthreads();
    return scratch[32];
}

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace rr
