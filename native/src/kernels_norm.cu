// Embedding, RMSNorm, residual adds, SwiGLU activation, q/k norm with RoPE and the KV-cache write.
#include "kernels.cuh"

namespace rr {

namespace {

constexpr int kNormThreads = 256;

__global__ void embed_kernel(const int32_t* __restrict__ ids, const bf16* __restrict__ embed, bf16* __restrict__ hidden,
                             int hidden_size) {
    const int t = blockIdx.x;
    const uint4* src = reinterpret_cast<const uint4*>(embed + (size_t)ids[t] * hidden_size);
    uint4* dst = reinterpret_cast<uint4*>(hidden + (size_t)t * hidden_size);
    for (int i = threadIdx.x; i < hidden_size / 8; i += blockDim.x) dst[i] = src[i];
}

// Mean of squares as transformers computes it: each square rounded to fp32, summed, times 1/n.
__device__ __forceinline__ float rms_inverse(float sum_squares, int n, float eps) {
    return rsqrtf(__fadd_rn(__fmul_rn(sum_squares, 1.0f / (float)n), eps));
}

__global__ void rmsnorm_kernel(const bf16* __restrict__ x, const int32_t* __restrict__ rows, const bf16* __restrict__ weight,
                               bf16* __restrict__ y, int hidden_size, float eps) {
    __shared__ float scratch[33];
    const int t = blockIdx.x;
    const int row = rows ? rows[t] : t;
    const bf16* xr = x + (size_t)row * hidden_size;
    float ss = 0.f;
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
        const float v = __bfloat162float(xr[i]);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    const float r = rms_inverse(block_sum(ss, scratch), hidden_size, eps);
    bf16* yr = y + (size_t)t * hidden_size;
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
        const float normalized = bf16r(__bfloat162float(xr[i]) * r);
        yr[i] = __float2bfloat16_rn(__bfloat162float(weight[i]) * normalized);
    }
}

__global__ void add_rmsnorm_kernel(bf16* __restrict__ hidden, const bf16* __restrict__ delta, const bf16* __restrict__ weight,
                                   bf16* __restrict__ y, int hidden_size, float eps) {
    __shared__ float scratch[33];
    const int t = blockIdx.x;
    bf16* hr = hidden + (size_t)t * hidden_size;
    const bf16* dr = delta + (size_t)t * hidden_size;
    float ss = 0.f;
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
        const bf16 sum = __float2bfloat16_rn(__bfloat162float(hr[i]) + __bfloat162float(dr[i]));
        hr[i] = sum;
        const float v = __bfloat162float(sum);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    const float r = rms_inverse(block_sum(ss, scratch), hidden_size, eps);
    bf16* yr = y + (size_t)t * hidden_size;
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
        const float normalized = bf16r(__bfloat162float(hr[i]) * r);
        yr[i] = __float2bfloat16_rn(__bfloat162float(weight[i]) * normalized);
    }
}

__global__ void add_kernel(bf16* __restrict__ hidden, const bf16* __restrict__ delta, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        hidden[i] = __float2bfloat16_rn(__bfloat162float(hidden[i]) + __bfloat162float(delta[i]));
    }
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

__global__ void silu_mul_kernel(bf16* __restrict__ gate, const bf16* __restrict__ up, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        const float activated = bf16r(silu(__bfloat162float(gate[i])));
        gate[i] = __float2bfloat16_rn(activated * __bfloat162float(up[i]));
    }
}

__global__ void to_f32_kernel(const bf16* __restrict__ x, float* __restrict__ y, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        y[i] = __bfloat162float(x[i]);
    }
}

// One block per token, one warp per head (looping): RMSNorm over head_dim, then RoPE in the half-rotation layout
// with cos/sin computed in fp32 and rounded to bf16, each product and the sum rounded as bf16 tensor operations do.
__global__ void qk_norm_rope_cache_kernel(bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                                          int64_t stride, const bf16* __restrict__ q_norm, const bf16* __restrict__ k_norm,
                                          const int32_t* __restrict__ positions, const int32_t* __restrict__ slots,
                                          const float* __restrict__ inv_freq, float attention_scaling, float eps,
                                          int heads, KvLayout kv, int layer) {
    extern __shared__ float buffers[];
    const int t = blockIdx.x;
    const int slot = slots[t];
    if (slot < 0) return;
    const int hd = kv.head_dim, half = hd / 2, kvh = kv.kv_heads;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float position = (float)positions[t];
    float* buf = buffers + warp * hd;
    const int block = slot / kv.block_size, offset = slot % kv.block_size;
    const size_t plane = (size_t)kv.block_size * kvh * hd;
    bf16* cache = reinterpret_cast<bf16*>(kv.kv) + ((size_t)block * kv.num_layers + layer) * 2 * plane + (size_t)offset * kvh * hd;

    for (int head = warp; head < heads + kvh; head += warps) {
        const bool is_q = head < heads;
        const bf16* src = is_q ? q + (size_t)t * stride + (size_t)head * hd : k + (size_t)t * stride + (size_t)(head - heads) * hd;
        const bf16* w = is_q ? q_norm : k_norm;
        float ss = 0.f;
        for (int d = lane; d < hd; d += 32) {
            const float x = __bfloat162float(src[d]);
            ss = __fadd_rn(ss, __fmul_rn(x, x));
        }
        const float r = rms_inverse(warp_sum(ss), hd, eps);
        for (int d = lane; d < hd; d += 32) {
            buf[d] = bf16r(__bfloat162float(w[d]) * bf16r(__bfloat162float(src[d]) * r));
        }
        __syncwarp();
        bf16* dst = is_q ? q + (size_t)t * stride + (size_t)head * hd : cache + (size_t)(head - heads) * hd;
        for (int d = lane; d < hd; d += 32) {
            const int i = d < half ? d : d - half;
            const float angle = inv_freq[i] * position;
            const float c = bf16r(cosf(angle) * attention_scaling);
            const float s = bf16r(sinf(angle) * attention_scaling);
            const float rotated = d < half ? -buf[d + half] : buf[d - half];
            dst[d] = __float2bfloat16_rn(bf16r(buf[d] * c) + bf16r(rotated * s));
        }
        __syncwarp();
    }
    const bf16* vr = v + (size_t)t * stride;
    bf16* vc = cache + plane;
    for (int i = threadIdx.x; i < kvh * hd; i += blockDim.x) vc[i] = vr[i];
}

int grid_for(int64_t count, int threads) {
    const int64_t blocks = (count + threads - 1) / threads;
    return (int)(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace

void launch_embed(cudaStream_t s, const int32_t* ids, const bf16* embed, bf16* hidden, int tokens, int hidden_size) {
    embed_kernel<<<tokens, 128, 0, s>>>(ids, embed, hidden, hidden_size);
    check_launch("embed");
}

void launch_rmsnorm(cudaStream_t s, const bf16* x, const int32_t* rows, const bf16* weight, bf16* y, int tokens,
                    int hidden_size, float eps) {
    rmsnorm_kernel<<<tokens, kNormThreads, 0, s>>>(x, rows, weight, y, hidden_size, eps);
    check_launch("rmsnorm");
}

void launch_add_rmsnorm(cudaStream_t s, bf16* hidden, const bf16* delta, const bf16* weight, bf16* y, int tokens,
                        int hidden_size, float eps) {
    add_rmsnorm_kernel<<<tokens, kNormThreads, 0, s>>>(hidden, delta, weight, y, hidden_size, eps);
    check_launch("add_rmsnorm");
}

void launch_add(cudaStream_t s, bf16* hidden, const bf16* delta, int64_t count) {
    add_kernel<<<grid_for(count, 256), 256, 0, s>>>(hidden, delta, count);
    check_launch("add");
}

void launch_silu_mul(cudaStream_t s, bf16* gate, const bf16* up, int64_t count) {
    silu_mul_kernel<<<grid_for(count, 256), 256, 0, s>>>(gate, up, count);
    check_launch("silu_mul");
}

void launch_to_f32(cudaStream_t s, const bf16* x, float* y, int64_t count) {
    to_f32_kernel<<<grid_for(count, 256), 256, 0, s>>>(x, y, count);
    check_launch("to_f32");
}

void launch_qk_norm_rope_cache(cudaStream_t s, bf16* q, const bf16* k, const bf16* v, int64_t stride, const bf16* q_norm,
                               const bf16* k_norm, const int32_t* positions, const int32_t* slots,
                               const float* inv_freq, float attention_scaling, float eps, int tokens, int heads,
                               const KvLayout& kv, int layer) {
    const int threads = 256;
    const size_t smem = (size_t)(threads / 32) * kv.head_dim * sizeof(float);
    qk_norm_rope_cache_kernel<<<tokens, threads, smem, s>>>(q, k, v, stride, q_norm, k_norm, positions, slots, inv_freq,
                                                           attention_scaling, eps, heads, kv, layer);
    check_launch("qk_norm_rope_cache");
}

}  // namespace rr
