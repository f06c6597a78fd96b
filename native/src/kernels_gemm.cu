// Dense projections, y[M, N] = x[M, K] . w[N, K]^T (bf16 in and out, fp32 accumulation), on the GEMM main loop. The
// configuration is chosen here, in one place, by the shape: for decode batches narrow tiles whose K chunks run in
// blocks of their own (a split) so the weights stream from every multiprocessor at once; for prefills wide tiles that
// reuse them. Every configuration gives the same bits per element (gemm.cuh).
#include "dense.cuh"
#include "kernels.cuh"

namespace rr {

namespace {

// Decode batches (M <= 16): 16 columns a block, a block per K chunk; the widest weights (the output head) need no
// split. Mid-size batches (M <= 64, or more while 128 x 128 tiles would be too few) split too when their tiles are few.
// Prefills: 128 x 128 tiles.
template <int BK>
using Decode = GemmConfig<16, 16, 1, 2, BK, 2>;
using Decode8 = GemmConfig<16, 8, 1, 1, 128, 6>;
using Decode16 = GemmConfig<16, 16, 1, 2, 128, 6>;
using Narrow32 = GemmConfig<16, 32, 1, 2, 32, 6>;
using Decode64 = GemmConfig<16, 64, 1, 4, 64, 6>;
template <int BK>
using Mid = GemmConfig<64, 32, 4, 1, BK, 4>;
using Wide = GemmConfig<128, 128, 2, 4, 32, 4>;

constexpr int kDecodeTileN = 16, kMidTileM = 64, kMidTileN = 32;
constexpr int kNarrowestDecodeTileN = 8;  // the narrowest decode candidate (kernels_gemm_decode.cu) has the most tiles

// Wide tiles only when they are enough to fill the GPU (two blocks per multiprocessor and more); narrower weights and
// batches of a few hundred tokens take the mid-size tiles, which make four to eight times as many blocks.
constexpr int kWideMinTiles = 256;

bool wide_enough(int m, int n) { return (int64_t)ceil_div(n, Wide::BN) * ceil_div(m, Wide::BM) >= kWideMinTiles; }

}  // namespace

const char* linear_config(int m, int n, int k) {
    const bool k128 = gemm_chunk(k) % 128 == 0, chunked = gemm_chunk(k) < k;
    if (m <= 16) {
        if (n >= 16384 && gemm_chunk(k) % 64 == 0) return "16x64x64";
        if (!chunked) return k % 128 != 0 ? "16x32x32" : n >= 4096 ? "16x16x128" : "16x8x128";
        return k128 ? "16x16x128 split" : "16x16x32 split";
    }
    if (m <= 64 || !wide_enough(m, n)) return chunked ? "64x32x64 split" : gemm_chunk(k) % 64 == 0 ? "64x32x64" : "64x32x32";
    return "128x128x32";
}

size_t linear_scratch_floats(int n, int k) {
    const size_t chunks = (size_t)k / gemm_chunk(k);
    const size_t decode = (size_t)ceil_div(n, kDecodeTileN) * chunks * 16 * kDecodeTileN;
    const size_t mid = (size_t)ceil_div(n, kMidTileN) * chunks * kMidTileM * kMidTileN;
    return std::max(decode, mid);
}

int linear_scratch_counters(int n) { return ceil_div(n, kNarrowestDecodeTileN); }

void launch_linear(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, const GemmScratch& scratch) {
    if (m <= 0) return;
    if (k % 32 != 0 || n % 2 != 0) fail("linear: K must be a multiple of 32 and N even (K " + std::to_string(k) + ", N " + std::to_string(n) + ")");
    const int chunk = gemm_chunk(k);
    if (m <= 16 && scratch.tuning) {
        const int candidate = scratch.tuning->pick(m, n, k);
        if (candidate >= 0) return launch_linear_candidate(candidate, s, x, w, y, m, n, k, scratch);
    }
    if (m <= 16) {
        if (n >= 16384 && chunk % 64 == 0) return run_dense<Decode64>(s, x, w, y, m, n, k, false, scratch);
        if (chunk == k) {
            // One chunk: no split; narrow tiles and deep pipelines spread the weights.
            if (k % 128 != 0) return run_dense<Narrow32>(s, x, w, y, m, n, k, false, scratch);
            return n >= 4096 ? run_dense<Decode16>(s, x, w, y, m, n, k, false, scratch) : run_dense<Decode8>(s, x, w, y, m, n, k, false, scratch);
        }
        return chunk % 128 == 0 ? run_dense<Decode<128>>(s, x, w, y, m, n, k, true, scratch) : run_dense<Decode<32>>(s, x, w, y, m, n, k, true, scratch);
    }
    if (m <= 64 || !wide_enough(m, n)) return chunk % 64 == 0 ? run_dense<Mid<64>>(s, x, w, y, m, n, k, true, scratch) : run_dense<Mid<32>>(s, x, w, y, m, n, k, true, scratch);
    run_dense<Wide>(s, x, w, y, m, n, k, false, scratch);
}

}  // namespace rr
