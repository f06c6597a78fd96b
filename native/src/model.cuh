// The device state of one model: weights, KV cache, fixed-capacity step buffers, stream, cuBLAS handle.
#pragma once

#include "common.cuh"
#include "decode_graphs.cuh"
#include "gemm.cuh"
#include "kernels.cuh"
#include "routereplay_cuda.h"

#include <vector>

namespace rr {

enum ProfileClass {
    PROFILE_INPUT_COPY = 0,
    PROFILE_EMBED,
    PROFILE_NORM,
    PROFILE_QKV_GEMM,
    PROFILE_QK_NORM_ROPE,
    PROFILE_ATTENTION,
    PROFILE_O_GEMM,
    PROFILE_ROUTER_GEMM,
    PROFILE_ROUTE,
    PROFILE_MOE_PLAN,
    PROFILE_MOE_GATE_UP,
    PROFILE_MOE_DOWN,
    PROFILE_MOE_COMBINE,
    PROFILE_DENSE_MLP,
    PROFILE_LM_HEAD,
    PROFILE_OUTPUT_COPY,
    PROFILE_CLASS_COUNT,
};

const char* profile_class_name(int index);

struct LayerWeights {
    bf16* input_norm = nullptr;
    bf16* post_norm = nullptr;
    bf16* q = nullptr;
    bf16* k = nullptr;
    bf16* v = nullptr;
    bf16* o = nullptr;
    bf16* q_norm = nullptr;
    bf16* k_norm = nullptr;
    bf16* router = nullptr;
    bf16* gate_up = nullptr;
    bf16* down = nullptr;
    bf16* mlp_gate = nullptr;
    bf16* mlp_up = nullptr;
    bf16* mlp_down = nullptr;
    bool moe = false;
    int moe_index = -1;
};

// Step buffers, each sized for the engine's limits once.
struct Workspace {
    uint8_t* input = nullptr;  // the packed step inputs (rr_step sections)
    size_t input_bytes = 0;
    bf16* hidden = nullptr;    // [T, H] residual stream
    bf16* normed = nullptr;    // [T, H]
    bf16* delta = nullptr;     // [T, H] a branch's output before the residual add
    bf16* qkv = nullptr;       // [T, (heads + 2 kv) * hd]: q, k, v of each token side by side
    int32_t* attention_lists = nullptr;       // [2 + 3 T] the step's attention work lists (device)
    int32_t* attention_host = nullptr;        // [2 + 3 T] page-locked: the same, packed on the host
    int32_t* attention_tiles_host = nullptr;  // [2 T] page-locked: prefill tiles while planning
    float* partial_m = nullptr;               // [split tokens, heads, split blocks] decode partials
    float* partial_l = nullptr;
    float* partial_acc = nullptr;             // [split tokens, heads, split blocks, hd]
    bf16* attn = nullptr;      // [T, heads * hd]
    bf16* router_logits = nullptr;  // [T, E]
    int32_t* topk_ids = nullptr;    // [T, K]
    float* topk_weights = nullptr;  // [T, K]
    uint8_t* routing = nullptr;     // [T, row bytes] the step's routing buffer
    uint8_t* token_status = nullptr;  // [T] RR_TOKEN_* flags of the step's tokens
    int32_t* expert_offsets = nullptr;  // [E + 1]
    int32_t* tile_expert = nullptr;     // [max tiles]
    int32_t* tile_row0 = nullptr;       // [max tiles]
    int32_t* tile_row_end = nullptr;    // [max tiles]
    int32_t* tile_count = nullptr;      // [1]
    int32_t* sorted_token = nullptr;    // [T * K] token of each expert-sorted row
    int32_t* assignment_row = nullptr;  // [T * K] sorted row of each (token, k)
    bf16* moe_act = nullptr;            // [T * K, I]
    bf16* moe_out = nullptr;            // [T * K, H]
    bf16* mlp_gate = nullptr;           // [T, I_dense]
    bf16* mlp_up = nullptr;             // [T, I_dense]
    bf16* logit_hidden = nullptr;       // [R, H]
    bf16* logits = nullptr;             // [R, V]
    float* logits_f32 = nullptr;        // [R, V]
    int32_t* argmax = nullptr;          // [R] each logit row's argmax
    bf16* moe_rows = nullptr;           // [T * K, H] per-expert path: gathered inputs
    bf16* moe_gate_up = nullptr;        // [T * K, 2I] per-expert path: gate and up outputs
    int32_t* host_offsets = nullptr;    // [E + 1] page-locked: the expert offsets the per-expert path reads
    GemmScratch gemm;  // partials and tile counters of split GEMMs
    void* cublas_workspace = nullptr;
    size_t cublas_workspace_bytes = 0;
    int max_tiles = 0;
};

struct Profiler {
    bool enabled = false;
    std::vector<cudaEvent_t> events;  // pairs (start, end)
    std::vector<int> classes;         // class of each pair
    int used = 0;
    double totals[PROFILE_CLASS_COUNT] = {};
};

}  // namespace rr

struct rr_model {
    rr_model_config config{};
    std::vector<float> inv_freq;
    std::vector<rr::LayerWeights> layers;
    int num_moe_layers = 0;
    int row_bytes = 0;  // routing row bytes
    int device = 0;
    int max_smem = 0;
    int multiprocessors = 0;
    int attention_split_tokens = 0;  // decode tokens the split path's workspace holds
    int attention_split_blocks = 0;  // 64-position blocks per token it holds
    float* d_inv_freq = nullptr;

    uint8_t* weights = nullptr;  // one arena for every weight; null while released
    size_t weights_bytes = 0;
    uint8_t* weights_host = nullptr;      // page-locked copy of the arena while released with a host copy
    uintptr_t weights_released_from = 0;  // the released arena's address: the pointers below are rebased from it
    rr::bf16* embed = nullptr;
    rr::bf16* final_norm = nullptr;
    rr::bf16* lm_head = nullptr;

    uint8_t* kv = nullptr;  // null while released
    int num_blocks = 0;     // 0 while released
    size_t kv_block_bytes = 0;

    rr::Workspace ws;
    rr::LinearTuning linear_tuning;  // ws.gemm.tuning points here once measured
    bool per_expert_gemms = false;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    rr::Profiler profiler;
    rr::DecodeGraphs graphs;

    std::vector<void*> allocations;  // freed on destroy
};

namespace rr {

void* device_alloc(rr_model* m, size_t bytes, const char* what);
void device_free(rr_model* m, void* p);

// Profiling scope: records an event pair around the enclosed launches when profiling is on.
struct ProfileScope {
    ProfileScope(rr_model* m, int cls);
    ~ProfileScope();
    rr_model* model;
    int index;
};

void forward(rr_model* m, const rr_step* step);
void profile_collect(rr_model* m);

}  // namespace rr
