// Kernel launchers. Every launch goes to the given stream and checks its launch error.
//
// Numerics follow Hugging Face transformers' bf16 Qwen3-MoE forward rounding point by rounding point where they can
// (norms, RoPE, routing, the experts' SwiGLU and combine: each operation computes in fp32 from bf16 inputs and rounds
// its output to bf16 where a bf16 tensor operation would); attention is flash-style (fp32 scores, see attention.cuh).
// Every reduction has a fixed order that does not depend on the batch, so a token's result depends on its own inputs
// only: batch invariance holds by construction.
#pragma once

#include <string>
#include <vector>

#include "common.cuh"
#include "routereplay_cuda.h"

namespace rr {

void launch_embed(cudaStream_t s, const int32_t* ids, const bf16* embed, bf16* hidden, int tokens, int hidden_size);

// y[t] = weight * bf16(x[row] * rsqrt(mean(x[row]^2) + eps)), row = rows ? rows[t] : t.
void launch_rmsnorm(cudaStream_t s, const bf16* x, const int32_t* rows, const bf16* weight, bf16* y, int tokens,
                    int hidden_size, float eps);

// hidden = bf16(hidden + delta), then y = rmsnorm(hidden).
void launch_add_rmsnorm(cudaStream_t s, bf16* hidden, const bf16* delta, const bf16* weight, bf16* y, int tokens,
                        int hidden_size, float eps);

// hidden = bf16(hidden + delta).
void launch_add(cudaStream_t s, bf16* hidden, const bf16* delta, int64_t count);

// gate = bf16(bf16(silu(gate)) * up).
void launch_silu_mul(cudaStream_t s, bf16* gate, const bf16* up, int64_t count);

void launch_to_f32(cudaStream_t s, const bf16* x, float* y, int64_t count);
// out[r] = the index of row r's largest logit among ids below limit (all ids when limit <= 0), NaN above numbers,
// +0 above -0, the lowest index among equals (the host's TensorPrimitives.IndexOfMax order).
void launch_argmax_rows(cudaStream_t s, const bf16* logits, int rows, int vocab, int limit, int32_t* out);

struct KvLayout {
    uint8_t* kv;
    int num_layers;
    int kv_heads;
    int head_dim;
    int block_size;
};

// Per token with slot >= 0: q/k head RMSNorm, RoPE on q (in place) and k, then k and v written to the KV cache. q, k
// and v rows are `stride` elements apart (one fused projection output).
void launch_qk_norm_rope_cache(cudaStream_t s, bf16* q, const bf16* k, const bf16* v, int64_t stride, const bf16* q_norm,
                               const bf16* k_norm, const int32_t* positions, const int32_t* slots,
                               const float* inv_freq, float attention_scaling, float eps, int tokens, int heads,
                               const KvLayout& kv, int layer);

struct AttentionArgs {
    const bf16* q;       // [T, q_stride]: head h of token t at q + t * q_stride + h * head_dim
    int64_t q_stride;
    bf16* out;           // [T, heads * head_dim]
    const int32_t* positions;
    const int32_t* token_seq;
    const int32_t* block_tables;
    int max_blocks_per_seq;
    int heads;
    int group;           // query heads per KV head
    int layer;
    float scale_log2;    // softmax scale times log2(e)
};

// The step's attention work lists on the device (uploaded once per step) and the decode partials' workspace.
struct AttentionWork {
    const int32_t* decode_count;
    const int32_t* decode_tokens;   // token index of each decode item
    const int32_t* prefill_count;
    const int32_t* prefill_tiles;   // (first token, token count) of each prefill tile
    float* partial_m;               // [decode items, heads, max_blocks]
    float* partial_l;
    float* partial_acc;             // [decode items, heads, max_blocks, head_dim]
    int max_blocks;
};

// The host's plan for one step: which tokens are decode items, how prefill runs are cut into tiles, which decode path.
struct AttentionPlan {
    int decode_tokens = 0;
    int prefill_tiles = 0;
    int max_decode_blocks = 0;
    bool split = false;  // decode: a warp per 64-position block and a merge, rather than a warp per token and KV head
};

bool attention_supported(int group, int head_dim);
// Tokens of one prefill tile (4 warps of 16 query rows).
int attention_tile_tokens(int group);
void attention_prepare(int head_dim);
// Cuts the step's tokens into runs of one sequence: a run of one token is a decode item, longer runs are cut into
// prefill tiles. Tokens with a negative slot are skipped. Decode is split per block when there are fewer than
// split_below_items (token, KV head) items and the partials fit the workspace. The lists are written to the arrays given.
AttentionPlan plan_attention(const int32_t* token_seq, const int32_t* positions, const int32_t* slots, int tokens, int group,
                             int kv_heads, int split_below_items, int max_split_tokens, int max_split_blocks, int32_t* decode_tokens,
                             int32_t* prefill_tiles);
void launch_attention(cudaStream_t s, const AttentionArgs& a, const KvLayout& kv, const AttentionWork& work, const AttentionPlan& plan);

struct GemmScratch;

// y[M, N] = x[M, K] . w[N, K]^T, bf16 with fp32 accumulation; the same bits per element for any M (see gemm.cuh).
void launch_linear(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, const GemmScratch& scratch);
// Scratch floats and tile counters a split of launch_linear may use for an N x K weight.
size_t linear_scratch_floats(int n, int k);
int linear_scratch_counters(int n);
// The tile configuration launch_linear picks for a shape (for benchmarks and tests).
const char* linear_config(int m, int n, int k);

// Decode-sized (M <= 16) tile configurations of launch_linear, each with and without a split of K's chunks: every one
// gives the same bits per element (gemm.cuh), so which runs is a matter of speed alone, and the fastest depends on the
// weight's shape and the GPU. A model times them once at creation (tune_decode_linears) and launch_linear then runs
// the winner for M <= 16.
int linear_decode_candidates();
std::string linear_decode_candidate_name(int candidate);
bool linear_decode_candidate_fits(int candidate, int n, int k);
void launch_linear_candidate(int candidate, cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, const GemmScratch& scratch);

// Per weight shape, the fastest decode candidate for 1-4 rows and for 5-16 rows (-1: launch_linear's own rule).
struct LinearTuning {
    static constexpr int kMaxShapes = 8;
    struct Entry {
        int n = 0, k = 0, few = -1, many = -1;
    };
    Entry entries[kMaxShapes];
    int count = 0;
    int pick(int m, int n, int k) const {
        for (int i = 0; i < count; ++i) {
            if (entries[i].n == n && entries[i].k == k) return m <= 4 ? entries[i].few : entries[i].many;
        }
        return -1;
    }
};

// One weight shape to tune: N x K and the distinct weights of that shape (one per layer), launched in turn so the
// timing streams from memory as a decode step does, not from L2.
struct LinearShape {
    int n = 0, k = 0;
    std::vector<const bf16*> weights;
};

// Microseconds per launch of each decode candidate at m rows (-1 where it does not fit the shape), over rounds passes
// through the shape's weights after one untimed pass. x holds m x K and y m x N values (contents irrelevant).
std::vector<double> time_linear_candidates(cudaStream_t s, const LinearShape& shape, const bf16* x, bf16* y, int m, int rounds,
                                           const GemmScratch& scratch);
// Times the candidates for each shape at 1 and 8 rows and keeps the fastest of each (launch_linear's own rule when
// it is within 2% of the best, so a tie never changes the configuration).
LinearTuning tune_decode_linears(cudaStream_t s, const std::vector<LinearShape>& shapes, const bf16* x, bf16* y, const GemmScratch& scratch);

struct RouteArgs {
    const bf16* logits;        // [T, E]
    const int32_t* slots;
    const uint8_t* forced;     // [T, row bytes] or null
    int tokens;
    int experts;
    int top_k;
    int norm_topk_prob;
    int row_bytes;
    int element_bytes;
    int moe_index;
    int32_t* topk_ids;         // [T, K]
    float* topk_weights;       // [T, K]
    uint8_t* routing;          // [T, row bytes] or null
    uint8_t* token_status;     // [T] RR_TOKEN_* flags, or null
};

void launch_route(cudaStream_t s, const RouteArgs& a);

struct MoePlan {
    int32_t* expert_offsets;
    int32_t* tile_expert;
    int32_t* tile_row0;
    int32_t* tile_row_end;
    int32_t* tile_count;
    int32_t* sorted_token;
    int32_t* assignment_row;
};

// Groups the step's (token, k) assignments by expert and cuts each expert's rows into tiles of tile_m rows.
void launch_moe_plan(cudaStream_t s, const int32_t* topk_ids, int tokens, int top_k, int experts, int tile_m,
                     const MoePlan& plan);

int moe_tile_m(int tokens, int top_k, int experts);
int moe_max_tiles(int tokens, int top_k, int experts, int tile_m);

// act[row] = bf16(bf16(silu(gate)) * up) with [gate | up] = x[sorted_token[row]] . gate_up[e]^T, per tile.
void launch_moe_gate_up(cudaStream_t s, const bf16* x, const bf16* gate_up, bf16* act, const MoePlan& plan,
                        int max_tiles, int tile_m, int hidden_size, int intermediate, const GemmScratch& scratch);

// out[row] = act[row] . down[e]^T, per tile.
void launch_moe_down(cudaStream_t s, const bf16* act, const bf16* down, bf16* out, const MoePlan& plan,
                     int max_tiles, int tile_m, int hidden_size, int intermediate, const GemmScratch& scratch);

// Scratch floats and tile counters the experts' GEMMs may use to split small steps (at most `split_assignments` token
// and expert pairs).
size_t moe_scratch_floats(int experts, int hidden_size, int intermediate, int split_assignments);
int moe_scratch_counters(int experts, int hidden_size, int intermediate, int split_assignments);

// hidden[t] = bf16(hidden[t] + sum), sum accumulated in bf16 over the token's experts in ascending id order.
void launch_moe_combine(cudaStream_t s, bf16* hidden, const bf16* moe_out, const int32_t* topk_ids,
                        const float* topk_weights, const int32_t* assignment_row, const int32_t* slots, int tokens,
                        int top_k, int hidden_size);

// Per-expert path: rows[r] = x[sorted_token[r]] for r < expert_offsets[experts]; act[r] = bf16(bf16(silu(gu[r, :I])) * gu[r, I:]).
void launch_gather_rows(cudaStream_t s, const bf16* x, const MoePlan& plan, int experts, bf16* rows, int max_rows, int hidden_size);
void launch_split_silu_mul(cudaStream_t s, const bf16* gate_up, bf16* act, const MoePlan& plan, int experts, int max_rows, int intermediate);

void launch_fill_normal(cudaStream_t s, bf16* out, uint64_t count, uint64_t seed, float mean, float std);

}  // namespace rr
