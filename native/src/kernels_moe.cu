// The sparse MoE block on the device, with no host synchronization: router softmax and top-k (or forced experts)
// writing the step's routing buffer, a one-block plan that groups assignments by expert into tiles (the grouped GEMMs
// of kernels_moe_gemm.cu read that tile map from device memory), and the weighted combine with the residual add.
#include "kernels.cuh"

namespace rr {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Router: one warp per token. Probabilities are softmax(bf16 logits) in fp32; top-k runs over the probabilities in
// descending order with ties to the lower expert id (torch.topk's choice); a forced row replaces the choice but its
// weights are still the router's probabilities of the forced experts. The (renormalised) weights are rounded to bf16,
// the router logits' dtype, as transformers rounds them before the experts use them.

constexpr int kRouteWarps = 4;

__device__ __forceinline__ int read_element(const uint8_t* row, int index, int element_bytes) {
    return element_bytes == 1 ? row[index] : (int)row[2 * index] | ((int)row[2 * index + 1] << 8);
}

__global__ void route_kernel(RouteArgs a) {
    extern __shared__ float probabilities[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int t = blockIdx.x * kRouteWarps + warp;
    if (t >= a.tokens) return;
    const int E = a.experts, K = a.top_k;
    if (a.slots[t] < 0) {
        if (lane < K) a.topk_ids[t * K + lane] = -1;
        return;
    }
    float* p = probabilities + warp * E;
    const bf16* logits = a.logits + (size_t)t * E;
    // A logit that is not finite counts as -inf (the token is flagged and its request fails): probabilities stay in
    // [0, 1] and every id chosen below stays inside [0, E).
    float m = -INFINITY;
    bool finite = true;
    for (int e = lane; e < E; e += 32) {
        float x = __bfloat162float(logits[e]);
        if (!isfinite(x)) {
            finite = false;
            x = -INFINITY;
        }
        p[e] = x;
        m = fmaxf(m, x);
    }
    m = warp_max(m);
    finite = __all_sync(0xffffffffu, finite);
    const bool any = m > -INFINITY;
    float sum = 0.f;
    for (int e = lane; e < E; e += 32) {
        const float x = any ? expf(p[e] - m) : 0.f;
        p[e] = x;
        sum += x;
    }
    sum = warp_sum(sum);
    for (int e = lane; e < E; e += 32) p[e] = any ? p[e] / sum : 0.f;
    __syncwarp();

    const uint8_t* forced = a.forced ? a.forced + (size_t)t * a.row_bytes : nullptr;
    const int sentinel = a.element_bytes == 1 ? 0xFF : 0xFFFF;
    const bool use_forced = forced && read_element(forced, 0, a.element_bytes) != sentinel;
    int mine = 0;
    float weight = 0.f;
    if (use_forced) {
        if (lane < K) {
            mine = min(read_element(forced, a.moe_index * K + lane, a.element_bytes), E - 1);
            weight = p[mine];
        }
    } else {
        for (int j = 0; j < K; ++j) {
            float best = -1.f;
            int best_id = E;
            for (int e = lane; e < E; e += 32) {
                if (p[e] > best) {
                    best = p[e];
                    best_id = e;
                }
            }
            for (int offset = 16; offset > 0; offset >>= 1) {
                const float other = __shfl_xor_sync(0xffffffffu, best, offset);
                const int other_id = __shfl_xor_sync(0xffffffffu, best_id, offset);
                if (other > best || (other == best && other_id < best_id)) {
                    best = other;
                    best_id = other_id;
                }
            }
            best_id = min(best_id, E - 1);
            if (lane == j) {
                mine = best_id;
                weight = fmaxf(best, 0.f);
            }
            if ((best_id & 31) == lane) p[best_id] = -2.f;
            __syncwarp();
        }
    }
    if (a.norm_topk_prob) {
        float total = 0.f;
        for (int j = 0; j < K; ++j) total += __shfl_sync(0xffffffffu, weight, j);
        weight = total > 0.f ? weight / total : 0.f;
    }
    if (!finite && lane == 0 && a.token_status) a.token_status[t] |= RR_TOKEN_NONFINITE_ROUTER_LOGITS;
    if (lane < K) {
        a.topk_ids[t * K + lane] = mine;
        a.topk_weights[t * K + lane] = bf16r(weight);
        if (a.routing) {
            uint8_t* row = a.routing + (size_t)t * a.row_bytes;
            const int index = a.moe_index * K + lane;
            if (a.element_bytes == 1) {
                row[index] = (uint8_t)mine;
            } else {
                row[2 * index] = (uint8_t)(mine & 0xFF);
                row[2 * index + 1] = (uint8_t)(mine >> 8);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Plan: one block. Counts per expert, expert offsets, the tile map, and each assignment's row in expert order.

constexpr int kPlanThreads = 256;

__global__ void moe_plan_kernel(const int32_t* __restrict__ topk_ids, int assignments, int top_k, int experts, int tile_m,
                                MoePlan plan) {
    extern __shared__ int32_t counters[];
    int32_t* count = counters;                 // [E]
    int32_t* cursor = counters + experts;      // [E]
    int32_t* tile_offset = cursor + experts;   // [E + 1]
    for (int e = threadIdx.x; e < experts; e += blockDim.x) count[e] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < assignments; i += blockDim.x) {
        const int e = topk_ids[i];
        if (e >= 0 && e < experts) atomicAdd(&count[e], 1);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        // Exclusive scans of rows and tiles: each lane sums a contiguous run of experts, the warp scans the lane sums.
        const int lane = threadIdx.x, per_lane = (experts + 31) / 32, first = min(lane * per_lane, experts), last = min(first + per_lane, experts);
        int rows = 0, tiles = 0;
        for (int e = first; e < last; ++e) rows += count[e], tiles += (count[e] + tile_m - 1) / tile_m;
        int rows_before = rows, tiles_before = tiles;
        for (int offset = 1; offset < 32; offset <<= 1) {
            const int r = __shfl_up_sync(0xffffffffu, rows_before, offset), t = __shfl_up_sync(0xffffffffu, tiles_before, offset);
            if (lane >= offset) rows_before += r, tiles_before += t;
        }
        rows_before -= rows;
        tiles_before -= tiles;
        for (int e = first; e < last; ++e) {
            plan.expert_offsets[e] = rows_before;
            cursor[e] = rows_before;
            tile_offset[e] = tiles_before;
            rows_before += count[e];
            tiles_before += (count[e] + tile_m - 1) / tile_m;
        }
        if (lane == 31) {
            plan.expert_offsets[experts] = rows_before;
            tile_offset[experts] = tiles_before;
            *plan.tile_count = tiles_before;
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        const int first = plan.expert_offsets[e], end = first + count[e];
        for (int tile = tile_offset[e], row = first; row < end; ++tile, row += tile_m) {
            plan.tile_expert[tile] = e;
            plan.tile_row0[tile] = row;
            plan.tile_row_end[tile] = min(row + tile_m, end);
        }
    }
    for (int i = threadIdx.x; i < assignments; i += blockDim.x) {
        const int e = topk_ids[i];
        if (e >= 0 && e < experts) {
            const int row = atomicAdd(&cursor[e], 1);
            plan.sorted_token[row] = i / top_k;
            plan.assignment_row[i] = row;
        } else {
            plan.assignment_row[i] = -1;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Combine: the token's expert outputs, each times its weight (fp32) and rounded to bf16, summed in bf16 in
// ascending expert id order (the order transformers' expert loop adds them), then added to the residual stream.

__global__ void moe_combine_kernel(bf16* __restrict__ hidden, const bf16* __restrict__ moe_out,
                                   const int32_t* __restrict__ topk_ids, const float* __restrict__ topk_weights,
                                   const int32_t* __restrict__ assignment_row, const int32_t* __restrict__ slots,
                                   int top_k, int hidden_size) {
    __shared__ int rows[32];
    __shared__ float weights[32];
    const int t = blockIdx.x;
    if (slots[t] < 0) return;
    if (threadIdx.x == 0) {
        int ids[32];
        for (int j = 0; j < top_k; ++j) {
            int k = j;
            const int id = topk_ids[t * top_k + j];
            while (k > 0 && ids[k - 1] > id) {
                ids[k] = ids[k - 1];
                rows[k] = rows[k - 1];
                weights[k] = weights[k - 1];
                --k;
            }
            ids[k] = id;
            rows[k] = assignment_row[t * top_k + j];
            weights[k] = topk_weights[t * top_k + j];
        }
    }
    __syncthreads();
    bf16* hr = hidden + (size_t)t * hidden_size;
    for (int h = threadIdx.x; h < hidden_size; h += blockDim.x) {
        float sum = 0.f;
        for (int j = 0; j < top_k; ++j) {
            const float contribution = bf16r(__bfloat162float(moe_out[(size_t)rows[j] * hidden_size + h]) * weights[j]);
            sum = bf16r(sum + contribution);
        }
        hr[h] = __float2bfloat16_rn(__bfloat162float(hr[h]) + sum);
    }
}

// Per-expert path (one cuBLAS GEMM per active expert, as transformers' eager experts): gathered inputs and the
// SwiGLU of the concatenated gate/up output, rounded where torch rounds them.
__global__ void gather_rows_kernel(const bf16* __restrict__ x, MoePlan plan, int experts, bf16* __restrict__ rows, int hidden_size) {
    const int r = blockIdx.x;
    if (r >= plan.expert_offsets[experts]) return;
    const uint4* src = reinterpret_cast<const uint4*>(x + (size_t)plan.sorted_token[r] * hidden_size);
    uint4* dst = reinterpret_cast<uint4*>(rows + (size_t)r * hidden_size);
    for (int i = threadIdx.x; i < hidden_size / 8; i += blockDim.x) dst[i] = src[i];
}

__global__ void split_silu_mul_kernel(const bf16* __restrict__ gate_up, bf16* __restrict__ act, MoePlan plan, int experts, int inter) {
    const int r = blockIdx.x;
    if (r >= plan.expert_offsets[experts]) return;
    const bf16* g = gate_up + (size_t)r * 2 * inter;
    for (int i = threadIdx.x; i < inter; i += blockDim.x) {
        const float gv = __bfloat162float(g[i]);
        const float activated = bf16r(gv / (1.0f + expf(-gv)));
        act[(size_t)r * inter + i] = __float2bfloat16_rn(activated * __bfloat162float(g[inter + i]));
    }
}

}  // namespace

void launch_gather_rows(cudaStream_t s, const bf16* x, const MoePlan& plan, int experts, bf16* rows, int max_rows, int hidden_size) {
    gather_rows_kernel<<<max_rows, 128, 0, s>>>(x, plan, experts, rows, hidden_size);
    check_launch("gather_rows");
}

void launch_split_silu_mul(cudaStream_t s, const bf16* gate_up, bf16* act, const MoePlan& plan, int experts, int max_rows, int intermediate) {
    split_silu_mul_kernel<<<max_rows, 256, 0, s>>>(gate_up, act, plan, experts, intermediate);
    check_launch("split_silu_mul");
}

void launch_route(cudaStream_t s, const RouteArgs& a) {
    const int blocks = (a.tokens + kRouteWarps - 1) / kRouteWarps;
    route_kernel<<<blocks, kRouteWarps * 32, kRouteWarps * a.experts * sizeof(float), s>>>(a);
    check_launch("route");
}

int moe_tile_m(int tokens, int top_k, int experts) {
    const int64_t rows = (int64_t)tokens * top_k;
    return rows <= 16LL * experts ? 16 : rows <= 64LL * experts ? 64 : 128;
}

int moe_max_tiles(int tokens, int top_k, int experts, int tile_m) {
    return (int)(((int64_t)tokens * top_k + tile_m - 1) / tile_m) + experts;
}

void launch_moe_plan(cudaStream_t s, const int32_t* topk_ids, int tokens, int top_k, int experts, int tile_m,
                     const MoePlan& plan) {
    const size_t smem = sizeof(int32_t) * (3 * (size_t)experts + 1);
    moe_plan_kernel<<<1, kPlanThreads, smem, s>>>(topk_ids, tokens * top_k, top_k, experts, tile_m, plan);
    check_launch("moe_plan");
}

void launch_moe_combine(cudaStream_t s, bf16* hidden, const bf16* moe_out, const int32_t* topk_ids,
                        const float* topk_weights, const int32_t* assignment_row, const int32_t* slots, int tokens,
                        int top_k, int hidden_size) {
    moe_combine_kernel<<<tokens, 256, 0, s>>>(hidden, moe_out, topk_ids, topk_weights, assignment_row, slots, top_k,
                                             hidden_size);
    check_launch("moe_combine");
}

}  // namespace rr
