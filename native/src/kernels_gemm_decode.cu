// Decode-sized projections (M <= 16): tile configurations that differ in width, K step, pipeline depth and split, all
// on the one GEMM main loop and so all giving the same bits (gemm.cuh). At one to sixteen rows a projection is a
// stream of its weights; how fast a configuration streams them depends on the weight's shape and the GPU, so a model
// times the candidates once at creation and keeps the fastest per shape (LinearTuning).
#include "dense.cuh"
#include "kernels.cuh"

#include <algorithm>
#include <atomic>
#include <string>

namespace rr {

namespace {

using RunDense = void (*)(cudaStream_t, const bf16*, const bf16*, bf16*, int, int, int, bool, const GemmScratch&);

struct DecodeConfig {
    const char* name;
    int bk;
    RunDense run;
};

template <int BN, int WN, int BK, int STAGES>
void run_decode(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, bool split, const GemmScratch& scratch) {
    run_dense<GemmConfig<16, BN, 1, WN, BK, STAGES>>(s, x, w, y, m, n, k, split, scratch);
}

#define RR_DECODE_CONFIG(BN, WN, BK, STAGES) {"16x" #BN "x" #BK " " #WN "w " #STAGES "s", BK, &run_decode<BN, WN, BK, STAGES>}

// Widths 8 to 32 columns a block; K steps 64 to 256; 2 to 12 stages in flight. The widest tiles (64 columns, for the
// output head) stay launch_linear's own.
const DecodeConfig kConfigs[] = {
    RR_DECODE_CONFIG(8, 1, 128, 6),   RR_DECODE_CONFIG(8, 1, 128, 12),  RR_DECODE_CONFIG(8, 1, 256, 8),
    RR_DECODE_CONFIG(16, 2, 128, 2),  RR_DECODE_CONFIG(16, 2, 128, 6),  RR_DECODE_CONFIG(16, 2, 128, 10),
    RR_DECODE_CONFIG(16, 2, 256, 6),  RR_DECODE_CONFIG(16, 1, 128, 8),  RR_DECODE_CONFIG(16, 2, 64, 12),
    RR_DECODE_CONFIG(32, 2, 128, 6),  RR_DECODE_CONFIG(32, 4, 128, 6),  RR_DECODE_CONFIG(32, 4, 256, 4),
};
constexpr int kConfigCount = sizeof(kConfigs) / sizeof(kConfigs[0]);

// Weight streaming without shared-memory staging of the weights: a warp owns 8 output columns and one K chunk, and
// each lane loads its own parts of the B fragments (mma.cuh's layout) straight from global memory into registers,
// DEPTH k16 steps a batch, the next batch in flight while the MMAs of this one run. x (at most 16 rows) is staged in
// shared memory once per block. The MMAs run in the main loop's order (gemm.cuh): a chunk accumulated from zero in
// ascending K, 16 values an MMA; the chunks' partials summed in order by the chunk-0 warp. So the bits equal
// launch_linear's for every element.
constexpr int kStreamMaxChunks = 4;
constexpr int kStreamSharedBytes = 200 * 1024;

template <int DEPTH>
__device__ __forceinline__ void stream_load(unsigned (&b)[DEPTH][2], const bf16* row, int k0, int t) {
#pragma unroll
    for (int i = 0; i < DEPTH; ++i) {
        const bf16* p = row + k0 + i * 16 + 2 * t;
        unsigned lo, hi;
        asm volatile("ld.global.nc.L1::no_allocate.b32 %0, [%1];\n" : "=r"(lo) : "l"(p));
        asm volatile("ld.global.nc.L1::no_allocate.b32 %0, [%1];\n" : "=r"(hi) : "l"(p + 8));
        b[i][0] = lo;
        b[i][1] = hi;
    }
}

template <int DEPTH>
__device__ __forceinline__ void stream_zero(unsigned (&b)[DEPTH][2]) {
#pragma unroll
    for (int i = 0; i < DEPTH; ++i) b[i][0] = b[i][1] = 0u;
}

template <int DEPTH>
__device__ __forceinline__ void stream_mma(float (&acc)[4], const unsigned (&b)[DEPTH][2], const bf16* x_lo, const bf16* x_hi, int k0, int t) {
#pragma unroll
    for (int i = 0; i < DEPTH; ++i) {
        const int kk = k0 + i * 16 + 2 * t;
        unsigned a[4];
        a[0] = x_lo ? *reinterpret_cast<const unsigned*>(x_lo + kk) : 0u;
        a[1] = x_hi ? *reinterpret_cast<const unsigned*>(x_hi + kk) : 0u;
        a[2] = x_lo ? *reinterpret_cast<const unsigned*>(x_lo + kk + 8) : 0u;
        a[3] = x_hi ? *reinterpret_cast<const unsigned*>(x_hi + kk + 8) : 0u;
        mma_bf16(acc, a, b[i][0], b[i][1]);
    }
}

__host__ __device__ inline size_t stream_x_bytes(int m, int k) { return ((size_t)m * (k + 8) * sizeof(bf16) + 15) / 16 * 16; }

template <int COLUMN_WARPS, int DEPTH>
__global__ void __launch_bounds__(COLUMN_WARPS * kStreamMaxChunks * 32)
    linear_stream_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ y, int m, int n, int k) {
    extern __shared__ __align__(16) unsigned char stream_smem[];
    const int lds = k + 8;
    bf16* xs = reinterpret_cast<bf16*>(stream_smem);
    float* partials = reinterpret_cast<float*>(stream_smem + stream_x_bytes(m, k));  // [chunk - 1][column warp][lane][4]
    const int vectors = k / 8;
    for (int i = threadIdx.x; i < m * vectors; i += blockDim.x) {
        const int r = i / vectors, q = i % vectors;
        *reinterpret_cast<uint4*>(xs + (size_t)r * lds + q * 8) = *reinterpret_cast<const uint4*>(x + (size_t)r * k + q * 8);
    }
    __syncthreads();

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int column_warp = warp % COLUMN_WARPS, chunk = warp / COLUMN_WARPS;
    const int chunk_values = gemm_chunk(k), steps = chunk_values / 16, kbase = chunk * chunk_values;
    const int n0 = (blockIdx.x * COLUMN_WARPS + column_warp) * 8;
    const bf16* row = n0 + g < n ? w + (size_t)(n0 + g) * k : nullptr;
    const bf16* x_lo = g < m ? xs + (size_t)g * lds : nullptr;
    const bf16* x_hi = g + 8 < m ? xs + (size_t)(g + 8) * lds : nullptr;

    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    unsigned b0[DEPTH][2], b1[DEPTH][2];
    if (row) stream_load<DEPTH>(b0, row, kbase, t); else stream_zero<DEPTH>(b0);
    for (int s = 0; s < steps; s += 2 * DEPTH) {
        const int k0 = kbase + s * 16;
        const bool second = s + DEPTH < steps, third = s + 2 * DEPTH < steps;
        if (second) {
            if (row) stream_load<DEPTH>(b1, row, k0 + DEPTH * 16, t); else stream_zero<DEPTH>(b1);
        }
        stream_mma<DEPTH>(acc, b0, x_lo, x_hi, k0, t);
        if (third) {
            if (row) stream_load<DEPTH>(b0, row, k0 + 2 * DEPTH * 16, t); else stream_zero<DEPTH>(b0);
        }
        if (second) stream_mma<DEPTH>(acc, b1, x_lo, x_hi, k0 + DEPTH * 16, t);
    }

    const int chunks = k / chunk_values;
    if (chunks > 1) {
        if (chunk > 0) {
            float* mine = partials + (((size_t)(chunk - 1) * COLUMN_WARPS + column_warp) * 32 + lane) * 4;
#pragma unroll
            for (int e = 0; e < 4; ++e) mine[e] = acc[e];
        }
        __syncthreads();
        if (chunk > 0) return;
        for (int c = 1; c < chunks; ++c) {
            const float* theirs = partials + (((size_t)(c - 1) * COLUMN_WARPS + column_warp) * 32 + lane) * 4;
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[e] = __fadd_rn(acc[e], theirs[e]);
        }
    }
    const int col = n0 + 2 * t;
    if (col >= n) return;
    if (g < m) store_bf16_pair(y + (size_t)g * n + col, acc[0], acc[1]);
    if (g + 8 < m) store_bf16_pair(y + (size_t)(g + 8) * n + col, acc[2], acc[3]);
}

template <int COLUMN_WARPS, int DEPTH>
void run_stream(cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, bool, const GemmScratch&) {
    static std::atomic<bool> prepared{false};
    if (!prepared.load(std::memory_order_acquire)) {
        check_cuda(cudaFuncSetAttribute(linear_stream_kernel<COLUMN_WARPS, DEPTH>, cudaFuncAttributeMaxDynamicSharedMemorySize, kStreamSharedBytes),
                   "cudaFuncSetAttribute(linear stream)");
        prepared.store(true, std::memory_order_release);
    }
    const int chunks = k / gemm_chunk(k);
    const size_t smem = stream_x_bytes(m, k) + (size_t)(chunks - 1) * COLUMN_WARPS * 32 * 4 * sizeof(float);
    linear_stream_kernel<COLUMN_WARPS, DEPTH><<<ceil_div(n, 8 * COLUMN_WARPS), COLUMN_WARPS * chunks * 32, smem, s>>>(x, w, y, m, n, k);
    check_launch("linear stream");
}

struct StreamConfig {
    const char* name;
    int depth;
    RunDense run;
};

const StreamConfig kStreams[] = {
    {"stream 4w 8d", 8, &run_stream<4, 8>},
    {"stream 4w 16d", 16, &run_stream<4, 16>},
    {"stream 2w 16d", 16, &run_stream<2, 16>},
};
constexpr int kStreamCount = sizeof(kStreams) / sizeof(kStreams[0]);

// Candidates 0 .. 2 * kConfigCount - 1: configuration c / 2, with a split of K's chunks when c is odd; then the
// streaming kernels.
bool is_stream(int candidate) { return candidate >= 2 * kConfigCount; }
const DecodeConfig& config_of(int candidate) { return kConfigs[candidate / 2]; }
const StreamConfig& stream_of(int candidate) { return kStreams[candidate - 2 * kConfigCount]; }
bool splits(int candidate) { return candidate % 2 == 1; }

// Microseconds per launch of launch(i) for i over the shape's weights, captured once in a graph (launch gaps as in a
// captured decode step) and replayed `rounds` times after one untimed replay.
template <typename F>
double time_pass(cudaStream_t s, int launches, int rounds, F&& launch) {
    launch(0);  // outside the capture: a configuration's first launch raises its shared-memory limit
    check_cuda(cudaStreamSynchronize(s), "tuning warm-up");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    check_cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture(tuning)");
    for (int i = 0; i < launches; ++i) launch(i);
    check_cuda(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture(tuning)");
    check_cuda(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiate(tuning)");
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch(tuning)");
    check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
    for (int r = 0; r < rounds; ++r) check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch(tuning)");
    check_cuda(cudaEventRecord(stop, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize(tuning)");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    cudaEventDestroy(start), cudaEventDestroy(stop);
    cudaGraphExecDestroy(exec), cudaGraphDestroy(graph);
    return ms * 1e3 / ((double)rounds * launches);
}

constexpr int kMaxLaunchesPerPass = 64;
constexpr double kKeepDefaultWithin = 0.98;

}  // namespace

int linear_decode_candidates() { return 2 * kConfigCount + kStreamCount; }

std::string linear_decode_candidate_name(int candidate) {
    if (is_stream(candidate)) return stream_of(candidate).name;
    return std::string(config_of(candidate).name) + (splits(candidate) ? " split" : "");
}

bool linear_decode_candidate_fits(int candidate, int n, int k) {
    if (candidate < 0 || candidate >= linear_decode_candidates() || n <= 0 || k % 32 != 0 || n % 2 != 0) return false;
    const int chunk = gemm_chunk(k);
    if (is_stream(candidate)) {
        const size_t smem = stream_x_bytes(16, k) + (size_t)(kStreamMaxChunks - 1) * 8 * 32 * 4 * sizeof(float);
        return chunk % (16 * stream_of(candidate).depth) == 0 && k / chunk <= kStreamMaxChunks && smem <= (size_t)kStreamSharedBytes;
    }
    // A split of a single chunk is the unsplit configuration again.
    return chunk % config_of(candidate).bk == 0 && (!splits(candidate) || chunk < k);
}

void launch_linear_candidate(int candidate, cudaStream_t s, const bf16* x, const bf16* w, bf16* y, int m, int n, int k, const GemmScratch& scratch) {
    if (!linear_decode_candidate_fits(candidate, n, k)) {
        fail("linear: decode candidate " + std::to_string(candidate) + " does not fit N " + std::to_string(n) + ", K " + std::to_string(k));
    }
    if (m <= 0) return;
    if (m > 16) fail("linear: decode candidates take at most 16 rows, not " + std::to_string(m));
    if (is_stream(candidate)) return stream_of(candidate).run(s, x, w, y, m, n, k, false, scratch);
    config_of(candidate).run(s, x, w, y, m, n, k, splits(candidate), scratch);
}

std::vector<double> time_linear_candidates(cudaStream_t s, const LinearShape& shape, const bf16* x, bf16* y, int m, int rounds,
                                           const GemmScratch& scratch) {
    const int copies = (int)shape.weights.size(), launches = std::min(std::max(copies, 1), kMaxLaunchesPerPass);
    std::vector<double> times(linear_decode_candidates(), -1.0);
    if (copies == 0) return times;
    for (int c = 0; c < linear_decode_candidates(); ++c) {
        if (!linear_decode_candidate_fits(c, shape.n, shape.k)) continue;
        times[c] = time_pass(s, launches, rounds, [&](int i) { launch_linear_candidate(c, s, x, shape.weights[i % copies], y, m, shape.n, shape.k, scratch); });
    }
    return times;
}

LinearTuning tune_decode_linears(cudaStream_t s, const std::vector<LinearShape>& shapes, const bf16* x, bf16* y, const GemmScratch& scratch) {
    constexpr int kRounds = 3;
    LinearTuning tuning;
    GemmScratch untuned = scratch;
    untuned.tuning = nullptr;
    auto known = [&](const LinearShape& shape) {
        return std::any_of(tuning.entries, tuning.entries + tuning.count, [&](const LinearTuning::Entry& e) { return e.n == shape.n && e.k == shape.k; });
    };
    for (const LinearShape& shape : shapes) {
        if (tuning.count == LinearTuning::kMaxShapes || shape.weights.empty() || known(shape)) continue;
        LinearTuning::Entry entry;
        entry.n = shape.n;
        entry.k = shape.k;
        for (int m : {1, 8}) {
            const int copies = (int)shape.weights.size(), launches = std::min(copies, kMaxLaunchesPerPass);
            const double own = time_pass(s, launches, kRounds, [&](int i) {
                launch_linear(s, x, shape.weights[i % copies], y, m, shape.n, shape.k, untuned);
            });
            const auto times = time_linear_candidates(s, shape, x, y, m, kRounds, untuned);
            int best = -1;
            for (int c = 0; c < (int)times.size(); ++c) {
                if (times[c] > 0 && (best < 0 || times[c] < times[best])) best = c;
            }
            const int chosen = best >= 0 && times[best] < kKeepDefaultWithin * own ? best : -1;
            (m == 1 ? entry.few : entry.many) = chosen;
        }
        tuning.entries[tuning.count++] = entry;
    }
    check_cuda(cudaStreamSynchronize(s), "tuning");
    return tuning;
}

}  // namespace rr
