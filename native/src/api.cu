// The C ABI: model creation and destruction, weights, KV cache, block copies, host memory, profiling.
#include "kernels.cuh"
#include "model.cuh"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <vector>

namespace rr {

namespace {
thread_local std::string g_error;

// The first sticky error of this process; once set, every call fails with it without touching the device.
std::atomic<bool> g_faulted{false};
std::string g_fault_message;

const char* kProfileNames[PROFILE_CLASS_COUNT] = {
    "input_copy", "embed",     "norm",         "qkv_gemm",    "qk_norm_rope", "attention", "o_gemm",      "router_gemm",
    "route",      "moe_plan",  "moe_gate_up",  "moe_down",    "moe_combine",  "dense_mlp", "lm_head",     "output_copy",
};

// The largest decode step replayed from a graph.
constexpr int kMaxDecodeGraphTokens = 512;

size_t align256(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

template <typename F>
int guarded(F&& body) {
    if (g_faulted.load()) {
        set_error("the GPU context is unusable after an earlier device fault (" + g_fault_message + "); restart the process");
        return RR_DEVICE_FAULT;
    }
    try {
        body();
        return RR_OK;
    } catch (const Failure& failure) {
        set_error(failure.message);
    } catch (const std::exception& e) {
        set_error(std::string("unexpected error: ") + e.what());
    }
    return g_faulted.load() ? RR_DEVICE_FAULT : RR_ERROR;
}

// Errors after which the CUDA context is corrupt and every later call fails: the process must restart.
bool is_sticky(cudaError_t status) {
    switch (status) {
        case cudaErrorIllegalAddress:
        case cudaErrorLaunchFailure:
        case cudaErrorLaunchTimeout:
        case cudaErrorHardwareStackError:
        case cudaErrorIllegalInstruction:
        case cudaErrorMisalignedAddress:
        case cudaErrorInvalidAddressSpace:
        case cudaErrorInvalidPc:
        case cudaErrorAssert:
        case cudaErrorECCUncorrectable:
        case cudaErrorDevicesUnavailable:
        case cudaErrorContextIsDestroyed:
            return true;
        default:
            return false;
    }
}

__global__ void write_through_invalid_address_kernel(int* target) { *target = 1; }

// Every pair is checked before any copy is queued, so a bad pair leaves nothing half-done.
void validate_block_copies(const rr_model* m, const int32_t* blocks, void* const* host, int32_t count) {
    if (!m->kv) fail("the KV cache is released");
    if (count < 0) fail("a negative number of block copies");
    for (int i = 0; i < count; ++i) {
        if (blocks[i] < 0 || blocks[i] >= m->num_blocks) {
            fail("block " + std::to_string(blocks[i]) + " (pair " + std::to_string(i) + ") is outside the KV cache of " + std::to_string(m->num_blocks) + " blocks");
        }
        if (!host[i]) fail("pair " + std::to_string(i) + " has no host address");
    }
}

// Points every weight pointer at the same offset in the arena at `to` as it had in the arena at `from`.
void rebase_weights(rr_model* m, uintptr_t from, uint8_t* to) {
    auto move = [&](bf16*& p) {
        if (p) p = reinterpret_cast<bf16*>(to + (reinterpret_cast<uintptr_t>(p) - from));
    };
    move(m->embed);
    move(m->final_norm);
    move(m->lm_head);
    for (LayerWeights& w : m->layers) {
        for (bf16** p : {&w.input_norm, &w.post_norm, &w.q, &w.k, &w.v, &w.o, &w.q_norm, &w.k_norm, &w.router, &w.gate_up,
                         &w.down, &w.mlp_gate, &w.mlp_up, &w.mlp_down}) {
            move(*p);
        }
    }
}

void validate(const rr_model_config& c) {
    auto require = [](bool ok, const std::string& message) {
        if (!ok) fail(message);
    };
    require(c.hidden_size > 0 && c.hidden_size % 32 == 0, "hidden_size must be a positive multiple of 32");
    require(c.num_layers > 0, "num_layers must be positive");
    require(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
            "num_attention_heads must be a multiple of num_key_value_heads");
    require(c.head_dim >= 16 && c.head_dim % 16 == 0, "head_dim must be a multiple of 16");
    require(attention_supported(c.num_heads / c.num_kv_heads, c.head_dim),
            "attention supports 1, 2, 4, 8 or 16 query heads per KV head and head_dim 16, 32, 64 or 128, not " +
                std::to_string(c.num_heads / c.num_kv_heads) + " and " + std::to_string(c.head_dim));
    require(c.vocab_size > 0, "vocab_size must be positive");
    require(c.top_k >= 1 && c.top_k <= 32, "num_experts_per_tok must be in 1..32");
    require(c.num_experts >= 0 && c.num_experts <= 8192, "num_experts must be in 0..8192");
    require(c.num_experts == 0 || (c.moe_intermediate_size > 0 && c.moe_intermediate_size % 32 == 0),
            "moe_intermediate_size must be a positive multiple of 32");
    require(c.intermediate_size >= 0 && c.intermediate_size % 32 == 0, "intermediate_size must be a multiple of 32");
    require(c.block_size > 0, "block_size must be positive");
    require(c.max_tokens > 0 && c.max_seqs > 0 && c.max_blocks_per_seq > 0 && c.max_logit_rows > 0 && c.max_model_len > 1,
            "the step limits must be positive");
    require(c.routing_element_bytes == 1 || c.routing_element_bytes == 2, "routing_element_bytes must be 1 or 2");
}

// Bytes from ptr to the end of the allocation holding it, from the driver's cuMemGetAddressRange (the runtime API has
// no such call; the driver library is loaded by the runtime already).
uint64_t ipc_allocation_bytes(const void* ptr) {
    using GetAddressRange = int (*)(unsigned long long* base, size_t* size, unsigned long long ptr);
    static const GetAddressRange get_address_range = [] {
        void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
        return driver ? reinterpret_cast<GetAddressRange>(dlsym(driver, "cuMemGetAddressRange_v2")) : nullptr;
    }();
    if (!get_address_range) fail("the CUDA driver library has no cuMemGetAddressRange_v2");
    const unsigned long long address = reinterpret_cast<unsigned long long>(ptr);
    unsigned long long base = 0;
    size_t size = 0;
    const int status = get_address_range(&base, &size, address);
    if (status != 0) fail("cuMemGetAddressRange failed with driver error " + std::to_string(status));
    return base + size - address;
}

}  // namespace

void set_error(const std::string& message) { g_error = message; }
const char* last_error() { return g_error.c_str(); }

void fail(const std::string& message) { throw Failure{message}; }

void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        const std::string message = std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
        if (is_sticky(status) && !g_faulted.exchange(true)) g_fault_message = message;
        fail(message);
    }
}

void check_cublas(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fail(std::string(what) + ": cuBLAS status " + std::to_string((int)status));
    }
}

void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

const char* profile_class_name(int index) {
    return index >= 0 && index < PROFILE_CLASS_COUNT ? kProfileNames[index] : "";
}

void* device_alloc(rr_model* m, size_t bytes, const char* what) {
    void* p = nullptr;
    if (bytes == 0) return nullptr;
    check_cuda(cudaMalloc(&p, bytes), what);
    m->allocations.push_back(p);
    return p;
}

void device_free(rr_model* m, void* p) {
    if (!p) return;
    const auto it = std::find(m->allocations.begin(), m->allocations.end(), p);
    if (it != m->allocations.end()) m->allocations.erase(it);
    check_cuda(cudaFree(p), "cudaFree");
}

ProfileScope::ProfileScope(rr_model* m, int cls) : model(m), index(-1) {
    Profiler& p = m->profiler;
    if (!p.enabled) return;
    if ((size_t)(p.used + 1) * 2 > p.events.size()) {
        for (int i = 0; i < 256; ++i) {
            cudaEvent_t e;
            check_cuda(cudaEventCreate(&e), "cudaEventCreate");
            p.events.push_back(e);
        }
    }
    index = p.used++;
    if ((size_t)index >= p.classes.size()) p.classes.resize(index + 1);
    p.classes[index] = cls;
    check_cuda(cudaEventRecord(p.events[2 * index], m->stream), "cudaEventRecord");
}

ProfileScope::~ProfileScope() {
    if (index >= 0) cudaEventRecord(model->profiler.events[2 * index + 1], model->stream);
}

// After the step's synchronization: adds every recorded pair's time to its class.
void profile_collect(rr_model* m) {
    Profiler& p = m->profiler;
    for (int i = 0; i < p.used; ++i) {
        float ms = 0.f;
        check_cuda(cudaEventElapsedTime(&ms, p.events[2 * i], p.events[2 * i + 1]), "cudaEventElapsedTime");
        p.totals[p.classes[i]] += ms;
    }
    p.used = 0;
}

}  // namespace rr

using namespace rr;

extern "C" {

int rr_abi_version(void) { return RR_ABI_VERSION; }

const char* rr_last_error(void) { return last_error(); }

int rr_device_count(int32_t* count) {
    return guarded([&] {
        int n = 0;
        check_cuda(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
        *count = n;
    });
}

int rr_device_name(char* name, int32_t capacity) {
    return guarded([&] {
        cudaDeviceProp prop;
        check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
        std::snprintf(name, capacity, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                      prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    });
}

int rr_memory_info(uint64_t* free_bytes, uint64_t* total_bytes) {
    return guarded([&] {
        size_t f = 0, t = 0;
        check_cuda(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
        *free_bytes = f;
        *total_bytes = t;
    });
}

namespace {

// Times launch_linear's decode-sized configurations on this model's projection weights (every layer's in turn, as a
// decode step streams them) and keeps the fastest per shape; the bits do not depend on the choice.
// ROUTEREPLAY_DECODE_TUNING=off keeps launch_linear's own rule (to measure what the tuning gains).
void tune_linears(rr_model* m) {
    const char* setting = std::getenv("ROUTEREPLAY_DECODE_TUNING");
    if (setting && std::string(setting) == "off") return;
    const rr_model_config& c = m->config;
    const int H = c.hidden_size, qdim = c.num_heads * c.head_dim, kvdim = c.num_kv_heads * c.head_dim;
    std::vector<LinearShape> shapes = {{qdim + 2 * kvdim, H, {}}, {H, qdim, {}}, {c.num_experts, H, {}},
                                       {c.intermediate_size, H, {}}, {H, c.intermediate_size, {}}};
    for (const LayerWeights& w : m->layers) {
        shapes[0].weights.push_back(w.q);
        shapes[1].weights.push_back(w.o);
        if (w.moe) {
            shapes[2].weights.push_back(w.router);
        } else {
            shapes[3].weights.push_back(w.mlp_gate);
            shapes[3].weights.push_back(w.mlp_up);
            shapes[4].weights.push_back(w.mlp_down);
        }
    }
    int most_n = 0, most_k = 0;
    for (const LinearShape& shape : shapes) {
        if (shape.weights.empty()) continue;
        most_n = std::max(most_n, shape.n);
        most_k = std::max(most_k, shape.k);
    }
    bf16 *x = nullptr, *y = nullptr;
    check_cuda(cudaMalloc(&x, (size_t)16 * most_k * sizeof(bf16)), "cudaMalloc(tuning input)");
    const cudaError_t status = cudaMalloc(&y, (size_t)16 * most_n * sizeof(bf16));
    if (status != cudaSuccess) {
        cudaFree(x);
        check_cuda(status, "cudaMalloc(tuning output)");
    }
    try {
        m->linear_tuning = tune_decode_linears(m->stream, shapes, x, y, m->ws.gemm);
    } catch (...) {
        cudaFree(x), cudaFree(y);
        throw;
    }
    cudaFree(x), cudaFree(y);
    m->ws.gemm.tuning = &m->linear_tuning;
}

}  // namespace

int rr_model_create(const rr_model_config* config, rr_model** out) {
    *out = nullptr;
    rr_model* m = new rr_model();
    const int status = guarded([&] {
        const rr_model_config& c = *config;
        validate(c);
        m->config = c;
        m->config.rope_inv_freq = nullptr;
        m->config.layer_is_moe = nullptr;
        m->inv_freq.assign(c.rope_inv_freq, c.rope_inv_freq + c.head_dim / 2);
        check_cuda(cudaGetDevice(&m->device), "cudaGetDevice");
        check_cuda(cudaDeviceGetAttribute(&m->max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, m->device),
                   "cudaDeviceGetAttribute");
        check_cuda(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "cudaStreamCreate");
        check_cublas(cublasCreate(&m->cublas), "cublasCreate");
        check_cublas(cublasSetStream(m->cublas, m->stream), "cublasSetStream");
        check_cublas(cublasSetMathMode(m->cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");

        const size_t H = c.hidden_size, hd = c.head_dim, qdim = (size_t)c.num_heads * hd, kvdim = (size_t)c.num_kv_heads * hd;
        const size_t E = c.num_experts, I = c.moe_intermediate_size, Id = c.intermediate_size, V = c.vocab_size;
        m->layers.resize(c.num_layers);
        // The arena layout: every tensor 256-byte aligned.
        size_t offset = 0;
        auto place = [&](size_t elements) {
            const size_t at = offset;
            offset += align256(elements * sizeof(bf16));
            return at;
        };
        const size_t embed_at = place(V * H), final_norm_at = place(H);
        const size_t lm_head_at = c.tie_word_embeddings ? embed_at : place(V * H);
        struct Offsets {
            size_t input_norm, post_norm, q, k, v, o, q_norm, k_norm, router, gate_up, down, mlp_gate, mlp_up, mlp_down;
        };
        std::vector<Offsets> at(c.num_layers);
        for (int l = 0; l < c.num_layers; ++l) {
            Offsets& o = at[l];
            o.input_norm = place(H);
            o.post_norm = place(H);
            // q, k and v rows back to back: one fused projection.
            o.q = place((qdim + 2 * kvdim) * H);
            o.k = o.q + qdim * H * sizeof(bf16);
            o.v = o.k + kvdim * H * sizeof(bf16);
            o.o = place(H * qdim);
            o.q_norm = place(hd);
            o.k_norm = place(hd);
            const bool moe = config->layer_is_moe[l] != 0;
            if (moe) {
                if (E == 0) fail("a MoE layer needs num_experts > 0");
                o.router = place(E * H);
                o.gate_up = place(E * 2 * I * H);
                o.down = place(E * H * I);
            } else {
                if (Id == 0) fail("a dense layer needs intermediate_size > 0");
                o.mlp_gate = place(Id * H);
                o.mlp_up = place(Id * H);
                o.mlp_down = place(H * Id);
            }
            m->layers[l].moe = moe;
            m->layers[l].moe_index = moe ? m->num_moe_layers++ : -1;
        }
        m->weights_bytes = offset;
        m->weights = static_cast<uint8_t*>(device_alloc(m, offset, "cudaMalloc(weights)"));
        auto ptr = [&](size_t o) { return reinterpret_cast<bf16*>(m->weights + o); };
        m->embed = ptr(embed_at);
        m->final_norm = ptr(final_norm_at);
        m->lm_head = ptr(lm_head_at);
        for (int l = 0; l < c.num_layers; ++l) {
            LayerWeights& w = m->layers[l];
            const Offsets& o = at[l];
            w.input_norm = ptr(o.input_norm);
            w.post_norm = ptr(o.post_norm);
            w.q = ptr(o.q);
            w.k = ptr(o.k);
            w.v = ptr(o.v);
            w.o = ptr(o.o);
            w.q_norm = ptr(o.q_norm);
            w.k_norm = ptr(o.k_norm);
            if (w.moe) {
                w.router = ptr(o.router);
                w.gate_up = ptr(o.gate_up);
                w.down = ptr(o.down);
            } else {
                w.mlp_gate = ptr(o.mlp_gate);
                w.mlp_up = ptr(o.mlp_up);
                w.mlp_down = ptr(o.mlp_down);
            }
        }
        m->row_bytes = m->num_moe_layers * c.top_k * c.routing_element_bytes;
        m->kv_block_bytes = (size_t)c.num_layers * 2 * c.block_size * kvdim * sizeof(bf16);

        // Step buffers.
        const size_t T = c.max_tokens, R = c.max_logit_rows, K = c.top_k;
        Workspace& ws = m->ws;
        ws.input_bytes = align256(T * 4 * 4) + 5 * 256 + align256(R * 4) +
                         align256((size_t)c.max_seqs * c.max_blocks_per_seq * 4) + align256(T * (size_t)m->row_bytes);
        ws.input = static_cast<uint8_t*>(device_alloc(m, ws.input_bytes, "cudaMalloc(step input)"));
        check_cuda(cudaHostAlloc(&m->graphs.host_inputs, ws.input_bytes, cudaHostAllocPortable), "cudaHostAlloc(graph inputs)");
        m->graphs.max_tokens = std::min({c.max_seqs, c.max_tokens, c.max_logit_rows, kMaxDecodeGraphTokens});
        auto buffer = [&](size_t elements, size_t size) { return device_alloc(m, align256(elements * size), "cudaMalloc(step buffer)"); };
        ws.hidden = static_cast<bf16*>(buffer(T * H, 2));
        ws.normed = static_cast<bf16*>(buffer(T * H, 2));
        ws.delta = static_cast<bf16*>(buffer(T * H, 2));
        ws.qkv = static_cast<bf16*>(buffer(T * (qdim + 2 * kvdim), 2));
        ws.attn = static_cast<bf16*>(buffer(T * qdim, 2));
        ws.token_status = static_cast<uint8_t*>(buffer(T, 1));
        if (m->num_moe_layers > 0) {
            ws.router_logits = static_cast<bf16*>(buffer(T * E, 2));
            ws.topk_ids = static_cast<int32_t*>(buffer(T * K, 4));
            ws.topk_weights = static_cast<float*>(buffer(T * K, 4));
            ws.routing = static_cast<uint8_t*>(buffer(T * m->row_bytes, 1));
            ws.max_tiles = moe_max_tiles((int)T, (int)K, (int)E, 16);
            if (ws.max_tiles > 65535) fail("max_num_batched_tokens is too large for the MoE tile grid (65535 tiles)");
            ws.expert_offsets = static_cast<int32_t*>(buffer(E + 1, 4));
            ws.tile_expert = static_cast<int32_t*>(buffer(ws.max_tiles, 4));
            ws.tile_row0 = static_cast<int32_t*>(buffer(ws.max_tiles, 4));
            ws.tile_row_end = static_cast<int32_t*>(buffer(ws.max_tiles, 4));
            ws.tile_count = static_cast<int32_t*>(buffer(1, 4));
            ws.sorted_token = static_cast<int32_t*>(buffer(T * K, 4));
            ws.assignment_row = static_cast<int32_t*>(buffer(T * K, 4));
            ws.moe_act = static_cast<bf16*>(buffer(T * K * I, 2));
            ws.moe_out = static_cast<bf16*>(buffer(T * K * H, 2));
        }
        if (m->num_moe_layers < c.num_layers) {
            ws.mlp_gate = static_cast<bf16*>(buffer(T * Id, 2));
            ws.mlp_up = static_cast<bf16*>(buffer(T * Id, 2));
        }
        ws.logit_hidden = static_cast<bf16*>(buffer(R * H, 2));
        ws.logits = static_cast<bf16*>(buffer(R * V, 2));
        ws.logits_f32 = static_cast<float*>(buffer(R * V, 4));
        ws.argmax = static_cast<int32_t*>(buffer(R, 4));
        // Split GEMMs: room for the largest decode-sized projection and for expert GEMMs of up to 64 assignments.
        size_t scratch = std::max({linear_scratch_floats((int)(qdim + 2 * kvdim), (int)H), linear_scratch_floats((int)H, (int)qdim),
                                   linear_scratch_floats((int)std::max<size_t>(E, 2), (int)H)});
        int counters = std::max({linear_scratch_counters((int)(qdim + 2 * kvdim)), linear_scratch_counters((int)H), linear_scratch_counters((int)E)});
        if (Id > 0) {
            scratch = std::max({scratch, linear_scratch_floats((int)Id, (int)H), linear_scratch_floats((int)H, (int)Id)});
            counters = std::max(counters, linear_scratch_counters((int)Id));
        }
        if (m->num_moe_layers > 0) {
            scratch = std::max(scratch, moe_scratch_floats((int)E, (int)H, (int)I, 64));
            counters = std::max(counters, moe_scratch_counters((int)E, (int)H, (int)I, 64));
        }
        ws.gemm.partials = static_cast<float*>(buffer(scratch, 4));
        ws.gemm.capacity = scratch;
        ws.gemm.counters = static_cast<int*>(buffer(counters, 4));
        ws.gemm.counter_capacity = counters;
        check_cuda(cudaMemset(ws.gemm.counters, 0, (size_t)counters * sizeof(int)), "cudaMemset(gemm counters)");
        int sms = 0;
        check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, m->device), "cudaDeviceGetAttribute");
        ws.gemm.split_below_tiles = 4 * sms;
        tune_linears(m);
        ws.cublas_workspace_bytes = 32u << 20;
        ws.cublas_workspace = device_alloc(m, ws.cublas_workspace_bytes, "cudaMalloc(cuBLAS workspace)");
        check_cublas(cublasSetWorkspace(m->cublas, ws.cublas_workspace, ws.cublas_workspace_bytes), "cublasSetWorkspace");

        m->d_inv_freq = static_cast<float*>(device_alloc(m, m->inv_freq.size() * sizeof(float), "cudaMalloc(rope)"));
        check_cuda(cudaMemcpy(m->d_inv_freq, m->inv_freq.data(), m->inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice),
                   "cudaMemcpy(rope)");

        // Attention: the step's work lists, and the decode partials of the split path. The split path serves decode
        // batches with fewer (token, KV head) items than two per multiprocessor; its workspace is capped at 1 GiB
        // (longer contexts take the whole path, which gives the same bits).
        check_cuda(cudaDeviceGetAttribute(&m->multiprocessors, cudaDevAttrMultiProcessorCount, m->device), "cudaDeviceGetAttribute");
        ws.attention_lists = static_cast<int32_t*>(buffer(2 + 3 * T, 4));
        check_cuda(cudaHostAlloc(&ws.attention_host, (2 + 3 * T) * sizeof(int32_t), cudaHostAllocPortable), "cudaHostAlloc(attention lists)");
        check_cuda(cudaHostAlloc(&ws.attention_tiles_host, 2 * T * sizeof(int32_t), cudaHostAllocPortable), "cudaHostAlloc(attention tiles)");
        m->attention_split_tokens = std::min<int>(c.max_seqs, std::min<int>((int)T, 2 * m->multiprocessors / c.num_kv_heads));
        m->attention_split_blocks = (c.max_model_len + 63) / 64;
        const size_t per_block = (size_t)m->attention_split_tokens * c.num_heads * (hd + 2) * sizeof(float);
        m->attention_split_blocks = (int)std::min<size_t>(m->attention_split_blocks, (1ull << 30) / std::max<size_t>(per_block, 1));
        const size_t partials = (size_t)m->attention_split_tokens * c.num_heads * m->attention_split_blocks;
        ws.partial_m = static_cast<float*>(buffer(partials, 4));
        ws.partial_l = static_cast<float*>(buffer(partials, 4));
        ws.partial_acc = static_cast<float*>(buffer(partials * hd, 4));
        attention_prepare(c.head_dim);
        check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize(create)");
    });
    if (status != RR_OK) {
        rr_model_destroy(m);
        return status;
    }
    *out = m;
    return RR_OK;
}

void rr_model_destroy(rr_model* m) {
    if (!m) return;
    if (m->stream) cudaStreamSynchronize(m->stream);
    m->graphs.destroy();
    if (m->graphs.host_inputs) cudaFreeHost(m->graphs.host_inputs);
    for (cudaEvent_t e : m->profiler.events) cudaEventDestroy(e);
    for (void* p : m->allocations) cudaFree(p);
    if (m->weights_host) cudaFreeHost(m->weights_host);
    if (m->ws.host_offsets) cudaFreeHost(m->ws.host_offsets);
    if (m->ws.attention_host) cudaFreeHost(m->ws.attention_host);
    if (m->ws.attention_tiles_host) cudaFreeHost(m->ws.attention_tiles_host);
    if (m->cublas) cublasDestroy(m->cublas);
    if (m->stream) cudaStreamDestroy(m->stream);
    delete m;
}

int rr_tensor(rr_model* m, int32_t kind, int32_t layer, void** device, uint64_t* bytes) {
    return guarded([&] {
        if (!m->weights) fail("the weights are released");
        const rr_model_config& c = m->config;
        const size_t H = c.hidden_size, hd = c.head_dim, qdim = (size_t)c.num_heads * hd, kvdim = (size_t)c.num_kv_heads * hd;
        const size_t E = c.num_experts, I = c.moe_intermediate_size, Id = c.intermediate_size, V = c.vocab_size;
        bf16* p = nullptr;
        size_t elements = 0;
        const bool layered = kind >= RR_INPUT_NORM;
        if (layered && (layer < 0 || layer >= c.num_layers)) fail("layer " + std::to_string(layer) + " is out of range");
        const LayerWeights* w = layered ? &m->layers[layer] : nullptr;
        switch (kind) {
            case RR_EMBED: p = m->embed; elements = V * H; break;
            case RR_FINAL_NORM: p = m->final_norm; elements = H; break;
            case RR_LM_HEAD: p = m->lm_head; elements = V * H; break;
            case RR_INPUT_NORM: p = w->input_norm; elements = H; break;
            case RR_POST_NORM: p = w->post_norm; elements = H; break;
            case RR_Q: p = w->q; elements = qdim * H; break;
            case RR_K: p = w->k; elements = kvdim * H; break;
            case RR_V: p = w->v; elements = kvdim * H; break;
            case RR_O: p = w->o; elements = H * qdim; break;
            case RR_Q_NORM: p = w->q_norm; elements = hd; break;
            case RR_K_NORM: p = w->k_norm; elements = hd; break;
            case RR_ROUTER: p = w->router; elements = E * H; break;
            case RR_GATE_UP: p = w->gate_up; elements = E * 2 * I * H; break;
            case RR_DOWN: p = w->down; elements = E * H * I; break;
            case RR_MLP_GATE: p = w->mlp_gate; elements = Id * H; break;
            case RR_MLP_UP: p = w->mlp_up; elements = Id * H; break;
            case RR_MLP_DOWN: p = w->mlp_down; elements = H * Id; break;
            default: fail("unknown tensor kind " + std::to_string(kind));
        }
        if (!p) fail("tensor kind " + std::to_string(kind) + " does not exist in layer " + std::to_string(layer));
        *device = p;
        *bytes = elements * sizeof(bf16);
    });
}

int rr_upload(rr_model* m, void* device, const void* host, uint64_t bytes) {
    return guarded([&] {
        check_cuda(cudaSetDevice(m->device), "cudaSetDevice");
        check_cuda(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy(upload)");
    });
}

int rr_copy_from_ipc(rr_model* m, const void* handles, int32_t num_handles, const int32_t* handle_index,
                     const uint64_t* source_offsets, void* const* destinations, const uint64_t* bytes, int32_t count) {
    return guarded([&] {
        if (!m->weights) fail("the weights are released; allocate them before copying into them");
        if (num_handles < 0 || count < 0) fail("a negative number of handles or copies");
        check_cuda(cudaSetDevice(m->device), "cudaSetDevice");
        std::vector<void*> opened;
        std::vector<uint64_t> allocation_bytes;
        auto close_all = [&] {
            for (void* p : opened) cudaIpcCloseMemHandle(p);
        };
        try {
            for (int32_t h = 0; h < num_handles; h++) {
                cudaIpcMemHandle_t ipc;
                std::memcpy(&ipc, static_cast<const uint8_t*>(handles) + (size_t)h * sizeof(ipc), sizeof(ipc));
                void* p = nullptr;
                const cudaError_t status = cudaIpcOpenMemHandle(&p, ipc, cudaIpcMemLazyEnablePeerAccess);
                if (status != cudaSuccess) {
                    cudaGetLastError();
                    fail("handle " + std::to_string(h) + " does not open (cudaIpcOpenMemHandle: " + cudaGetErrorString(status) +
                         "); is its process alive and its tensor still allocated?");
                }
                opened.push_back(p);
                allocation_bytes.push_back(ipc_allocation_bytes(p));
            }
            const uintptr_t arena = reinterpret_cast<uintptr_t>(m->weights);
            for (int32_t i = 0; i < count; i++) {
                if (handle_index[i] < 0 || handle_index[i] >= num_handles) fail("copy " + std::to_string(i) + " names no handle");
                const uint64_t allocation = allocation_bytes[handle_index[i]];
                if (source_offsets[i] > allocation || bytes[i] > allocation - source_offsets[i]) {
                    fail("copy " + std::to_string(i) + " reads bytes " + std::to_string(source_offsets[i]) + ".." +
                         std::to_string(source_offsets[i] + bytes[i]) + " of a shared allocation of " + std::to_string(allocation) +
                         " bytes");
                }
                const uintptr_t destination = reinterpret_cast<uintptr_t>(destinations[i]);
                if (destination < arena || destination - arena > m->weights_bytes || bytes[i] > m->weights_bytes - (destination - arena)) {
                    fail("copy " + std::to_string(i) + " writes outside the weights");
                }
            }
            for (int32_t i = 0; i < count; i++) {
                check_cuda(cudaMemcpyAsync(destinations[i], static_cast<const uint8_t*>(opened[handle_index[i]]) + source_offsets[i],
                                           bytes[i], cudaMemcpyDeviceToDevice, m->stream),
                           "cudaMemcpyAsync(from IPC)");
            }
            check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(from IPC)");
        } catch (...) {
            cudaStreamSynchronize(m->stream);
            close_all();
            throw;
        }
        cudaError_t closed = cudaSuccess;
        for (void* p : opened) {
            const cudaError_t status = cudaIpcCloseMemHandle(p);
            if (closed == cudaSuccess) closed = status;
        }
        check_cuda(closed, "cudaIpcCloseMemHandle");
    });
}

int rr_fill_normal(rr_model* m, void* device, uint64_t count, uint64_t seed, float mean, float std) {
    return guarded([&] {
        launch_fill_normal(m->stream, static_cast<bf16*>(device), count, seed, mean, std);
        check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(fill)");
    });
}

uint64_t rr_kv_bytes_per_block(const rr_model* m) { return m->kv_block_bytes; }

int rr_kv_allocate(rr_model* m, int32_t num_blocks) {
    return guarded([&] {
        if (m->kv) fail("the KV cache is already allocated");
        if (num_blocks <= 0) fail("the KV cache needs at least one block");
        m->kv = static_cast<uint8_t*>(device_alloc(m, (size_t)num_blocks * m->kv_block_bytes, "cudaMalloc(KV cache)"));
        m->num_blocks = num_blocks;
        m->graphs.destroy();  // captured with the cache's address
    });
}

int rr_kv_release(rr_model* m) {
    return guarded([&] {
        if (!m->kv) return;
        check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(KV release)");
        uint8_t* kv = m->kv;
        m->kv = nullptr;
        m->num_blocks = 0;
        m->graphs.destroy();  // captured with the cache's address
        device_free(m, kv);
    });
}

int rr_weights_release(rr_model* m, int32_t keep_host_copy) {
    return guarded([&] {
        if (!m->weights) {
            if (!keep_host_copy && m->weights_host) {
                cudaFreeHost(m->weights_host);
                m->weights_host = nullptr;
            }
            return;
        }
        check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(weights release)");
        uint8_t* host = nullptr;
        if (keep_host_copy) {
            check_cuda(cudaHostAlloc(reinterpret_cast<void**>(&host), m->weights_bytes, cudaHostAllocPortable), "cudaHostAlloc(weights host copy)");
            cudaError_t copied = cudaMemcpyAsync(host, m->weights, m->weights_bytes, cudaMemcpyDeviceToHost, m->stream);
            if (copied == cudaSuccess) copied = cudaStreamSynchronize(m->stream);
            if (copied != cudaSuccess) {
                cudaFreeHost(host);
                check_cuda(copied, "cudaMemcpyAsync(weights to host)");
            }
        }
        uint8_t* arena = m->weights;
        m->weights_host = host;
        m->weights_released_from = reinterpret_cast<uintptr_t>(arena);
        m->weights = nullptr;
        m->graphs.destroy();  // captured with the weights' addresses
        device_free(m, arena);
    });
}

int rr_weights_restore(rr_model* m, int32_t copy_back) {
    return guarded([&] {
        if (m->weights) return;
        if (copy_back && !m->weights_host) fail("the weights were released without a host copy; upload new weights instead");
        uint8_t* arena = static_cast<uint8_t*>(device_alloc(m, m->weights_bytes, "cudaMalloc(weights)"));
        if (copy_back) {
            cudaError_t copied = cudaMemcpyAsync(arena, m->weights_host, m->weights_bytes, cudaMemcpyHostToDevice, m->stream);
            if (copied == cudaSuccess) copied = cudaStreamSynchronize(m->stream);
            if (copied != cudaSuccess) {
                device_free(m, arena);
                check_cuda(copied, "cudaMemcpyAsync(weights to the device)");
            }
        }
        rebase_weights(m, m->weights_released_from, arena);
        m->weights = arena;
        m->weights_released_from = 0;
        if (m->weights_host) {
            cudaFreeHost(m->weights_host);
            m->weights_host = nullptr;
        }
    });
}

int rr_forward(rr_model* m, const rr_step* step) {
    const int status = guarded([&] { forward(m, step); });
    // Work queued before the failure may still read the staging buffer or write the outputs: wait for it, so the
    // host can reuse them (a poisoned context returns at once).
    if (status != RR_OK && m->stream) cudaStreamSynchronize(m->stream);
    return status;
}

int rr_set_per_expert_gemms(rr_model* m, int32_t enabled) {
    return guarded([&] {
        const rr_model_config& c = m->config;
        if (enabled && m->num_moe_layers > 0 && !m->ws.moe_rows) {
            const size_t rows = (size_t)c.max_tokens * c.top_k;
            m->ws.moe_rows = static_cast<bf16*>(device_alloc(m, rows * c.hidden_size * sizeof(bf16), "cudaMalloc(per-expert rows)"));
            m->ws.moe_gate_up = static_cast<bf16*>(device_alloc(m, rows * 2 * c.moe_intermediate_size * sizeof(bf16), "cudaMalloc(per-expert gate/up)"));
            check_cuda(cudaHostAlloc(&m->ws.host_offsets, (c.num_experts + 1) * sizeof(int32_t), cudaHostAllocPortable), "cudaHostAlloc(expert offsets)");
        }
        m->per_expert_gemms = enabled != 0;
    });
}

int rr_set_cuda_graphs(rr_model* m, int32_t enabled) {
    return guarded([&] {
        check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize(graphs)");
        if (!enabled) m->graphs.destroy();
        m->graphs.enabled = enabled != 0;
    });
}

int rr_cuda_graph_stats(const rr_model* m, int32_t* graphs, int64_t* replays, int64_t* eager_steps) {
    *graphs = (int32_t)m->graphs.captured.size();
    *replays = m->graphs.replays;
    *eager_steps = m->graphs.eager_steps;
    return RR_OK;
}

int rr_copy_blocks_to_host(rr_model* m, const int32_t* blocks, void* const* host, int32_t count) {
    return guarded([&] {
        validate_block_copies(m, blocks, host, count);
        for (int i = 0; i < count; ++i) {
            check_cuda(cudaMemcpyAsync(host[i], m->kv + (size_t)blocks[i] * m->kv_block_bytes, m->kv_block_bytes,
                                       cudaMemcpyDeviceToHost, m->stream),
                       "cudaMemcpyAsync(block to host)");
        }
    });
}

int rr_copy_blocks_to_device(rr_model* m, void* const* host, const int32_t* blocks, int32_t count) {
    return guarded([&] {
        validate_block_copies(m, blocks, host, count);
        for (int i = 0; i < count; ++i) {
            check_cuda(cudaMemcpyAsync(m->kv + (size_t)blocks[i] * m->kv_block_bytes, host[i], m->kv_block_bytes,
                                       cudaMemcpyHostToDevice, m->stream),
                       "cudaMemcpyAsync(block to device)");
        }
    });
}

int rr_read_block(rr_model* m, int32_t block, void* host) {
    if (rr_copy_blocks_to_host(m, &block, &host, 1) != RR_OK) return RR_ERROR;
    return rr_synchronize(m);
}

int rr_write_block(rr_model* m, int32_t block, const void* host) {
    void* source = const_cast<void*>(host);
    if (rr_copy_blocks_to_device(m, &source, &block, 1) != RR_OK) return RR_ERROR;
    return rr_synchronize(m);
}

int rr_synchronize(rr_model* m) {
    return guarded([&] { check_cuda(cudaStreamSynchronize(m->stream), "cudaStreamSynchronize"); });
}

int rr_inject_device_fault(rr_model* m) {
    return guarded([&] {
        write_through_invalid_address_kernel<<<1, 1, 0, m->stream>>>(reinterpret_cast<int*>(16));
        check_launch("write_through_invalid_address");
        check_cuda(cudaStreamSynchronize(m->stream), "the injected device fault");
    });
}

int rr_host_alloc(uint64_t bytes, void** host) {
    return guarded([&] {
        *host = nullptr;
        check_cuda(cudaHostAlloc(host, bytes, cudaHostAllocPortable), "cudaHostAlloc");
    });
}

void rr_host_free(void* host) {
    if (host) cudaFreeHost(host);
}

int rr_set_profiling(rr_model* m, int32_t enabled) {
    return guarded([&] {
        m->profiler.enabled = enabled != 0;
        m->profiler.used = 0;
        std::fill(std::begin(m->profiler.totals), std::end(m->profiler.totals), 0.0);
    });
}

int32_t rr_profile_class_count(void) { return PROFILE_CLASS_COUNT; }

const char* rr_profile_class_name(int32_t index) { return profile_class_name(index); }

int rr_profile(rr_model* m, double* milliseconds, int32_t capacity) {
    return guarded([&] {
        for (int i = 0; i < PROFILE_CLASS_COUNT && i < capacity; ++i) milliseconds[i] = m->profiler.totals[i];
        std::fill(std::begin(m->profiler.totals), std::end(m->profiler.totals), 0.0);
    });
}

}  // extern "C"
