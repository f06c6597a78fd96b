// One step of the Qwen3-MoE forward on the model's stream: one input copy, the layers, the logit rows, one output
// copy of logits and routing rows, one synchronization. Nothing inside the forward waits for the host.
#include "kernels.cuh"
#include "model.cuh"

#include <algorithm>
#include <cstring>

namespace rr {

namespace {

// y[M, N] = x[M, K] . w[N, K]^T through cuBLAS: the call torch makes for a bf16 nn.Linear (the per-expert reference
// path only; cuBLAS picks its algorithm by shape, so its results depend on the batch).
void cublas_linear(rr_model* m, const bf16* x, const bf16* w, bf16* y, int rows, int n, int k) {
    if (rows == 0) return;
    const float alpha = 1.f, beta = 0.f;
    check_cublas(cublasGemmEx(m->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF,
                              k, &beta, y, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
}

template <typename T>
const T* section(const rr_model* m, int64_t offset) {
    return reinterpret_cast<const T*>(m->ws.input + offset);
}

// The experts as transformers' eager loop computes them: per active expert, one GEMM of its gathered rows with the
// expert's [2I, H] gate/up weight, the SwiGLU, one GEMM with its [H, I] down weight. The experts' sizes come back to
// the host first (one synchronization per MoE layer).
void per_expert(rr_model* m, const LayerWeights& w, const MoePlan& plan, int tokens) {
    const rr_model_config& c = m->config;
    Workspace& ws = m->ws;
    const int E = c.num_experts, K = c.top_k, H = c.hidden_size, I = c.moe_intermediate_size;
    const int max_rows = tokens * K;
    launch_gather_rows(m->stream, ws.normed, plan, E, ws.moe_rows, max_rows, H);
    check_cuda(cudaMemcpyAsync(ws.host_offsets, plan.expert_offsets, (E + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost, m->stream),
               "cudaMemcpyAsync(expert offsets)");
    check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(expert offsets)");
    {
        ProfileScope p(m, PROFILE_MOE_GATE_UP);
        for (int e = 0; e < E; ++e) {
            const int first = ws.host_offsets[e], rows = ws.host_offsets[e + 1] - first;
            cublas_linear(m, ws.moe_rows + (size_t)first * H, w.gate_up + (size_t)e * 2 * I * H, ws.moe_gate_up + (size_t)first * 2 * I, rows, 2 * I, H);
        }
        launch_split_silu_mul(m->stream, ws.moe_gate_up, ws.moe_act, plan, E, max_rows, I);
    }
    {
        ProfileScope p(m, PROFILE_MOE_DOWN);
        for (int e = 0; e < E; ++e) {
            const int first = ws.host_offsets[e], rows = ws.host_offsets[e + 1] - first;
            cublas_linear(m, ws.moe_act + (size_t)first * I, w.down + (size_t)e * H * I, ws.moe_out + (size_t)first * H, rows, H, I);
        }
    }
}

// Plans the step's attention on the host from the packed inputs (still in host memory) and queues the upload of the
// lists, packed as [decode count, prefill count, decode tokens..., prefill tiles...]; returns the work for the kernels.
AttentionPlan plan_step_attention(rr_model* m, const rr_step* step, AttentionWork& work) {
    const rr_model_config& c = m->config;
    const uint8_t* staging = static_cast<const uint8_t*>(step->staging);
    int32_t* host = m->ws.attention_host;
    int32_t* tiles = m->ws.attention_tiles_host;
    const AttentionPlan plan = plan_attention(reinterpret_cast<const int32_t*>(staging + step->token_seq), reinterpret_cast<const int32_t*>(staging + step->positions),
                                              reinterpret_cast<const int32_t*>(staging + step->slots), step->num_tokens, c.num_heads / c.num_kv_heads,
                                              c.num_kv_heads, 2 * m->multiprocessors, m->attention_split_tokens, m->attention_split_blocks,
                                              host + 2, tiles);
    host[0] = plan.decode_tokens;
    host[1] = plan.prefill_tiles;
    std::copy(tiles, tiles + 2 * plan.prefill_tiles, host + 2 + plan.decode_tokens);
    const size_t ints = 2 + (size_t)plan.decode_tokens + 2 * (size_t)plan.prefill_tiles;
    int32_t* lists = m->ws.attention_lists;
    check_cuda(cudaMemcpyAsync(lists, host, ints * sizeof(int32_t), cudaMemcpyHostToDevice, m->stream), "cudaMemcpyAsync(attention lists)");
    work = AttentionWork{lists, lists + 2, lists + 1, lists + 2 + plan.decode_tokens, m->ws.partial_m, m->ws.partial_l, m->ws.partial_acc,
                         m->attention_split_blocks};
    return plan;
}

// The device addresses of the step's input sections.
struct StepInputs {
    const int32_t* ids;
    const int32_t* positions;
    const int32_t* slots;
    const int32_t* token_seq;
    const int32_t* logit_tokens;
    const int32_t* block_tables;
    const uint8_t* forced;  // nullptr: no forced routing
};

StepInputs packed_inputs(const rr_model* m, const rr_step* step) {
    return StepInputs{section<int32_t>(m, step->token_ids), section<int32_t>(m, step->positions), section<int32_t>(m, step->slots),
                      section<int32_t>(m, step->token_seq), section<int32_t>(m, step->logit_tokens), section<int32_t>(m, step->block_tables),
                      step->forced >= 0 ? section<uint8_t>(m, step->forced) : nullptr};
}

// Every kernel of the forward, from the embedding to the bf16 logits of R rows and their argmax: what a decode graph
// captures.
void run_model(rr_model* m, const StepInputs& in, int T, int R, int argmax_limit, const AttentionWork& attention_work,
               const AttentionPlan& attention) {
    const rr_model_config& c = m->config;
    cudaStream_t s = m->stream;
    Workspace& ws = m->ws;
    const int H = c.hidden_size, hd = c.head_dim, qdim = c.num_heads * hd, kvdim = c.num_kv_heads * hd, qkv_dim = qdim + 2 * kvdim;
    const int E = c.num_experts, K = c.top_k, I = c.moe_intermediate_size, Id = c.intermediate_size;
    const float eps = c.rms_norm_eps;
    const KvLayout kv{m->kv, c.num_layers, c.num_kv_heads, hd, c.block_size};
    const MoePlan plan{ws.expert_offsets, ws.tile_expert, ws.tile_row0, ws.tile_row_end, ws.tile_count, ws.sorted_token, ws.assignment_row};
    const int tile_m = E > 0 ? moe_tile_m(T, K, E) : 0;
    const int max_tiles = E > 0 ? moe_max_tiles(T, K, E, tile_m) : 0;

    {
        ProfileScope p(m, PROFILE_EMBED);
        launch_embed(s, in.ids, m->embed, ws.hidden, T, H);
    }
    for (int l = 0; l < c.num_layers; ++l) {
        const LayerWeights& w = m->layers[l];
        {
            ProfileScope p(m, PROFILE_NORM);
            launch_rmsnorm(s, ws.hidden, nullptr, w.input_norm, ws.normed, T, H, eps);
        }
        {
            ProfileScope p(m, PROFILE_QKV_GEMM);
            launch_linear(s, ws.normed, w.q, ws.qkv, T, qkv_dim, H, ws.gemm);
        }
        {
            ProfileScope p(m, PROFILE_QK_NORM_ROPE);
            launch_qk_norm_rope_cache(s, ws.qkv, ws.qkv + qdim, ws.qkv + qdim + kvdim, qkv_dim, w.q_norm, w.k_norm, in.positions, in.slots,
                                      m->d_inv_freq, c.rope_attention_scaling, eps, T, c.num_heads, kv, l);
        }
        {
            ProfileScope p(m, PROFILE_ATTENTION);
            const AttentionArgs a{ws.qkv, qkv_dim, ws.attn, in.positions, in.token_seq, in.block_tables, c.max_blocks_per_seq, c.num_heads,
                                  c.num_heads / c.num_kv_heads, l, 1.4426950408889634f / sqrtf((float)hd)};
            launch_attention(s, a, kv, attention_work, attention);
        }
        {
            ProfileScope p(m, PROFILE_O_GEMM);
            launch_linear(s, ws.attn, w.o, ws.delta, T, H, qdim, ws.gemm);
        }
        {
            ProfileScope p(m, PROFILE_NORM);
            launch_add_rmsnorm(s, ws.hidden, ws.delta, w.post_norm, ws.normed, T, H, eps);
        }
        if (w.moe) {
            {
                ProfileScope p(m, PROFILE_ROUTER_GEMM);
                launch_linear(s, ws.normed, w.router, ws.router_logits, T, E, H, ws.gemm);
            }
            {
                ProfileScope p(m, PROFILE_ROUTE);
                RouteArgs a{ws.router_logits, in.slots, in.forced, T, E, K, c.norm_topk_prob, m->row_bytes,
                            c.routing_element_bytes, w.moe_index, ws.topk_ids, ws.topk_weights, ws.routing, ws.token_status};
                launch_route(s, a);
            }
            {
                ProfileScope p(m, PROFILE_MOE_PLAN);
                launch_moe_plan(s, ws.topk_ids, T, K, E, tile_m, plan);
            }
            if (m->per_expert_gemms) {
                per_expert(m, w, plan, T);
            } else {
                {
                    ProfileScope p(m, PROFILE_MOE_GATE_UP);
                    launch_moe_gate_up(s, ws.normed, w.gate_up, ws.moe_act, plan, max_tiles, tile_m, H, I, ws.gemm);
                }
                {
                    ProfileScope p(m, PROFILE_MOE_DOWN);
                    launch_moe_down(s, ws.moe_act, w.down, ws.moe_out, plan, max_tiles, tile_m, H, I, ws.gemm);
                }
            }
            {
                ProfileScope p(m, PROFILE_MOE_COMBINE);
                launch_moe_combine(s, ws.hidden, ws.moe_out, ws.topk_ids, ws.topk_weights, ws.assignment_row, in.slots, T, K, H);
            }
        } else {
            ProfileScope p(m, PROFILE_DENSE_MLP);
            launch_linear(s, ws.normed, w.mlp_gate, ws.mlp_gate, T, Id, H, ws.gemm);
            launch_linear(s, ws.normed, w.mlp_up, ws.mlp_up, T, Id, H, ws.gemm);
            launch_silu_mul(s, ws.mlp_gate, ws.mlp_up, (int64_t)T * Id);
            launch_linear(s, ws.mlp_gate, w.mlp_down, ws.delta, T, H, Id, ws.gemm);
            launch_add(s, ws.hidden, ws.delta, (int64_t)T * H);
        }
    }
    if (R > 0) {
        ProfileScope p(m, PROFILE_LM_HEAD);
        launch_rmsnorm(s, ws.hidden, in.logit_tokens, m->final_norm, ws.logit_hidden, R, H, eps);
        launch_linear(s, ws.logit_hidden, m->lm_head, ws.logits, R, c.vocab_size, H, ws.gemm);
        launch_argmax_rows(s, ws.logits, R, c.vocab_size, argmax_limit, ws.argmax);
    }
}

// A step a decode graph can run: one token per sequence, each a decode item, no forced routing, nothing profiled.
bool graph_eligible(const rr_model* m, const rr_step* step, const AttentionPlan& attention) {
    return m->graphs.enabled && !m->profiler.enabled && !m->per_expert_gemms && step->forced < 0 && attention.prefill_tiles == 0 &&
           attention.decode_tokens == step->num_tokens && step->num_logit_rows <= step->num_tokens &&
           decode_graph_tokens(step->num_tokens, m->graphs.max_tokens) > 0;
}

// Repacks the step's inputs into the graph layout of `tokens` slots (decode_graph_layout), padding with tokens that
// write nothing, and queues their copy; returns the device addresses the graph was captured with.
StepInputs upload_graph_inputs(rr_model* m, const rr_step* step, int tokens) {
    const rr_model_config& c = m->config;
    const DecodeGraphLayout layout = decode_graph_layout(tokens);
    const uint8_t* staging = static_cast<const uint8_t*>(step->staging);
    uint8_t* host = m->graphs.host_inputs;
    const int T = step->num_tokens, R = step->num_logit_rows;
    auto pack = [&](int64_t from, int count, int64_t to, int32_t fill) {
        int32_t* out = reinterpret_cast<int32_t*>(host + to);
        std::memcpy(out, staging + from, (size_t)count * sizeof(int32_t));
        std::fill(out + count, out + tokens, fill);
    };
    pack(step->token_ids, T, layout.ids, 0);
    pack(step->positions, T, layout.positions, 0);
    pack(step->slots, T, layout.slots, -1);
    pack(step->token_seq, T, layout.token_seq, 0);
    pack(step->logit_tokens, R, layout.logit_tokens, 0);
    const size_t table_bytes = (size_t)step->num_seqs * c.max_blocks_per_seq * sizeof(int32_t);
    std::memcpy(host + layout.block_tables, staging + step->block_tables, table_bytes);
    check_cuda(cudaMemcpyAsync(m->ws.input, host, (size_t)layout.block_tables + table_bytes, cudaMemcpyHostToDevice, m->stream),
               "cudaMemcpyAsync(step input)");
    const auto at = [&](int64_t offset) { return reinterpret_cast<const int32_t*>(m->ws.input + offset); };
    return StepInputs{at(layout.ids), at(layout.positions), at(layout.slots), at(layout.token_seq), at(layout.logit_tokens),
                      at(layout.block_tables), nullptr};
}

// The graph of a decode step of `tokens` slots and the given attention path, captured on first use.
cudaGraphExec_t decode_graph(rr_model* m, const StepInputs& in, int tokens, bool split, int argmax_limit, const AttentionWork& work) {
    for (const DecodeGraph& g : m->graphs.captured) {
        if (g.tokens == tokens && g.split == split && g.argmax_limit == argmax_limit) return g.exec;
    }
    const rr_model_config& c = m->config;
    AttentionPlan plan;
    plan.decode_tokens = tokens;
    plan.split = split;
    plan.max_decode_blocks = decode_graph_split_blocks(tokens, c.num_kv_heads, m->multiprocessors, m->attention_split_blocks);
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
        run_model(m, in, tokens, tokens, argmax_limit, work, plan);
    } catch (...) {
        cudaStreamEndCapture(m->stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    check_cuda(cudaStreamEndCapture(m->stream, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check_cuda(instantiated, "cudaGraphInstantiate");
    m->graphs.captured.push_back(DecodeGraph{tokens, split, argmax_limit, exec});
    return exec;
}

}  // namespace

void forward(rr_model* m, const rr_step* step) {
    const rr_model_config& c = m->config;
    const int T = step->num_tokens, R = step->num_logit_rows;
    if (!m->kv) fail("the KV cache is not allocated");
    if (!m->weights) fail("the weights are released");
    if (T <= 0 || T > c.max_tokens) fail("the step has " + std::to_string(T) + " tokens; the limit is " + std::to_string(c.max_tokens));
    if (R < 0 || R > c.max_logit_rows) fail("the step asks for " + std::to_string(R) + " logit rows; the limit is " + std::to_string(c.max_logit_rows));
    if (step->num_seqs <= 0 || step->num_seqs > c.max_seqs) fail("the step's sequence count is outside 1.." + std::to_string(c.max_seqs));
    if (step->staging_bytes <= 0 || (size_t)step->staging_bytes > m->ws.input_bytes) fail("the step's packed inputs do not fit the input buffer");
    check_cuda(cudaSetDevice(m->device), "cudaSetDevice");
    cudaStream_t s = m->stream;
    Workspace& ws = m->ws;
    AttentionWork attention_work;
    const AttentionPlan attention = plan_step_attention(m, step, attention_work);
    if (graph_eligible(m, step, attention)) {
        const int tokens = decode_graph_tokens(T, m->graphs.max_tokens);
        const StepInputs in = upload_graph_inputs(m, step, tokens);
        check_cuda(cudaMemsetAsync(ws.token_status, 0, tokens, s), "cudaMemsetAsync(token status)");
        const cudaGraphExec_t exec = decode_graph(m, in, tokens, attention.split, step->argmax_limit, attention_work);
        check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch(decode step)");
        ++m->graphs.replays;
    } else {
        {
            ProfileScope p(m, PROFILE_INPUT_COPY);
            check_cuda(cudaMemcpyAsync(ws.input, step->staging, step->staging_bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync(step input)");
            check_cuda(cudaMemsetAsync(ws.token_status, 0, T, s), "cudaMemsetAsync(token status)");
        }
        run_model(m, packed_inputs(m, step), T, R, step->argmax_limit, attention_work, attention);
        ++m->graphs.eager_steps;
    }
    {
        ProfileScope p(m, PROFILE_OUTPUT_COPY);
        if (R > 0 && step->copy_logits) {
            launch_to_f32(s, ws.logits, ws.logits_f32, (int64_t)R * c.vocab_size);
            check_cuda(cudaMemcpyAsync(step->logits_out, ws.logits_f32, (size_t)R * c.vocab_size * sizeof(float),
                                       cudaMemcpyDeviceToHost, s),
                       "cudaMemcpyAsync(logits)");
        }
        if (R > 0 && step->argmax_out) {
            check_cuda(cudaMemcpyAsync(step->argmax_out, ws.argmax, (size_t)R * sizeof(int32_t), cudaMemcpyDeviceToHost, s),
                       "cudaMemcpyAsync(argmax)");
        }
        if (step->token_status_out) {
            check_cuda(cudaMemcpyAsync(step->token_status_out, ws.token_status, T, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync(token status)");
        }
        if (step->capture_routing && m->num_moe_layers > 0) {
            check_cuda(cudaMemcpyAsync(step->routing_out, ws.routing, (size_t)T * m->row_bytes, cudaMemcpyDeviceToHost, s),
                       "cudaMemcpyAsync(routing)");
        }
    }
    check_cuda(cudaStreamSynchronize(s), "the step's forward");
    if (m->profiler.enabled) profile_collect(m);
}

}  // namespace rr
