// Random normal bf16 weights generated on the device: each pair of values is a pure function of (seed, pair index)
// through SplitMix64 and the Box-Muller transform, so the bytes do not depend on the grid, the GPU or the run.
#include "kernels.cuh"

namespace rr {

namespace {

__device__ __forceinline__ uint64_t split_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

__global__ void fill_normal_kernel(bf16* __restrict__ out, uint64_t count, uint64_t seed, float mean, float std) {
    const uint64_t key = split_mix(seed);
    const uint64_t pairs = (count + 1) / 2;
    for (uint64_t pair = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; pair < pairs;
         pair += (uint64_t)gridDim.x * blockDim.x) {
        const uint64_t z1 = split_mix(key + 2 * pair), z2 = split_mix(key + 2 * pair + 1);
        const float u1 = (float)((z1 >> 40) + 1) * (1.0f / 16777216.0f);  // (0, 1]
        const float u2 = (float)(z2 >> 40) * (1.0f / 16777216.0f);        // [0, 1)
        const float radius = sqrtf(-2.0f * logf(u1));
        float s, c;
        sincospif(2.0f * u2, &s, &c);
        out[2 * pair] = __float2bfloat16_rn(mean + std * radius * c);
        if (2 * pair + 1 < count) out[2 * pair + 1] = __float2bfloat16_rn(mean + std * radius * s);
    }
}

}  // namespace

void launch_fill_normal(cudaStream_t s, bf16* out, uint64_t count, uint64_t seed, float mean, float std) {
    if (count == 0) return;
    fill_normal_kernel<<<4096, 256, 0, s>>>(out, count, seed, mean, std);
    check_launch("fill_normal");
}

}  // namespace rr
