// Paged causal attention on tensor cores, for prefill chunks and decode tokens alike: a token at position p attends to
// positions 0..p of its sequence, read from the KV cache through its block table (a chunk's own K and V are written
// before). See attention.cuh for the arithmetic every path shares.
//
// Paths (chosen per step on the host; all give the same bits for a token):
//   prefill  a block per (tile of up to 64 / G consecutive tokens of one sequence, KV head): 4 warps of 16 query rows
//            share each K/V block loaded into shared memory, and every warp merges its blocks in registers.
//   decode, split   a warp per (token, KV head, 64-position block) writes that block's partial; a merge kernel folds
//            the partials in order. Many blocks in flight when there are few decode tokens.
//   decode, whole   a warp per (token, KV head) walks all its blocks and merges in registers. For large batches.
#include "attention.cuh"
#include "kernels.cuh"

#include <algorithm>
#include <atomic>

namespace rr {

namespace {

constexpr int kPrefillWarps = 4;
constexpr int kDecodeWarps = 2;

template <int HD>
struct KvSource {
    const bf16* cache;
    const int32_t* table;
    size_t plane;  // elements of one layer's K (or V) in a block
    int layer_offset;
    int num_layers;
    int block_size;
    int kv_heads;
    int kvh;

    __device__ const bf16* key(int position) const {
        const int page = table[position / block_size], offset = position % block_size;
        return cache + ((size_t)page * num_layers + layer_offset) * 2 * plane + ((size_t)offset * kv_heads + kvh) * HD;
    }
};

// Loads positions [start, start + 64) of K and V into shared memory (rows of LD elements); positions >= length are
// zero-filled. `lane` and `lanes` split the 16-byte chunks among the calling threads.
template <int HD>
__device__ __forceinline__ void load_kv_block(const KvSource<HD>& kv, int start, int length, bf16* ks, bf16* vs, int lane, int lanes) {
    constexpr int CHUNKS = HD / 8;
    constexpr int LD = AttentionTile<HD>::LD;
    for (int c = lane; c < kAttentionBlock * CHUNKS; c += lanes) {
        const int row = c / CHUNKS, q = c % CHUNKS, position = start + row;
        const bool valid = position < length;
        const bf16* k = valid ? kv.key(position) + q * 8 : kv.cache;
        cp_async16(ks + row * LD + q * 8, k, valid);
        cp_async16(vs + row * LD + q * 8, valid ? k + kv.plane : kv.cache, valid);
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Prefill: a tile of consecutive tokens of one sequence; row r of warp w is token first + (16 w + r) / G, head
// kvh * G + (16 w + r) % G.

template <int HD>
__global__ void __launch_bounds__(kPrefillWarps * 32) attention_prefill_kernel(AttentionArgs a, KvLayout layout, AttentionWork work) {
    using Tile = AttentionTile<HD>;
    constexpr int LD = Tile::LD;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16* qs = reinterpret_cast<bf16*>(smem_raw);                 // [64][LD]
    bf16* kv_stages = qs + kPrefillWarps * 16 * LD;                // [2][K 64][LD] + [V 64][LD]
    const int tile = blockIdx.x;
    if (tile >= *work.prefill_count) return;
    const int first = work.prefill_tiles[2 * tile], count = work.prefill_tiles[2 * tile + 1];
    const int kvh = blockIdx.y, G = a.group, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int last_position = a.positions[first + count - 1];
    const int length = last_position + 1;

    // Q rows of the whole tile.
    for (int c = threadIdx.x; c < kPrefillWarps * 16 * (HD / 8); c += blockDim.x) {
        const int row = c / (HD / 8), q = c % (HD / 8), token = row / G;
        const bool valid = token < count;
        const bf16* src = valid ? a.q + (size_t)(first + token) * a.q_stride + (size_t)(kvh * G + row % G) * HD + q * 8 : a.q;
        cp_async16(qs + row * LD + q * 8, src, valid);
    }
    const KvSource<HD> kv{reinterpret_cast<const bf16*>(layout.kv), a.block_tables + (size_t)a.token_seq[first] * a.max_blocks_per_seq,
                          (size_t)layout.block_size * layout.kv_heads * HD, a.layer, layout.num_layers, layout.block_size, layout.kv_heads, kvh};
    auto stage_k = [&](int s) { return kv_stages + s * 2 * kAttentionBlock * LD; };
    load_kv_block<HD>(kv, 0, length, stage_k(0), stage_k(0) + kAttentionBlock * LD, threadIdx.x, blockDim.x);
    cp_async_commit();

    const int g = lane >> 2;
    int row_limit[2];
    int warp_limit = -1;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int token = (warp * 16 + g + 8 * h) / G;
        row_limit[h] = token < count ? a.positions[first + token] : -1;
    }
    for (int r = 0; r < 16; ++r) {
        const int token = (warp * 16 + r) / G;
        if (token < count) warp_limit = max(warp_limit, a.positions[first + token]);
    }

    AttentionState<HD> state;
    state.reset();
    const int blocks = (length + kAttentionBlock - 1) / kAttentionBlock;
    for (int b = 0; b < blocks; ++b) {
        if (b + 1 < blocks) {
            bf16* next = stage_k((b + 1) & 1);
            load_kv_block<HD>(kv, (b + 1) * kAttentionBlock, length, next, next + kAttentionBlock * LD, threadIdx.x, blockDim.x);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (b * kAttentionBlock <= warp_limit) {
            const bf16* ks = stage_k(b & 1);
            AttentionPartial<HD> part;
            block_partial<HD>(part, qs + warp * 16 * LD, ks, ks + kAttentionBlock * LD, b * kAttentionBlock, row_limit, a.scale_log2, lane);
            state.merge(part);
        }
        __syncthreads();
    }
    cp_async_wait<0>();
    state.store(a.out, [&](int row) -> int64_t {
        const int r = warp * 16 + row, token = r / G;
        return token < count ? (int64_t)(first + token) * a.heads * HD + (int64_t)(kvh * G + r % G) * HD : -1;
    }, lane);
}

// ------------------------------------------------------------------------------------------------------------------
// Decode: one token per warp item; rows 0..G-1 are its G query heads, the rest padding.

template <int HD>
__global__ void __launch_bounds__(kDecodeWarps * 32) attention_decode_kernel(AttentionArgs a, KvLayout layout, AttentionWork work, int split) {
    using Tile = AttentionTile<HD>;
    constexpr int LD = Tile::LD;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, G = a.group;
    bf16* qs = reinterpret_cast<bf16*>(smem_raw) + warp * (16 + 2 * kAttentionBlock) * LD;
    bf16* ks = qs + 16 * LD;
    bf16* vs = ks + kAttentionBlock * LD;

    // split: item (token, kvh, block), a warp taking every (gridDim.z * warps)-th block from its own (so a grid of any
    // depth covers any context); whole: item (token, kvh), a warp taking every block in order.
    int item_token, kvh, block_begin, block_stride;
    if (split) {
        item_token = blockIdx.x;
        kvh = blockIdx.y;
        block_begin = blockIdx.z * kDecodeWarps + warp;
        block_stride = gridDim.z * kDecodeWarps;
    } else {
        const int item = blockIdx.x * kDecodeWarps + warp;
        item_token = item / layout.kv_heads;
        kvh = item % layout.kv_heads;
        block_begin = 0;
        block_stride = 1;
    }
    if (item_token >= *work.decode_count) return;
    const int t = work.decode_tokens[item_token];
    const int length = a.positions[t] + 1;
    const int blocks = (length + kAttentionBlock - 1) / kAttentionBlock;
    if (block_begin >= blocks) return;

    for (int c = lane; c < 16 * (HD / 8); c += 32) {
        const int row = c / (HD / 8), q = c % (HD / 8);
        const bool valid = row < G;
        cp_async16(qs + row * LD + q * 8, valid ? a.q + (size_t)t * a.q_stride + (size_t)(kvh * G + row) * HD + q * 8 : a.q, valid);
    }
    const KvSource<HD> kv{reinterpret_cast<const bf16*>(layout.kv), a.block_tables + (size_t)a.token_seq[t] * a.max_blocks_per_seq,
                          (size_t)layout.block_size * layout.kv_heads * HD, a.layer, layout.num_layers, layout.block_size, layout.kv_heads, kvh};
    const int g = lane >> 2;
    int row_limit[2] = {g < G ? length - 1 : -1, g + 8 < G ? length - 1 : -1};

    AttentionState<HD> state;
    state.reset();
    for (int b = block_begin; b < blocks; b += block_stride) {
        load_kv_block<HD>(kv, b * kAttentionBlock, length, ks, vs, lane, 32);
        cp_async_commit();
        cp_async_wait<0>();
        __syncwarp();
        AttentionPartial<HD> part;
        block_partial<HD>(part, qs, ks, vs, b * kAttentionBlock, row_limit, a.scale_log2, lane);
        if (split) {
            part.store(work.partial_m, work.partial_l, work.partial_acc, (size_t)item_token * a.heads + kvh * G, work.max_blocks, b, G, lane);
        } else {
            state.merge(part);
        }
        __syncwarp();
    }
    if (!split) {
        state.store(a.out, [&](int row) -> int64_t {
            return row < G ? (int64_t)t * a.heads * HD + (int64_t)(kvh * G + row) * HD : -1;
        }, lane);
    }
}

// Folds a decode token's block partials in order: a block per (token, head), a thread per dimension.
template <int HD>
__global__ void attention_merge_kernel(AttentionArgs a, AttentionWork work) {
    const int item_token = blockIdx.x, head = blockIdx.y, d = threadIdx.x;
    if (item_token >= *work.decode_count) return;
    const int t = work.decode_tokens[item_token];
    const int blocks = (a.positions[t] + kAttentionBlock) / kAttentionBlock;
    const size_t row = (size_t)item_token * a.heads + head;
    const float* m = work.partial_m + row * work.max_blocks;
    const float* l = work.partial_l + row * work.max_blocks;
    const float* acc = work.partial_acc + row * work.max_blocks * HD;
    float state_m = m[0], state_l = l[0], state_acc = acc[d];
    for (int b = 1; b < blocks; ++b) merge_one(state_m, state_l, state_acc, m[b], l[b], acc[(size_t)b * HD + d]);
    a.out[(size_t)t * a.heads * HD + (size_t)head * HD + d] = __float2bfloat16_rn(__fdiv_rn(state_acc, state_l));
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), "cudaFuncSetAttribute(attention)");
}

template <int HD>
size_t prefill_smem() { return (size_t)(kPrefillWarps * 16 + 4 * kAttentionBlock) * AttentionTile<HD>::LD * sizeof(bf16); }

template <int HD>
size_t decode_smem() { return (size_t)kDecodeWarps * (16 + 2 * kAttentionBlock) * AttentionTile<HD>::LD * sizeof(bf16); }

template <int HD>
void prepare_head_dim() {
    allow_smem(attention_prefill_kernel<HD>, prefill_smem<HD>());
    allow_smem(attention_decode_kernel<HD>, decode_smem<HD>());
}

template <int HD>
void launch_for_head_dim(cudaStream_t s, const AttentionArgs& a, const KvLayout& kv, const AttentionWork& work, const AttentionPlan& plan) {
    if (plan.prefill_tiles > 0) {
        attention_prefill_kernel<HD><<<dim3(plan.prefill_tiles, kv.kv_heads), kPrefillWarps * 32, prefill_smem<HD>(), s>>>(a, kv, work);
        check_launch("attention_prefill");
    }
    if (plan.decode_tokens > 0 && plan.split) {
        const dim3 grid(plan.decode_tokens, kv.kv_heads, ceil_div(plan.max_decode_blocks, kDecodeWarps));
        attention_decode_kernel<HD><<<grid, kDecodeWarps * 32, decode_smem<HD>(), s>>>(a, kv, work, 1);
        check_launch("attention_decode_split");
        attention_merge_kernel<HD><<<dim3(plan.decode_tokens, a.heads), HD, 0, s>>>(a, work);
        check_launch("attention_merge");
    } else if (plan.decode_tokens > 0) {
        const dim3 grid(ceil_div(plan.decode_tokens * kv.kv_heads, kDecodeWarps));
        attention_decode_kernel<HD><<<grid, kDecodeWarps * 32, decode_smem<HD>(), s>>>(a, kv, work, 0);
        check_launch("attention_decode");
    }
}

}  // namespace

bool attention_supported(int group, int head_dim) {
    return (group == 1 || group == 2 || group == 4 || group == 8 || group == 16) &&
           (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

int attention_tile_tokens(int group) { return kPrefillWarps * 16 / group; }

void attention_prepare(int head_dim) {
    switch (head_dim) {
        case 16: return prepare_head_dim<16>();
        case 32: return prepare_head_dim<32>();
        case 64: return prepare_head_dim<64>();
        case 128: return prepare_head_dim<128>();
        default: fail("no attention kernel for head_dim " + std::to_string(head_dim));
    }
}

AttentionPlan plan_attention(const int32_t* token_seq, const int32_t* positions, const int32_t* slots, int tokens, int group,
                             int kv_heads, int split_below_items, int max_split_tokens, int max_split_blocks, int32_t* decode_tokens,
                             int32_t* prefill_tiles) {
    AttentionPlan plan;
    const int per_tile = attention_tile_tokens(group);
    int max_blocks = 0;
    for (int start = 0; start < tokens;) {
        if (slots[start] < 0) {
            ++start;
            continue;
        }
        int end = start + 1;
        while (end < tokens && token_seq[end] == token_seq[start] && slots[end] >= 0) ++end;
        if (end - start == 1) {
            decode_tokens[plan.decode_tokens++] = start;
            max_blocks = std::max(max_blocks, ceil_div(positions[start] + 1, kAttentionBlock));
        } else {
            for (int i = start; i < end; i += per_tile) {
                prefill_tiles[2 * plan.prefill_tiles] = i;
                prefill_tiles[2 * plan.prefill_tiles + 1] = std::min(per_tile, end - i);
                ++plan.prefill_tiles;
            }
        }
        start = end;
    }
    plan.max_decode_blocks = max_blocks;
    plan.split = plan.decode_tokens * kv_heads < split_below_items && plan.decode_tokens <= max_split_tokens && max_blocks <= max_split_blocks;
    return plan;
}

void launch_attention(cudaStream_t s, const AttentionArgs& a, const KvLayout& kv, const AttentionWork& work, const AttentionPlan& plan) {
    switch (kv.head_dim) {
        case 16: return launch_for_head_dim<16>(s, a, kv, work, plan);
        case 32: return launch_for_head_dim<32>(s, a, kv, work, plan);
        case 64: return launch_for_head_dim<64>(s, a, kv, work, plan);
        case 128: return launch_for_head_dim<128>(s, a, kv, work, plan);
        default: fail("no attention kernel for head_dim " + std::to_string(kv.head_dim));
    }
}

}  // namespace rr
