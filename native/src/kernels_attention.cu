// Paged causal attention for prefill chunks and decode alike: a token at position p attends to positions 0..p of
// its sequence, read from the KV cache through its block table (the chunk's own K and V were written before).
//
// One block per (token, KV head) serves the G query heads that share the KV head, so each K and V row is read once
// per token; scores of up to `chunk` positions stay in shared memory, longer contexts recompute them per chunk. The arithmetic is transformers' eager attention, rounding point by rounding point: score =
// bf16(bf16(q.k) * scale); p = bf16(exp(score - max) / sum) in fp32; out = bf16(sum_j p_j v_j) accumulated in fp32.
// Every sum runs over positions in a fixed order that depends only on the context length.
#include "kernels.cuh"

#include <cfloat>

namespace rr {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Combines one value per head per warp (uniform within each warp) over the warps in order; result[g] for all.
template <int G>
__device__ __forceinline__ void combine_warps(const float (&v)[G], float* red, float* result, bool is_max) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
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

template <int E>
__device__ __forceinline__ void load_row(const bf16* p, float (&out)[E]) {
    if constexpr (E == 8) {
        const uint4 raw = *reinterpret_cast<const uint4*>(p);
        const bf16* b = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
        for (int e = 0; e < 8; ++e) out[e] = __bfloat162float(b[e]);
    } else if constexpr (E == 4) {
        const uint2 raw = *reinterpret_cast<const uint2*>(p);
        const bf16* b = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
        for (int e = 0; e < 4; ++e) out[e] = __bfloat162float(b[e]);
    } else if constexpr (E == 2) {
        const unsigned raw = *reinterpret_cast<const unsigned*>(p);
        const bf16* b = reinterpret_cast<const bf16*>(&raw);
        out[0] = __bfloat162float(b[0]);
        out[1] = __bfloat162float(b[1]);
    } else {
        out[0] = __bfloat162float(p[0]);
    }
}

// Warps take positions in turn (warp w: positions w, w + 8, ...); a warp's lanes split head_dim, each lane holding
// its E dimensions of the G query heads in registers. A score is a lane-ordered partial dot product reduced by a
// fixed xor tree; a warp's value accumulators are combined over the warps in order at the end. Every order depends
// only on the context length.
template <int G, int HD>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs a, KvLayout kv) {
    constexpr int E = HD >= 32 ? HD / 32 : 1;
    constexpr int LANES = HD / E;
    const int t = blockIdx.x, kvh = blockIdx.y;
    if (a.slots[t] < 0) return;
    const int length = a.positions[t] + 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool active = lane < LANES;
    extern __shared__ float smem[];
    float* red = smem;                   // [warps][G]
    float* stat = red + kWarps * G;      // [G] max, then [G] sum
    float* region = stat + 2 * G;        // scores [G][chunk] (bf16), finally [warps][G * HD] (fp32)
    bf16* scores = reinterpret_cast<bf16*>(region);
    const int chunk = a.chunk;

    float q[G][E];
    const bf16* qt = a.q + (size_t)t * a.heads * HD + (size_t)kvh * G * HD;
#pragma unroll
    for (int g = 0; g < G; ++g) {
        if (active) {
            load_row<E>(qt + g * HD + lane * E, q[g]);
        } else {
#pragma unroll
            for (int e = 0; e < E; ++e) q[g][e] = 0.f;
        }
    }

    const int32_t* table = a.block_tables + (size_t)a.token_seq[t] * a.max_blocks_per_seq;
    const size_t plane = (size_t)kv.block_size * kv.kv_heads * HD;
    const bf16* cache = reinterpret_cast<const bf16*>(kv.kv);
    auto key_row = [&](int j) -> const bf16* {
        const int block = table[j / kv.block_size], offset = j % kv.block_size;
        return cache + ((size_t)block * kv.num_layers + a.layer) * 2 * plane + ((size_t)offset * kv.kv_heads + kvh) * HD;
    };
    // The whole warp computes position j's G scores; every lane ends with all of them.
    auto score = [&](int j, float (&s)[G]) {
        float k[E];
        if (active) {
            load_row<E>(key_row(j) + lane * E, k);
        } else {
#pragma unroll
            for (int e = 0; e < E; ++e) k[e] = 0.f;
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float acc = 0.f;
#pragma unroll
            for (int e = 0; e < E; ++e) acc = fmaf(q[g][e], k[e], acc);
            s[g] = bf16r(bf16r(warp_sum(acc)) * a.scale);
        }
    };
    auto store = [&](float (&s)[G], int jj) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            if (lane == g) scores[g * chunk + jj] = __float2bfloat16_rn(s[g]);
        }
    };

    const bool stored = length <= chunk;
    float m[G];
#pragma unroll
    for (int g = 0; g < G; ++g) m[g] = -FLT_MAX;
    for (int j = warp; j < length; j += kWarps) {
        float s[G];
        score(j, s);
#pragma unroll
        for (int g = 0; g < G; ++g) m[g] = fmaxf(m[g], s[g]);
        if (stored) store(s, j);
    }
    combine_warps<G>(m, red, stat, true);

    // Sums of exp(score - max): with the scores in shared memory every thread takes positions in turn and the
    // warps' sums are combined in order; otherwise each warp recomputes its positions' scores.
    float sum[G];
#pragma unroll
    for (int g = 0; g < G; ++g) sum[g] = 0.f;
    if (stored) {
        for (int j = threadIdx.x; j < length; j += kThreads) {
#pragma unroll
            for (int g = 0; g < G; ++g) sum[g] += expf(__bfloat162float(scores[g * chunk + j]) - stat[g]);
        }
#pragma unroll
        for (int g = 0; g < G; ++g) sum[g] = warp_sum(sum[g]);
    } else {
        for (int j = warp; j < length; j += kWarps) {
            float s[G];
            score(j, s);
#pragma unroll
            for (int g = 0; g < G; ++g) sum[g] += expf(s[g] - stat[g]);
        }
    }
    combine_warps<G>(sum, red, stat + G, false);

    float acc[G][E];
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
    }
    for (int c0 = 0; c0 < length; c0 += chunk) {
        const int count = min(chunk, length - c0);
        __syncthreads();
        if (stored) {
            for (int jj = threadIdx.x; jj < count; jj += kThreads) {
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const float e = expf(__bfloat162float(scores[g * chunk + jj]) - stat[g]);
                    scores[g * chunk + jj] = __float2bfloat16_rn(e / stat[G + g]);
                }
            }
        } else {
            for (int jj = warp; jj < count; jj += kWarps) {
                float s[G];
                score(c0 + jj, s);
#pragma unroll
                for (int g = 0; g < G; ++g) s[g] = bf16r(expf(s[g] - stat[g]) / stat[G + g]);
                store(s, jj);
            }
        }
        __syncthreads();
#pragma unroll 2
        for (int jj = warp; jj < count; jj += kWarps) {
            float v[E];
            if (active) {
                load_row<E>(key_row(c0 + jj) + plane + lane * E, v);
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) v[e] = 0.f;
            }
#pragma unroll
            for (int g = 0; g < G; ++g) {
                const float p = __bfloat162float(scores[g * chunk + jj]);
#pragma unroll
                for (int e = 0; e < E; ++e) acc[g][e] = fmaf(p, v[e], acc[g][e]);
            }
        }
    }
    __syncthreads();
    float* partial = region;  // [warps][G * HD]
    if (active) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int e = 0; e < E; ++e) partial[warp * G * HD + g * HD + lane * E + e] = acc[g][e];
        }
    }
    __syncthreads();
    bf16* out = a.out + (size_t)t * a.heads * HD + (size_t)kvh * G * HD;
    for (int o = threadIdx.x; o < G * HD; o += kThreads) {
        float total = 0.f;
        for (int w = 0; w < kWarps; ++w) total += partial[w * G * HD + o];
        out[o] = __float2bfloat16_rn(total);
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
    const size_t scores = sizeof(bf16) * (size_t)group * chunk;
    const size_t partials = sizeof(float) * (size_t)kWarps * group * head_dim;
    return sizeof(float) * ((size_t)kWarps * group + 2 * (size_t)group) + (scores > partials ? scores : partials);
}

int attention_chunk(int group, int head_dim, int max_model_len, size_t budget) {
    const size_t fixed = sizeof(float) * ((size_t)kWarps * group + 2 * (size_t)group);
    if (attention_smem_bytes(group, head_dim, 1) > budget) return 0;
    const size_t fit = (budget - fixed) / (sizeof(bf16) * group);
    return (int)(fit < (size_t)max_model_len ? fit : (size_t)max_model_len);
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
