// The one GEMM main loop: C[BM x BN] = A . B^T for one tile, A and B rows of K bf16 each, fp32 accumulation on tensor
// cores, STAGES shared-memory stages filled by cp.async. What differs between users (dense projections, grouped
// expert GEMMs) is where a tile's rows come from and what happens to the accumulators: a Problem gives both.
//
// Batch invariance: every output element is accumulated over K in order, 16 values per MMA, starting from zero, for
// every tile shape and stage count. So an element's bits depend only on its row of A and column of B, never on M, on
// the tile it lands in or on the configuration the dispatcher picked for the step's size.
//
// A Problem provides:
//   __device__ bool tile(int& rows)             false when this block has no work (rows: valid rows, <= BM)
//   __device__ const bf16* a_row(int r)         row r of the tile's A, or nullptr (zero-filled)
//   __device__ const bf16* b_row(int c)         column c's row of B, or nullptr (zero-filled)
//   __device__ void store(acc, warp_m0, warp_n0, rows)  the epilogue for one warp's accumulators
//   int k                                       K, a multiple of BK
//   const bf16* fallback                        any valid global address (the source operand of a zero-fill)
#pragma once

#include "mma.cuh"

#include <atomic>

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

template <typename Cfg, typename Problem>
__device__ __forceinline__ void gemm_tile(Problem& problem) {
    extern __shared__ __align__(128) unsigned char gemm_smem[];
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES, LDS = Cfg::LDS;
    constexpr int CHUNKS_PER_ROW = BK / 8;
    constexpr int A_CHUNKS = BM * CHUNKS_PER_ROW, B_CHUNKS = BN * CHUNKS_PER_ROW;
    bf16* stages = reinterpret_cast<bf16*>(gemm_smem);
    const bf16** a_rows = reinterpret_cast<const bf16**>(gemm_smem + (size_t)STAGES * Cfg::STAGE_ELEMENTS * sizeof(bf16));
    const bf16** b_rows = a_rows + BM;

    int rows = 0;
    if (!problem.tile(rows)) return;
    for (int r = threadIdx.x; r < BM; r += Cfg::THREADS) a_rows[r] = r < rows ? problem.a_row(r) : nullptr;
    for (int c = threadIdx.x; c < BN; c += Cfg::THREADS) b_rows[c] = problem.b_row(c);
    __syncthreads();

    const int k_tiles = problem.k / BK;
    auto load = [&](int stage, int kt) {
        bf16* as = stages + stage * Cfg::STAGE_ELEMENTS;
        bf16* bs = as + BM * LDS;
        const int k0 = kt * BK;
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
    Accumulators<Cfg> acc;
#pragma unroll
    for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc.v[i][j][e] = 0.f;

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
    }
    cp_async_wait<0>();
    problem.store(acc, warp_m0, warp_n0, rows);
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

template <typename Cfg, typename Problem>
__global__ void __launch_bounds__(Cfg::THREADS) gemm_kernel(Problem problem) {
    gemm_tile<Cfg>(problem);
}

// Raises a kernel's dynamic shared-memory limit once per process and launches it.
template <typename Cfg, typename Problem>
void launch_gemm(cudaStream_t s, dim3 grid, const Problem& problem, const char* name) {
    static std::atomic<bool> prepared{false};
    if (!prepared.load(std::memory_order_acquire)) {
        check_cuda(cudaFuncSetAttribute(gemm_kernel<Cfg, Problem>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Cfg::SMEM_BYTES),
                   "cudaFuncSetAttribute(gemm)");
        prepared.store(true, std::memory_order_release);
    }
    gemm_kernel<Cfg, Problem><<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, s>>>(problem);
    check_launch(name);
}

}  // namespace rr
