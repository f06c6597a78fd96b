// CUDA graphs of decode steps: a step whose every token is a decode item replays a graph captured once per token
// bucket (and decode attention path) instead of launching its ~700 kernels one by one. A graph's kernels read their
// inputs at fixed device addresses (the bucket's layout below) and run for the bucket's token count; the step's tokens
// come first and the rest are padding tokens (slot -1), which write no KV and route to no expert. Every kernel's
// result per token is independent of the token count (batch invariance), so a replay gives the bits an eager step
// gives.
#pragma once

#include "common.cuh"

#include <algorithm>
#include <vector>

namespace rr {

struct DecodeGraph {
    int tokens = 0;
    bool split = false;  // decode attention split per block (the grid differs)
    int argmax_limit = 0;
    cudaGraphExec_t exec = nullptr;
};

struct DecodeGraphs {
    bool enabled = true;
    int max_tokens = 0;              // the largest bucket (0: none fits the engine's limits)
    uint8_t* host_inputs = nullptr;  // page-locked: the step's inputs in a bucket's layout
    std::vector<DecodeGraph> captured;
    int64_t replays = 0;
    int64_t eager_steps = 0;

    void destroy() {
        for (DecodeGraph& g : captured) cudaGraphExecDestroy(g.exec);
        captured.clear();
    }
};

// The bucket a decode step of `tokens` runs in: powers of two to 8, multiples of 8 to 64, of 16 to 128, of 32 beyond;
// 0 when it exceeds `limit`. A bucket wastes at most a quarter of its tokens past 8.
inline int decode_graph_tokens(int tokens, int limit) {
    if (tokens <= 0 || tokens > limit) return 0;
    int bucket;
    if (tokens <= 8) {
        bucket = 1;
        while (bucket < tokens) bucket *= 2;
    } else {
        const int step = tokens <= 64 ? 8 : tokens <= 128 ? 16 : 32;
        bucket = (tokens + step - 1) / step * step;
    }
    return std::min(bucket, limit);
}

// Byte offsets of the input sections in a bucket's layout (int32 arrays; the block tables, num_seqs rows of
// max_blocks_per_seq, last).
struct DecodeGraphLayout {
    int64_t ids, positions, slots, token_seq, logit_tokens, block_tables;
};

inline DecodeGraphLayout decode_graph_layout(int tokens) {
    const int64_t section = (int64_t)tokens * 4;
    return DecodeGraphLayout{0, section, 2 * section, 3 * section, 4 * section, (5 * section + 255) / 256 * 256};
}

// The depth, in 64-position blocks (a warp each), of a captured split decode attention grid: about eight warps per
// multiprocessor over the bucket's (token, KV head) items; warps stride over longer contexts.
inline int decode_graph_split_blocks(int tokens, int kv_heads, int multiprocessors, int max_blocks) {
    const int items = std::max(1, tokens * kv_heads);
    return std::max(1, std::min(max_blocks, 8 * multiprocessors / items));
}

}  // namespace rr
