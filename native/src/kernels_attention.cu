// Paged causal attention for prefill chunks and decode alike: a token at position p attends to positions 0..p of
// its sequence, read from the KV cache through its block table (the chunk's own K and V were written before).
//
// One block per (token, KV head) serves the G query heads that share the KV head, so each K and V row is read once
// per token. The arithmetic is transformers' eager attention, rounding point by rounding point: score =
// bf16(bf16(q.k) * scale); p = bf16(exp(score - max) / sum) in fp32; out = bf16(sum_j p_j v_j) accumulated in fp32.
// Every sum runs over positions in a fixed order that depends only on the context length.
#include "kernels.cuh"

#include <cfloat>

namespace rr {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <int G>
__device__ __forceinline__ void reduce_heads(float (&v)[G], float* red, float* result, bool is_max) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int g = 0; g < G; ++g) {
        v[g] = is_max ? warp_max(v[g]) : warp_sum(v[g]);
    }
    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) red[warp * G + g] = v[g];
    }
    __syncthreads();
    if (threadIdx.x < G) {
        float total = is_max ? -FLT_MAX : 0.f;
        for (int w = 0; w < kWarps; ++w) {
            const float x = red[w * G + threadIdx.x];
            total = is_max ? fmaxf(total, x) : total + x;
        }
        result[threadIdx.x] = total;
    }
    __syncthreads();
}

template <int G, int HD>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs a, KvLayout kv) {
    const int t = blockIdx.x, kvh = blockIdx.y;
    if (a.slots[t] < 0) return;
    const int length = a.positions[t] + 1;
    extern __shared__ float smem[];
    float* qs = smem;                    // [G][HD]
    float* red = qs + G * HD;            // [warps][G]
    float* stat = red + kWarps * G;      // [G] max, then [G] sum
    bf16* scores = reinterpret_cast<bf16*>(stat + 2 * G);  // [G][chunk]
    const int chunk = a.chunk;

    const bf16* qt = a.q + (size_t)t * a.heads * HD + (size_t)kvh * G * HD;
    for (int i = threadIdx.x; i < G * HD; i += kThreads) qs[i] = __bfloat162float(qt[i]);
    __syncthreads();

    const int32_t* table = a.block_tables + (size_t)a.token_seq[t] * a.max_blocks_per_seq;
    const size_t plane = (size_t)kv.block_size * kv.kv_heads * HD;
    const bf16* cache = reinterpret_cast<const bf16*>(kv.kv);
    auto key_row = [&](int j) -> const bf16* {
        const int block = table[j / kv.block_size], offset = j % kv.block_size;
        return cache + ((size_t)block * kv.num_layers + a.layer) * 2 * plane + ((size_t)offset * kv.kv_heads + kvh) * HD;
    };
    auto score = [&](int j, float (&s)[G]) {
        const bf16* kr = key_row(j);
        float acc[G];
#pragma unroll
        for (int g = 0; g < G; ++g) acc[g] = 0.f;
#pragma unroll 2
        for (int d0 = 0; d0 < HD; d0 += 8) {
            const uint4 raw = *reinterpret_cast<const uint4*>(kr + d0);
            const bf16* kb = reinterpret_cast<const bf16*>(&raw);
            float kf[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) kf[e] = __bfloat162float(kb[e]);
#pragma unroll
            for (int g = 0; g < G; ++g) {
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[g] = fmaf(qs[g * HD + d0 + e], kf[e], acc[g]);
            }
        }
#pragma unroll
        for (int g = 0; g < G; ++g) s[g] = bf16r(bf16r(acc[g]) * a.scale);
    };

    const bool stored = length <= chunk;
    float m[G];
#pragma unroll
    for (int g = 0; g < G; ++g) m[g] = -FLT_MAX;
    for (int j = threadIdx.x; j < length; j += kThreads) {
        float s[G];
        score(j, s);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            m[g] = fmaxf(m[g], s[g]);
            if (stored) scores[g * chunk + j] = __float2bfloat16_rn(s[g]);
        }
    }
    reduce_heads<G>(m, red, stat, true);

    float sum[G];
#pragma unroll
    for (int g = 0; g < G; ++g) sum[g] = 0.f;
    for (int j = threadIdx.x; j < length; j += kThreads) {
        float s[G];
        if (stored) {
#pragma unroll
            for (int g = 0; g < G; ++g) s[g] = __bfloat162float(scores[g * chunk + j]);
        } else {
            score(j, s);
        }
#pragma unroll
        for (int g = 0; g < G; ++g) sum[g] += expf(s[g] - stat[g]);
    }
    reduce_heads<G>(sum, red, stat + G, false);

    constexpr int kOut = (G * HD + kThreads - 1) / kThreads;
    float acc[kOut];
#pragma unroll
    for (int o = 0; o < kOut; ++o) acc[o] = 0.f;
    for (int c0 = 0; c0 < length; c0 += chunk) {
        const int count = min(chunk, length - c0);
        __syncthreads();
        for (int jj = threadIdx.x; jj < count; jj += kThreads) {
            float s[G];
            if (stored) {
#pragma unroll
                for (int g = 0; g < G; ++g) s[g] = __bfloat162float(scores[g * chunk + jj]);
            } else {
                score(c0 + jj, s);
            }
#pragma unroll
            for (int g = 0; g < G; ++g) scores[g * chunk + jj] = __float2bfloat16_rn(expf(s[g] - stat[g]) / stat[G + g]);
        }
        __syncthreads();
        for (int jj = 0; jj < count; ++jj) {
            const bf16* vr = key_row(c0 + jj) + plane;
#pragma unroll
            for (int o = 0; o < kOut; ++o) {
                const int idx = threadIdx.x + o * kThreads;
                if (idx < G * HD) {
                    const int g = idx / HD, d = idx % HD;
                    acc[o] = fmaf(__bfloat162float(scores[g * chunk + jj]), __bfloat162float(vr[d]), acc[o]);
                }
            }
        }
    }
    bf16* out = a.out + (size_t)t * a.heads * HD + (size_t)kvh * G * HD;
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
        const int idx = threadIdx.x + o * kThreads;
        if (idx < G * HD) out[idx] = __float2bfloat16_rn(acc[o]);
    }
}

typedef void (*AttentionKernel)(AttentionArgs, KvLayout);

// The (group, head_dim) pairs compiled: the presets and the Qwen3-MoE family.
AttentionKernel select(int group, int head_dim) {
#define RR_ATTENTION_CASE(G, HD) \
    if (group == G && head_dim == HD) return attention_kernel<G, HD>;
    RR_ATTENTION_CASE(1, 64) RR_ATTENTION_CASE(2, 64) RR_ATTENTION_CASE(4, 64) RR_ATTENTION_CASE(8, 64)
    RR_ATTENTION_CASE(1, 128) RR_ATTENTION_CASE(2, 128) RR_ATTENTION_CASE(4, 128) RR_ATTENTION_CASE(8, 128)
    RR_ATTENTION_CASE(16, 128)
    RR_ATTENTION_CASE(2, 16) RR_ATTENTION_CASE(4, 32) RR_ATTENTION_CASE(2, 32) RR_ATTENTION_CASE(4, 16)
#undef RR_ATTENTION_CASE
    return nullptr;
}

}  // namespace

bool attention_supported(int group, int head_dim) { return select(group, head_dim) != nullptr; }

size_t attention_smem_bytes(int group, int head_dim, int chunk) {
    return sizeof(float) * ((size_t)group * head_dim + (size_t)kWarps * group + 2 * (size_t)group) +
           sizeof(bf16) * (size_t)group * chunk;
}

void attention_prepare(int group, int head_dim, size_t smem_bytes) {
    check_cuda(cudaFuncSetAttribute(select(group, head_dim), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes),
               "cudaFuncSetAttribute(attention)");
}

void launch_attention(cudaStream_t s, const AttentionArgs& a, const KvLayout& kv) {
    const int group = a.heads / kv.kv_heads;
    const dim3 grid(a.tokens, kv.kv_heads);
    select(group, kv.head_dim)<<<grid, kThreads, attention_smem_bytes(group, kv.head_dim, a.chunk), s>>>(a, kv);
    check_launch("attention");
}

}  // namespace rr
