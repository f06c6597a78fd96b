// Dense projections, y[M, N] = x[M, K] . w[N, K]^T (bf16 in and out, fp32 accumulation), on the GEMM main loop. The
// configuration is chosen here, in one place, by the shape: narrow tiles and deep pipelines stream the weights when
// M is a decode batch, wide tiles reuse them when M is a prefill. Every configuration gives the same bits per element.
#include "gemm.cuh"
#include "kernels.cuh"

namespace rr {

namespace {

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

template <typename Cfg>
void run_dense(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
    const dim3 grid(ceil_div(n, Cfg::BN), ceil_div(m, Cfg::BM));
    launch_gemm<Cfg>(s, grid, DenseProblem<Cfg>{x, w, y, m, n, k, w}, "linear");
}

// Decode batches (M <= 16): one row tile, columns split finely enough to spread the weights over every multiprocessor.
using Decode8 = GemmConfig<16, 8, 1, 1, 128, 6>;
using Decode16 = GemmConfig<16, 16, 1, 2, 128, 6>;
using Decode64 = GemmConfig<16, 64, 1, 4, 64, 6>;
using Narrow32 = GemmConfig<16, 32, 1, 2, 32, 6>;
// Mid-size batches (M <= 64) and prefill.
using Mid = GemmConfig<64, 32, 4, 1, 64, 4>;
using Mid32 = GemmConfig<64, 32, 4, 1, 32, 4>;
using Wide = GemmConfig<128, 128, 2, 4, 32, 4>;

}  // namespace

const char* linear_config(int m, int n, int k) {
    if (m <= 16) {
        if (k % 128 != 0) return "16x32x32";
        if (n >= 16384) return "16x64x64";
        if (n >= 4096) return "16x16x128";
        return "16x8x128";
    }
    if (m <= 64) return k % 64 == 0 ? "64x32x64" : "64x32x32";
    return "128x128x32";
}

void launch_linear(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
    if (m <= 0) return;
    if (k % 32 != 0 || n % 2 != 0) fail("linear: K must be a multiple of 32 and N even (K " + std::to_string(k) + ", N " + std::to_string(n) + ")");
    if (m <= 16) {
        if (k % 128 != 0) return run_dense<Narrow32>(s, x, w, y, m, n, k);
        if (n >= 16384) return run_dense<Decode64>(s, x, w, y, m, n, k);
        if (n >= 4096) return run_dense<Decode16>(s, x, w, y, m, n, k);
        return run_dense<Decode8>(s, x, w, y, m, n, k);
    }
    if (m <= 64) return k % 64 == 0 ? run_dense<Mid>(s, x, w, y, m, n, k) : run_dense<Mid32>(s, x, w, y, m, n, k);
    run_dense<Wide>(s, x, w, y, m, n, k);
}

}  // namespace rr
