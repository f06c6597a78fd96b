// The arithmetic of attention, shared by every kernel that computes it, so a token's output has the same bits whether
// it is computed in a prefill tile, alone, in a decode batch, or split over many warps.
//
// For a query row at position p, the context 0..p is cut into blocks of 64 positions aligned to position 0. Block b
// gives a partial:
//   s_j  = (q . k_j) * scale * log2(e)        q . k_j on tensor cores, fp32, head dims in order 16 at a time
//   m_b  = max_j s_j                          over j <= p in the block
//   p_j  = exp2(s_j - m_b); l_b = sum_j p_j   the sum in a fixed order (a thread's columns in order, then its quad)
//   a_b  = sum_j bf16(p_j) v_j                on tensor cores, positions in order 16 at a time
// and the partials are folded in block order: the first is taken as it is, then
//   m = max(m, m_b); alpha = exp2(m_old - m); beta = exp2(m_b - m); l = l alpha + l_b beta; a = a alpha + a_b beta
// with every product and sum rounded separately (no contraction), and out = bf16(a / l). A block in which a row sees
// no position (a prefill tile's later block for its earlier tokens) is skipped for that row.
#pragma once

#include "kernels.cuh"
#include "mma.cuh"

namespace rr {

constexpr int kAttentionBlock = 64;

template <int HD>
struct AttentionTile {
    static constexpr int LD = HD + 8;  // shared row stride in elements: conflict-free ldmatrix
};

__device__ __forceinline__ void merge_one(float& m, float& l, float& acc, float m_b, float l_b, float acc_b) {
    const float m_new = fmaxf(m, m_b);
    const float alpha = exp2f(__fsub_rn(m, m_new)), beta = exp2f(__fsub_rn(m_b, m_new));
    l = __fadd_rn(__fmul_rn(l, alpha), __fmul_rn(l_b, beta));
    acc = __fadd_rn(__fmul_rn(acc, alpha), __fmul_rn(acc_b, beta));
    m = m_new;
}

// One warp's 16 query rows over one block. A thread holds rows g and g + 8 (h = 0, 1) and, of the output, dims
// 8 j + 2 t and 8 j + 2 t + 1 of each n-tile j.
template <int HD>
struct AttentionPartial {
    float m[2], l[2];
    float acc[HD / 8][4];

    // Partials of decode rows 0..rows-1 to global memory: m and l at [row_base + row][block], acc at [...][block][HD].
    __device__ void store(float* pm, float* pl, float* pacc, size_t row_base, int max_blocks, int block, int rows, int lane) const {
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = g + 8 * h;
            if (row >= rows) continue;
            const size_t at = (row_base + row) * max_blocks + block;
            if (t == 0) {
                pm[at] = m[h];
                pl[at] = l[h];
            }
#pragma unroll
            for (int j = 0; j < HD / 8; ++j) {
                *reinterpret_cast<float2*>(pacc + at * HD + 8 * j + 2 * t) = make_float2(acc[j][2 * h], acc[j][2 * h + 1]);
            }
        }
    }
};

template <int HD>
struct AttentionState {
    float m[2], l[2];
    float acc[HD / 8][4];

    __device__ void reset() {
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.f;
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    }

    __device__ void merge(const AttentionPartial<HD>& p) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            if (p.m[h] == -INFINITY) continue;
            if (m[h] == -INFINITY) {
                m[h] = p.m[h];
                l[h] = p.l[h];
#pragma unroll
                for (int j = 0; j < HD / 8; ++j) {
                    acc[j][2 * h] = p.acc[j][2 * h];
                    acc[j][2 * h + 1] = p.acc[j][2 * h + 1];
                }
                continue;
            }
            const float m_new = fmaxf(m[h], p.m[h]);
            const float alpha = exp2f(__fsub_rn(m[h], m_new)), beta = exp2f(__fsub_rn(p.m[h], m_new));
            l[h] = __fadd_rn(__fmul_rn(l[h], alpha), __fmul_rn(p.l[h], beta));
#pragma unroll
            for (int j = 0; j < HD / 8; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float& a = acc[j][2 * h + e];
                    a = __fadd_rn(__fmul_rn(a, alpha), __fmul_rn(p.acc[j][2 * h + e], beta));
                }
            }
            m[h] = m_new;
        }
    }

    // out[offset(row) + d] = bf16(acc / l) for the thread's rows whose offset is not negative.
    template <typename Offset>
    __device__ void store(bf16* out, Offset&& offset, int lane) const {
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t at = offset(g + 8 * h);
            if (at < 0) continue;
#pragma unroll
            for (int j = 0; j < HD / 8; ++j) {
                const __nv_bfloat162 v = __floats2bfloat162_rn(__fdiv_rn(acc[j][2 * h], l[h]), __fdiv_rn(acc[j][2 * h + 1], l[h]));
                *reinterpret_cast<__nv_bfloat162*>(out + at + 8 * j + 2 * t) = v;
            }
        }
    }
};

// The partial of positions [start, start + 64) for the warp's 16 query rows (qs: 16 x HD in shared memory); a row sees
// positions <= row_limit[h] (-1: none).
template <int HD>
__device__ __forceinline__ void block_partial(AttentionPartial<HD>& part, const bf16* qs, const bf16* ks, const bf16* vs, int start,
                                              const int (&row_limit)[2], float scale_log2, int lane) {
    constexpr int LD = AttentionTile<HD>::LD;
    const int t = lane & 3;
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        unsigned q[4];
        ldmatrix_x4(q, qs + a_frag_row(lane) * LD + kk * 16 + a_frag_col(lane));
#pragma unroll
        for (int jp = 0; jp < 4; ++jp) {
            unsigned b[4];
            ldmatrix_x4(b, ks + (jp * 16 + b_frag_row(lane)) * LD + kk * 16 + b_frag_col(lane));
            mma_bf16(s[2 * jp], q, b[0], b[1]);
            mma_bf16(s[2 * jp + 1], q, b[2], b[3]);
        }
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int position = start + 8 * j + 2 * t + e;
                float& x = s[j][2 * h + e];
                x = position <= row_limit[h] ? __fmul_rn(x, scale_log2) : -INFINITY;
                m = fmaxf(m, x);
            }
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        part.m[h] = m;
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float& x = s[j][2 * h + e];
                x = m == -INFINITY ? 0.f : exp2f(__fsub_rn(x, m));
                sum[h] = __fadd_rn(sum[h], x);
            }
        sum[h] = __fadd_rn(sum[h], __shfl_xor_sync(0xffffffffu, sum[h], 1));
        sum[h] = __fadd_rn(sum[h], __shfl_xor_sync(0xffffffffu, sum[h], 2));
        part.l[h] = sum[h];
    }
    unsigned p[4][4];
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
        p[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
        p[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
        p[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        p[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) part.acc[j][0] = part.acc[j][1] = part.acc[j][2] = part.acc[j][3] = 0.f;
#pragma unroll
    for (int dp = 0; dp < HD / 16; ++dp) {
#pragma unroll
        for (int kc = 0; kc < 4; ++kc) {
            unsigned b[4];
            ldmatrix_x4_trans(b, vs + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
            mma_bf16(part.acc[2 * dp], p[kc], b[0], b[1]);
            mma_bf16(part.acc[2 * dp + 1], p[kc], b[2], b[3]);
        }
    }
}

}  // namespace rr
