// A dense projection on the GEMM main loop: y[M, N] = x[M, K] . w[N, K]^T, rows of x and w straight from memory.
#pragma once

#include "gemm.cuh"

namespace rr {

template <typename Cfg>
struct DenseProblem {
    const bf16* x;
    const bf16* w;
    bf16* y;
    int m, n, k;
    const bf16* fallback;
    int m0 = 0, n0 = 0;

    __device__ bool tile(int& rows) {
        m0 = blockIdx.y * Cfg::BM;
        n0 = blockIdx.x * Cfg::BN;
        rows = min(Cfg::BM, m - m0);
        return rows > 0;
    }
    __device__ const bf16* a_row(int r) const { return x + (size_t)(m0 + r) * k; }
    __device__ const bf16* b_row(int c) const { return n0 + c < n ? w + (size_t)(n0 + c) * k : nullptr; }
    __device__ void store(const Accumulators<Cfg>& acc, int warp_m0, int warp_n0, int rows) const {
        for_each_pair<Cfg>(acc, warp_m0, warp_n0, [&](int r, int c, float v0, float v1) {
            if (r < rows && n0 + c < n) store_bf16_pair(y + (size_t)(m0 + r) * n + n0 + c, v0, v1);
        });
    }
};

// One launch of configuration Cfg; split (one block per K chunk) only where the grid has fewer tiles than
// scratch.split_below_tiles and the partials fit.
template <typename Cfg>
void run_dense(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, bool split, const GemmScratch& scratch) {
    const dim3 grid(ceil_div(n, Cfg::BN), ceil_div(m, Cfg::BM));
    split = split && (int)(grid.x * grid.y) < scratch.split_below_tiles;
    launch_gemm<Cfg>(s, grid, k, split, scratch, DenseProblem<Cfg>{x, w, y, m, n, k, w}, "linear");
}

}  // namespace rr
