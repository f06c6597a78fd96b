/*
 * RouteReplay CUDA backend: the C ABI between the .NET host (src/RouteReplay/Backends/Cuda) and the kernels.
 *
 * One rr_model owns everything on the device for one model: bf16 weights, the paged bf16 KV cache, fixed-capacity
 * step buffers (sized at creation from the engine's limits, so a step never allocates), one stream and one cuBLAS
 * handle. Every call is made from one host thread at a time. All work goes to the model's one stream, so stream
 * order is the fence between block copies and forwards. Functions return RR_OK, RR_ERROR or RR_DEVICE_FAULT; after
 * either failure, rr_last_error() describes it (per calling thread).
 *
 * RR_DEVICE_FAULT means the CUDA context is poisoned (a sticky error: an illegal address, a kernel that trapped, a lost
 * device): every later call of this process fails the same way at once, without touching the device. The only
 * recovery is a new process.
 */
#ifndef ROUTEREPLAY_CUDA_H
#define ROUTEREPLAY_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RR_API __attribute__((visibility("default")))

#define RR_OK 0
#define RR_ERROR 1
#define RR_DEVICE_FAULT 2

/* Bumped whenever a struct below or a function's meaning changes; the host checks it before anything else. */
#define RR_ABI_VERSION 4

typedef struct rr_model rr_model;

/* The architecture and the engine's limits. Pointers are read during rr_model_create only. */
typedef struct rr_model_config {
    int32_t hidden_size;
    int32_t num_layers;
    int32_t num_heads;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t vocab_size;
    int32_t intermediate_size;     /* dense MLP layers */
    int32_t moe_intermediate_size; /* one expert */
    int32_t num_experts;
    int32_t top_k;
    int32_t norm_topk_prob;
    int32_t tie_word_embeddings;
    float rms_norm_eps;
    float rope_attention_scaling;
    const float* rope_inv_freq;  /* head_dim / 2 values */
    const uint8_t* layer_is_moe; /* num_layers values, 1 for a MoE layer */
    int32_t block_size;
    int32_t max_tokens;          /* most tokens of one step (max_num_batched_tokens) */
    int32_t max_seqs;
    int32_t max_blocks_per_seq;
    int32_t max_logit_rows;
    int32_t max_model_len;
    int32_t routing_element_bytes; /* 1 (uint8) or 2 (uint16) */
} rr_model_config;

/*
 * One step. The host packs its inputs into one pinned staging buffer (sections at the byte offsets below, each an
 * array of int32 except forced, which is num_tokens routing rows); rr_forward copies the packed bytes to the device
 * in one transfer, runs the forward, copies back the logits of the logit rows (fp32), each token's status and, when
 * capture_routing is set, the step's routing rows, then synchronizes once. A token's status is nonzero when a router
 * saw a logit that is not finite (NaN or infinite) for it: its routing and outputs are meaningless and its request must
 * fail; the step's other tokens are unaffected (every kernel keeps such a token's ids in range).
 * When the forward fails, the stream is synchronized before returning, so the staging buffer may be reused.
 */
typedef struct rr_step {
    int32_t num_tokens;
    int32_t num_seqs;
    int32_t num_logit_rows;
    int32_t capture_routing;
    const void* staging;
    int64_t staging_bytes;
    int64_t token_ids;    /* [num_tokens] */
    int64_t positions;    /* [num_tokens] */
    int64_t slots;        /* [num_tokens]; a negative slot marks a padding token that writes nothing */
    int64_t token_seq;    /* [num_tokens] sequence index of each token */
    int64_t logit_tokens; /* [num_logit_rows] token index of each logit row */
    int64_t block_tables; /* [num_seqs, max_blocks_per_seq] */
    int64_t forced;       /* [num_tokens, row bytes], or -1: no forced routing this step */
    float* logits_out;    /* host, [num_logit_rows, vocab_size] */
    uint8_t* routing_out; /* host, [num_tokens, num_moe_layers * top_k * routing_element_bytes] */
    uint8_t* token_status_out; /* host, [num_tokens]: RR_TOKEN_* flags */
    int32_t* argmax_out;  /* host, [num_logit_rows]: each row's largest logit's id below argmax_limit (first on ties,
                             NaN above numbers), or NULL */
    int32_t argmax_limit; /* ids at or past it are never an argmax; <= 0: every id */
    int32_t copy_logits;  /* 0: logits_out is not written (the host needs only argmax_out) */
} rr_step;

#define RR_TOKEN_OK 0
#define RR_TOKEN_NONFINITE_ROUTER_LOGITS 1

/* Tensors a host uploads or fills. Layer-less kinds ignore the layer argument. */
enum rr_tensor_kind {
    RR_EMBED = 0,        /* [vocab, hidden] */
    RR_FINAL_NORM = 1,   /* [hidden] */
    RR_LM_HEAD = 2,      /* [vocab, hidden]; the embedding itself when tied */
    RR_INPUT_NORM = 3,   /* [hidden] */
    RR_POST_NORM = 4,    /* [hidden] */
    RR_Q = 5,            /* [heads * head_dim, hidden] */
    RR_K = 6,            /* [kv_heads * head_dim, hidden] */
    RR_V = 7,            /* [kv_heads * head_dim, hidden] */
    RR_O = 8,            /* [hidden, heads * head_dim] */
    RR_Q_NORM = 9,       /* [head_dim] */
    RR_K_NORM = 10,      /* [head_dim] */
    RR_ROUTER = 11,      /* [experts, hidden] */
    RR_GATE_UP = 12,     /* [experts, 2 * moe_intermediate, hidden]: per expert, gate rows then up rows */
    RR_DOWN = 13,        /* [experts, hidden, moe_intermediate] */
    RR_MLP_GATE = 14,    /* [intermediate, hidden] */
    RR_MLP_UP = 15,      /* [intermediate, hidden] */
    RR_MLP_DOWN = 16,    /* [hidden, intermediate] */
};

RR_API int rr_abi_version(void);
RR_API const char* rr_last_error(void);

/* Devices the runtime sees; fails (with the runtime's reason) when the driver or the device is unusable. */
RR_API int rr_device_count(int32_t* count);
RR_API int rr_device_name(char* name, int32_t capacity);
RR_API int rr_memory_info(uint64_t* free_bytes, uint64_t* total_bytes);

/* Allocates the weights and the step buffers (not the KV cache). */
RR_API int rr_model_create(const rr_model_config* config, rr_model** model);
RR_API void rr_model_destroy(rr_model* model);

/* Where a tensor lives on the device and how many bytes it holds. */
RR_API int rr_tensor(rr_model* model, int32_t kind, int32_t layer, void** device, uint64_t* bytes);
/* Copies bytes from host memory (any kind) to the device and waits for the copy. Between steps, several threads may
 * upload at once (each call waits for its own copy only). */
RR_API int rr_upload(rr_model* model, void* device, const void* host, uint64_t bytes);
/*
 * Copies device memory other processes on this machine shared with cudaIpcGetMemHandle into the weights. handles holds
 * num_handles 64-byte cudaIpcMemHandle_t, each opened once (cudaIpcMemLazyEnablePeerAccess, so one from another GPU
 * works too); copy i reads bytes[i] bytes at source_offsets[i] of the allocation handles[handle_index[i]] names and
 * writes them at destinations[i]. Nothing is copied unless every handle opens, every source range lies inside its
 * allocation and every destination range inside the weights arena; then the copies run on the model's stream, are
 * waited for, and the handles are closed.
 */
RR_API int rr_copy_from_ipc(rr_model* model, const void* handles, int32_t num_handles, const int32_t* handle_index,
                            const uint64_t* source_offsets, void* const* destinations, const uint64_t* bytes, int32_t count);
/* Fills count bf16 values with mean + std * N(0, 1), a pure function of (seed, index): reproducible on any GPU. */
RR_API int rr_fill_normal(rr_model* model, void* device, uint64_t count, uint64_t seed, float mean, float std);

/* KV cache: per block, for every layer, K then V, each [block_size, kv_heads, head_dim] bf16 (one contiguous range). */
RR_API uint64_t rr_kv_bytes_per_block(const rr_model* model);
RR_API int rr_kv_allocate(rr_model* model, int32_t num_blocks);

RR_API int rr_forward(rr_model* model, const rr_step* step);

/*
 * Sharing the device with another process (a trainer). Each call first waits for the model's stream.
 * rr_kv_release frees the KV cache: every block's content is lost, and block copies and rr_forward fail until
 * rr_kv_allocate allocates it again. rr_weights_release frees the weights arena, first copying it into page-locked host
 * memory the model owns when keep_host_copy is set; on weights already released, keep_host_copy 0 frees that copy.
 * rr_weights_restore allocates the arena again (same layout; rr_tensor's addresses change) and, with copy_back set,
 * copies the host copy into it (an error when there is none); it frees the host copy either way, so without copy_back
 * the weights are undefined until uploaded. While the weights are released, rr_tensor and rr_forward fail. Releasing
 * what is released, or restoring what is not, does nothing.
 */
RR_API int rr_kv_release(rr_model* model);
RR_API int rr_weights_release(rr_model* model, int32_t keep_host_copy);
RR_API int rr_weights_restore(rr_model* model, int32_t copy_back);

/*
 * How MoE experts multiply: 0 (default) one grouped GEMM per projection over a tile map built on the device, no host
 * synchronization; 1 one cuBLAS GEMM per active expert, the call transformers' eager experts make (bitwise the same
 * products), which needs one host synchronization per MoE layer to learn the experts' sizes. For comparisons with a
 * transformers reference.
 */
RR_API int rr_set_per_expert_gemms(rr_model* model, int32_t enabled);

/*
 * CUDA graphs of decode steps (on by default): a step whose tokens are all decode items (one per sequence, no forced
 * routing, profiling off) replays a graph captured on first use for its token bucket (1, 2, 4, 8, multiples of 8 to 64,
 * of 16 to 128, of 32 to 512, within the engine's limits), padded with tokens that write nothing. The results are the
 * bits an eager step gives. Turning graphs off frees the captured ones.
 */
RR_API int rr_set_cuda_graphs(rr_model* model, int32_t enabled);
/* Graphs captured so far, steps replayed from one, and steps launched kernel by kernel. */
RR_API int rr_cuda_graph_stats(const rr_model* model, int32_t* graphs, int64_t* replays, int64_t* eager_steps);

/* Block KV to and from page-locked host memory, enqueued on the model's stream; complete after rr_synchronize. Every
 * block id is validated before any copy is queued. */
RR_API int rr_copy_blocks_to_host(rr_model* model, const int32_t* blocks, void* const* host, int32_t count);
RR_API int rr_copy_blocks_to_device(rr_model* model, void* const* host, const int32_t* blocks, int32_t count);
/* The same for one block into or from any host memory, complete on return. */
RR_API int rr_read_block(rr_model* model, int32_t block, void* host);
RR_API int rr_write_block(rr_model* model, int32_t block, const void* host);
RR_API int rr_synchronize(rr_model* model);

/* Page-locked host memory (the engine's batch outputs and host tier); contents undefined until written. */
RR_API int rr_host_alloc(uint64_t bytes, void** host);
RR_API void rr_host_free(void* host);

/* Per-kernel timing with CUDA events; rr_profile returns each class's milliseconds since the last call and resets. */
RR_API int rr_set_profiling(rr_model* model, int32_t enabled);
RR_API int32_t rr_profile_class_count(void);
RR_API const char* rr_profile_class_name(int32_t index);
RR_API int rr_profile(rr_model* model, double* milliseconds, int32_t capacity);

/*
 * Poisons the CUDA context on purpose (a kernel writes through an invalid address), so fault handling can be checked
 * on a real device: the call returns RR_DEVICE_FAULT, as does every later call. Never called by the engine.
 */
RR_API int rr_inject_device_fault(rr_model* model);

/*
 * The device's ceilings, measured with CUDA events: a device-to-device copy of copy_bytes (GB/s counting bytes read
 * plus bytes written), a read-only pass over copy_bytes (a reduction, GB/s read), and an n x n x n bf16 cuBLAS GEMM
 * with fp32 accumulation (TFLOP/s, random inputs); each the median of 10 after 3 warm-ups.
 */
RR_API int rr_measure_ceilings(uint64_t copy_bytes, int32_t gemm_n, double* copy_gbps, double* read_gbps, double* gemm_tflops);

#ifdef __cplusplus
}
#endif

#endif
