// The one GEMM main loop: C[BM x BN] = A . B^T for one tile, A and B rows of K bf16 each, fp32 accumulation on tensor
// cores, STAGES shared-memory stages filled by cp.async. What differs between users (dense projections, grouped
// expert GEMMs) is where a tile's rows come from and what happens to the accumulators: a Problem gives both.
//
// The reduction order, the same for every configuration: K is cut into chunks of gemm_chunk(K) values; a chunk's
// partial is accumulated from zero, 16 values per MMA, in order; the partials are summed in fp32 in chunk order (the
// first taken as it is). So an element's bits depend only on its row of A and column of B, never on M, on the tile it
// lands in, or on whether the chunks of a tile ran in one block or in one block each (a split, for decode batches,
// whose last block to finish sums the partials in order).
//
// A Problem provides:
//   __device__ bool tile(int& rows)             false when this block has no work (rows: valid rows, <= BM)
//   __device__ const bf16* a_row(int r)         row r of the tile's A, or nullptr (zero-filled)
//   __device__ const bf16* b_row(int c)         column c's row of B, or nullptr (zero-filled)
//   __device__ void store(acc, warp_m0, warp_n0, rows)  the epilogue for one warp's accumulators
//   int k                                       K, a multiple of gemm_chunk(K), itself a multiple of BK
//   const bf16* fallback                        any valid global address (the source operand of a zero-fill)
#pragma once

#include "mma.cuh"

#include <algorithm>
#include <atomic>
#include <string>

namespace rr {

template <int BM_, int BN_, int WM_, int WN_, int BK_, int STAGES_>
struct GemmConfig {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, BK = BK_, STAGES = STAGES_;
    static constexpr int THREADS = WM * WN * 32;
    static constexpr int WTM = BM / WM, WTN = BN / WN;  // one warp's tile
    static constexpr int MI = WTM / 16, NI = WTN / 8;    // its MMA fragments
    static constexpr int LDS = BK + 8;                   // shared row stride in elements (16 bytes of padding)
    static constexpr int STAGE_ELEMENTS = (BM + BN) * LDS;
    static constexpr size_t SMEM_BYTES = (size_t)STAGES * STAGE_ELEMENTS * sizeof(bf16) + (size_t)(BM + BN) * sizeof(void*);
    static_assert(WTM % 16 == 0 && WTN % 8 == 0, "warp tiles are whole MMA fragments");
    static_assert(BK % 16 == 0, "BK is whole MMA k-steps");
    static_assert(STAGES >= 2, "at least double buffering");
};

template <typename Cfg>
struct Accumulators {
    float v[Cfg::MI][Cfg::NI][4];
};

// Values of K per chunk: a function of K alone. One chunk up to 2048 (so the common projections keep a single
// accumulator: partials cost wide tiles registers and occupancy), 2048-value chunks beyond (the attention output
// projection, whose decode-sized steps gain blocks from a split).
__host__ __device__ inline int gemm_chunk(int k) { return k <= 2048 ? k : k % 2048 == 0 ? 2048 : k % 1024 == 0 ? 1024 : k % 512 == 0 ? 512 : 256; }

struct LinearTuning;

// Where a split's blocks leave their chunk partials, and the per-tile counters (zero between launches: the block that
// finishes a tile sets its counter back to zero).
struct GemmScratch {
    float* partials = nullptr;
    size_t capacity = 0;  // floats
    int* counters = nullptr;
    int counter_capacity = 0;
    int split_below_tiles = 0;  // split only grids with fewer tiles than this (enough blocks without a split)
    const LinearTuning* tuning = nullptr;  // decode-sized projections: the configuration measured fastest per shape

    bool fits(size_t tiles, int chunks, int tile_elements) const {
        return partials && counters && tiles <= (size_t)counter_capacity && tiles * chunks * tile_elements <= capacity;
    }
};

template <typename Cfg>
__device__ __forceinline__ void zero(Accumulators<Cfg>& acc) {
#pragma unroll
    for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc.v[i][j][e] = 0.f;
}

// Calls f(i, j, e, row, col) for every accumulator of one warp, in tile coordinates.
template <typename Cfg, typename F>
__device__ __forceinline__ void for_each_element(int warp_m0, int warp_n0, F&& f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) f(i, j, e, warp_m0 + i * 16 + g + (e >> 1) * 8, warp_n0 + j * 8 + 2 * t + (e & 1));
}

// One block's tile. split == false: every chunk of K, summed in order. split == true: chunk blockIdx.z only; its partial
// goes to scratch, and the last of the tile's blocks to finish sums all partials in order and runs the epilogue.
template <typename Cfg, bool CHUNKED, typename Problem>
__device__ __forceinline__ void gemm_tile(Problem& problem, bool split, const GemmScratch& scratch) {
    extern __shared__ __align__(128) unsigned char gemm_smem[];
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES, LDS = Cfg::LDS;
    constexpr int CHUNKS_PER_ROW = BK / 8;
    constexpr int A_CHUNKS = BM * CHUNKS_PER_ROW, B_CHUNKS = BN * CHUNKS_PER_ROW;
    bf16* stages = reinterpret_cast<bf16*>(gemm_smem);
    const bf16** a_rows = reinterpret_cast<const bf16**>(gemm_smem + (size_t)STAGES * Cfg::STAGE_ELEMENTS * sizeof(bf16));
    const bf16** b_rows = a_rows + BM;
    __shared__ int last_block;

    int rows = 0;
    if (!problem.tile(rows)) return;
    for (int r = threadIdx.x; r < BM; r += Cfg::THREADS) a_rows[r] = r < rows ? problem.a_row(r) : nullptr;
    for (int c = threadIdx.x; c < BN; c += Cfg::THREADS) b_rows[c] = problem.b_row(c);
    __syncthreads();

    const int chunk_tiles = gemm_chunk(problem.k) / BK, chunks = problem.k / (chunk_tiles * BK);
    const int kt_begin = split ? blockIdx.z * chunk_tiles : 0;
    const int k_tiles = split ? chunk_tiles : problem.k / BK;
    auto load = [&](int stage, int kt) {
        bf16* as = stages + stage * Cfg::STAGE_ELEMENTS;
        bf16* bs = as + BM * LDS;
        const int k0 = (kt_begin + kt) * BK;
        for (int chunk = threadIdx.x; chunk < A_CHUNKS + B_CHUNKS; chunk += Cfg::THREADS) {
            const bool is_a = chunk < A_CHUNKS;
            const int index = is_a ? chunk : chunk - A_CHUNKS;
            const int r = index / CHUNKS_PER_ROW, q = index % CHUNKS_PER_ROW;
            const bf16* src = is_a ? a_rows[r] : b_rows[r];
            bf16* dst = (is_a ? as : bs) + r * LDS + q * 8;
            cp_async16(dst, src ? src + k0 + q * 8 : problem.fallback, src != nullptr);
        }
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < k_tiles) load(s, s);
        cp_async_commit();
    }

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warp_m0 = (warp / Cfg::WN) * Cfg::WTM, warp_n0 = (warp % Cfg::WN) * Cfg::WTN;
    Accumulators<Cfg> acc, total;
    zero(acc);
    if (CHUNKED) zero(total);

    for (int kt = 0; kt < k_tiles; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        if (kt + STAGES - 1 < k_tiles) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        cp_async_commit();
        const bf16* as = stages + (kt % STAGES) * Cfg::STAGE_ELEMENTS;
        const bf16* bs = as + BM * LDS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[Cfg::MI][4];
#pragma unroll
            for (int i = 0; i < Cfg::MI; ++i) {
                ldmatrix_x4(a[i], as + (warp_m0 + i * 16 + a_frag_row(lane)) * LDS + kk + a_frag_col(lane));
            }
#pragma unroll
            for (int j = 0; j + 1 < Cfg::NI; j += 2) {
                unsigned b[4];
                ldmatrix_x4(b, bs + (warp_n0 + j * 8 + b_frag_row(lane)) * LDS + kk + b_frag_col(lane));
#pragma unroll
                for (int i = 0; i < Cfg::MI; ++i) {
                    mma_bf16(acc.v[i][j], a[i], b[0], b[1]);
                    mma_bf16(acc.v[i][j + 1], a[i], b[2], b[3]);
                }
            }
            if constexpr (Cfg::NI % 2 == 1) {
                constexpr int j = Cfg::NI - 1;
                unsigned b[2];
                ldmatrix_x2(b, bs + (warp_n0 + j * 8 + (lane & 7)) * LDS + kk + b_frag_col(lane));
#pragma unroll
                for (int i = 0; i < Cfg::MI; ++i) mma_bf16(acc.v[i][j], a[i], b[0], b[1]);
            }
        }
        if (CHUNKED && (kt + 1) % chunk_tiles == 0) {
            // A chunk is complete: the first becomes the total, later ones are added in order.
            const bool first = kt + 1 == chunk_tiles;
#pragma unroll
            for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
                for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        total.v[i][j][e] = first ? acc.v[i][j][e] : __fadd_rn(total.v[i][j][e], acc.v[i][j][e]);
                        acc.v[i][j][e] = 0.f;
                    }
        }
    }
    cp_async_wait<0>();
    if (!CHUNKED) {
        problem.store(acc, warp_m0, warp_n0, rows);
        return;
    }
    if (!split) {
        problem.store(total, warp_m0, warp_n0, rows);
        return;
    }

    const size_t tile = (size_t)blockIdx.y * gridDim.x + blockIdx.x;
    float* partials = scratch.partials + tile * chunks * (BM * BN);
    for_each_element<Cfg>(warp_m0, warp_n0, [&](int i, int j, int e, int r, int c) {
        partials[(size_t)blockIdx.z * BM * BN + r * BN + c] = total.v[i][j][e];
    });
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(scratch.counters + tile, 1) == chunks - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    for_each_element<Cfg>(warp_m0, warp_n0, [&](int i, int j, int e, int r, int c) {
        float sum = __ldcg(partials + r * BN + c);
        for (int z = 1; z < chunks; ++z) sum = __fadd_rn(sum, __ldcg(partials + (size_t)z * BM * BN + r * BN + c));
        total.v[i][j][e] = sum;
    });
    if (threadIdx.x == 0) scratch.counters[tile] = 0;
    problem.store(total, warp_m0, warp_n0, rows);
}

// Calls f(row, col, v0, v1) for every pair of adjacent accumulators (columns col and col + 1) of one warp, in tile
// coordinates; col is even.
template <typename Cfg, typename F>
__device__ __forceinline__ void for_each_pair(const Accumulators<Cfg>& acc, int warp_m0, int warp_n0, F&& f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) f(warp_m0 + i * 16 + g + h * 8, warp_n0 + j * 8 + 2 * t, acc.v[i][j][2 * h], acc.v[i][j][2 * h + 1]);
}

__device__ __forceinline__ void store_bf16_pair(bf16* p, float v0, float v1) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(v0, v1);
}

template <typename Cfg, bool CHUNKED, typename Problem>
__global__ void __launch_bounds__(Cfg::THREADS) gemm_kernel(Problem problem, bool split, GemmScratch scratch) {
    gemm_tile<Cfg, CHUNKED>(problem, split, scratch);
}

template <typename Cfg, bool CHUNKED, typename Problem>
void launch_gemm_kernel(cudaStream_t s, dim3 grid, bool split, const GemmScratch& scratch, const Problem& problem, const char* name) {
    static std::atomic<bool> prepared{false};
    if (!prepared.load(std::memory_order_acquire)) {
        check_cuda(cudaFuncSetAttribute(gemm_kernel<Cfg, CHUNKED, Problem>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Cfg::SMEM_BYTES),
                   "cudaFuncSetAttribute(gemm)");
        prepared.store(true, std::memory_order_release);
    }
    gemm_kernel<Cfg, CHUNKED, Problem><<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, s>>>(problem, split, scratch);
    check_launch(name);
}

// Launches a grid of (N tiles, M tiles) blocks; with a split (scratch that fits), one block per K chunk as well. A K of
// one chunk runs the kernel without partials. Raises each kernel's dynamic shared-memory limit once per process.
template <typename Cfg, typename Problem>
void launch_gemm(cudaStream_t s, dim3 grid, int k, bool split, const GemmScratch& scratch, const Problem& problem, const char* name) {
    const int chunks = k / gemm_chunk(k);
    if (k % gemm_chunk(k) != 0 || gemm_chunk(k) % Cfg::BK != 0) fail(std::string(name) + ": K " + std::to_string(k) + " does not fit the tile's K step");
    split = split && chunks > 1 && scratch.fits((size_t)grid.x * grid.y, chunks, Cfg::BM * Cfg::BN);
    if (split) grid.z = chunks;
    if (chunks > 1) {
        launch_gemm_kernel<Cfg, true>(s, grid, split, scratch, problem, name);
    } else {
        launch_gemm_kernel<Cfg, false>(s, grid, false, scratch, problem, name);
    }
}

}  // namespace rr
