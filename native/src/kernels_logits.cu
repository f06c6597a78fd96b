// Per logit row: the index of the largest logit among the first `limit` ids, so a greedy step returns token ids
// instead of its logit rows. The order is the host's (TensorPrimitives.IndexOfMax): NaN above every number, +0 above
// -0, and the lowest index among equals.
#include "kernels.cuh"

namespace rr {

namespace {

constexpr int kArgMaxThreads = 512;

struct Best {
    float value;
    int index;
};

__device__ __forceinline__ bool above(float a, int ia, float b, int ib) {
    const bool a_nan = isnan(a), b_nan = isnan(b);
    if (a_nan || b_nan) return a_nan && (!b_nan || ia < ib);
    if (a != b) return a > b;
    if (a == 0.f && signbit(a) != signbit(b)) return !signbit(a);
    return ia < ib;
}

__device__ __forceinline__ void take(Best& best, float value, int index) {
    if (above(value, index, best.value, best.index)) best = Best{value, index};
}

__global__ void __launch_bounds__(kArgMaxThreads) argmax_rows_kernel(const bf16* __restrict__ logits, int vocab, int limit, int32_t* __restrict__ out) {
    __shared__ Best warp_best[kArgMaxThreads / 32];
    const bf16* row = logits + (size_t)blockIdx.x * vocab;
    Best best{-INFINITY, INT_MAX};
    const int vectors = (vocab % 8 == 0) ? limit / 8 : 0;
    for (int v = threadIdx.x; v < vectors; v += blockDim.x) {
        const uint4 packed = reinterpret_cast<const uint4*>(row)[v];
        const bf16* x = reinterpret_cast<const bf16*>(&packed);
#pragma unroll
        for (int j = 0; j < 8; ++j) take(best, __bfloat162float(x[j]), v * 8 + j);
    }
    for (int i = vectors * 8 + threadIdx.x; i < limit; i += blockDim.x) take(best, __bfloat162float(row[i]), i);
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float value = __shfl_down_sync(0xffffffffu, best.value, offset);
        const int index = __shfl_down_sync(0xffffffffu, best.index, offset);
        take(best, value, index);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_best[warp] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kArgMaxThreads / 32; ++w) take(best, warp_best[w].value, warp_best[w].index);
        out[blockIdx.x] = best.index == INT_MAX ? 0 : best.index;
    }
}

}  // namespace

void launch_argmax_rows(cudaStream_t s, const bf16* logits, int rows, int vocab, int limit, int32_t* out) {
    if (rows <= 0) return;
    limit = limit > 0 && limit < vocab ? limit : vocab;
    argmax_rows_kernel<<<rows, kArgMaxThreads, 0, s>>>(logits, vocab, limit, out);
    check_launch("argmax_rows");
}

}  // namespace rr
