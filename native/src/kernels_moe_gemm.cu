// The experts' two grouped GEMMs on the GEMM main loop. A block takes one tile of the plan (an expert and up to BM of
// its rows, read from device memory, so the grid is fixed by the step's size and the host never waits); blocks past
// the step's tile count exit at once.
//   gate/up: act[row] = bf16(bf16(silu(bf16(x . gate))) * bf16(x . up)), x gathered through sorted_token; a tile's
//            columns alternate eight gate rows and the eight matching up rows, so one thread holds both halves of
//            each activation and the SwiGLU happens in registers.
//   down:    out[row] = bf16(act[row] . down^T).
#include "gemm.cuh"
#include "kernels.cuh"

namespace rr {

namespace {

struct ExpertTile {
    int expert = 0, row0 = 0, row_end = 0;

    __device__ bool load(const MoePlan& plan, int& rows) {
        const int t = blockIdx.y;
        if (t >= *plan.tile_count) return false;
        expert = plan.tile_expert[t];
        row0 = plan.tile_row0[t];
        row_end = plan.tile_row_end[t];
        rows = row_end - row0;
        return rows > 0;
    }
};

template <typename Cfg>
struct GateUpProblem {
    static_assert(Cfg::NI % 2 == 0, "a warp holds gate and up fragments in pairs");
    const bf16* x;
    const bf16* w;
    bf16* act;
    MoePlan plan;
    int k;  // hidden
    int inter;
    const bf16* fallback;
    ExpertTile t;
    int n0 = 0;

    __device__ bool tile(int& rows) {
        n0 = blockIdx.x * Cfg::BN;
        return t.load(plan, rows);
    }
    __device__ int activation(int c) const { return n0 / 2 + (c >> 4) * 8 + (c & 7); }
    __device__ const bf16* a_row(int r) const { return x + (size_t)plan.sorted_token[t.row0 + r] * k; }
    __device__ const bf16* b_row(int c) const {
        const int a = activation(c);
        if (a >= inter) return nullptr;
        const int row = ((c >> 3) & 1) == 0 ? a : inter + a;
        return w + ((size_t)t.expert * 2 * inter + row) * k;
    }
    __device__ void store(const Accumulators<Cfg>& acc, int warp_m0, int warp_n0, int rows) const {
        const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
#pragma unroll
        for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
            for (int j = 0; j < Cfg::NI; j += 2)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = warp_m0 + i * 16 + g + h * 8;
                    const int a = activation(warp_n0 + j * 8 + 2 * tq);
                    if (r >= rows || a >= inter) continue;
                    float out[2];
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float gate = bf16r(acc.v[i][j][2 * h + e]);
                        const float up = bf16r(acc.v[i][j + 1][2 * h + e]);
                        out[e] = bf16r(gate / (1.0f + expf(-gate))) * up;
                    }
                    store_bf16_pair(act + (size_t)(t.row0 + r) * inter + a, out[0], out[1]);
                }
    }
};

template <typename Cfg>
struct DownProblem {
    const bf16* act;
    const bf16* w;
    bf16* out;
    MoePlan plan;
    int k;  // inter
    int hidden;
    const bf16* fallback;
    ExpertTile t;
    int n0 = 0;

    __device__ bool tile(int& rows) {
        n0 = blockIdx.x * Cfg::BN;
        return t.load(plan, rows);
    }
    __device__ const bf16* a_row(int r) const { return act + (size_t)(t.row0 + r) * k; }
    __device__ const bf16* b_row(int c) const { return n0 + c < hidden ? w + ((size_t)t.expert * hidden + n0 + c) * k : nullptr; }
    __device__ void store(const Accumulators<Cfg>& acc, int warp_m0, int warp_n0, int rows) const {
        for_each_pair<Cfg>(acc, warp_m0, warp_n0, [&](int r, int c, float v0, float v1) {
            if (r < rows && n0 + c < hidden) store_bf16_pair(out + (size_t)(t.row0 + r) * hidden + n0 + c, v0, v1);
        });
    }
};

// Per tile height of the plan: (BM, BN, warps, BK, stages). Small steps (16-row tiles) split each tile's K chunks over
// blocks of their own when the scratch holds their partials, so the few experts' weights stream from every
// multiprocessor; otherwise deeper pipelines.
template <int BK>
using Split16 = GemmConfig<16, 32, 1, 2, BK, 2>;
template <int BK>
using Tile16 = GemmConfig<16, 32, 1, 2, BK, 6>;
template <int BK>
using Tile64 = GemmConfig<64, 64, 2, 2, BK, 4>;
template <int BK>
using Tile128 = GemmConfig<128, 128, 2, 4, BK, 4>;

constexpr int kSplitTileN = 32;

enum class Projection { GateUp, Down };

// One projection's operands: its input rows, the experts' weights, its output rows.
struct ExpertGemm {
    const bf16* in;
    const bf16* w;
    bf16* out;
    MoePlan plan;
    int max_tiles, hidden, inter;
};

template <template <int> class Tile, int BK, Projection P>
void run(cudaStream_t s, const ExpertGemm& g, bool split, const GemmScratch& scratch) {
    using Cfg = Tile<BK>;
    if constexpr (P == Projection::GateUp) {
        const dim3 grid(ceil_div(2 * g.inter, Cfg::BN), g.max_tiles);
        launch_gemm<Cfg>(s, grid, g.hidden, split, scratch, GateUpProblem<Cfg>{g.in, g.w, g.out, g.plan, g.hidden, g.inter, g.w, {}}, "moe_gate_up");
    } else {
        const dim3 grid(ceil_div(g.hidden, Cfg::BN), g.max_tiles);
        launch_gemm<Cfg>(s, grid, g.inter, split, scratch, DownProblem<Cfg>{g.in, g.w, g.out, g.plan, g.inter, g.hidden, g.w, {}}, "moe_down");
    }
}

// K step: `Wide` (128 for decode splits, 64, or 32) when the projection's K chunk allows it, else 32.
template <template <int> class Tile, int Wide, Projection P>
void run_for_k(cudaStream_t s, const ExpertGemm& g, bool split, const GemmScratch& scratch) {
    const int k = P == Projection::GateUp ? g.hidden : g.inter;
    if (gemm_chunk(k) % Wide == 0) return run<Tile, Wide, P>(s, g, split, scratch);
    run<Tile, 32, P>(s, g, split, scratch);
}

bool splits(int max_tiles, int hidden, int inter, const GemmScratch& scratch) {
    if (hidden == gemm_chunk(hidden) && inter == gemm_chunk(inter)) return false;
    const size_t gate_up_tiles = (size_t)ceil_div(2 * inter, kSplitTileN) * max_tiles, down_tiles = (size_t)ceil_div(hidden, kSplitTileN) * max_tiles;
    return scratch.fits(gate_up_tiles, hidden / gemm_chunk(hidden), 16 * kSplitTileN) && scratch.fits(down_tiles, inter / gemm_chunk(inter), 16 * kSplitTileN);
}

template <Projection P>
void run_for_tile(cudaStream_t s, const ExpertGemm& g, int tile_m, const GemmScratch& scratch) {
    switch (tile_m) {
        case 16:
            if (splits(g.max_tiles, g.hidden, g.inter, scratch)) return run_for_k<Split16, 128, P>(s, g, true, scratch);
            return run_for_k<Tile16, 64, P>(s, g, false, scratch);
        case 64: return run_for_k<Tile64, 64, P>(s, g, false, scratch);
        case 128: return run_for_k<Tile128, 32, P>(s, g, false, scratch);
        default: fail("the experts' GEMMs have no kernel for tiles of " + std::to_string(tile_m) + " rows");
    }
}

}  // namespace

size_t moe_scratch_floats(int experts, int hidden_size, int intermediate, int split_assignments) {
    const size_t tiles = (size_t)moe_max_tiles(split_assignments, 1, experts, 16);
    const size_t gate_up = (size_t)ceil_div(2 * intermediate, kSplitTileN) * tiles * (hidden_size / gemm_chunk(hidden_size));
    const size_t down = (size_t)ceil_div(hidden_size, kSplitTileN) * tiles * (intermediate / gemm_chunk(intermediate));
    return std::max(gate_up, down) * 16 * kSplitTileN;
}

int moe_scratch_counters(int experts, int hidden_size, int intermediate, int split_assignments) {
    return moe_max_tiles(split_assignments, 1, experts, 16) * std::max(ceil_div(2 * intermediate, kSplitTileN), ceil_div(hidden_size, kSplitTileN));
}


void launch_moe_gate_up(cudaStream_t s, const bf16* x, const bf16* gate_up, bf16* act, const MoePlan& plan,
                        int max_tiles, int tile_m, int hidden_size, int intermediate, const GemmScratch& scratch) {
    run_for_tile<Projection::GateUp>(s, ExpertGemm{x, gate_up, act, plan, max_tiles, hidden_size, intermediate}, tile_m, scratch);
}

void launch_moe_down(cudaStream_t s, const bf16* act, const bf16* down, bf16* out, const MoePlan& plan, int max_tiles,
                     int tile_m, int hidden_size, int intermediate, const GemmScratch& scratch) {
    run_for_tile<Projection::Down>(s, ExpertGemm{act, down, out, plan, max_tiles, hidden_size, intermediate}, tile_m, scratch);
}

}  // namespace rr
