// Every hot kernel at Qwen3-30B-A3B's shapes, timed by replaying CUDA graphs (so launch gaps are those a captured
// step would have), against the device's read bandwidth and matrix rate measured in the same run. Weights rotate over
// copies larger than the L2 cache, so no figure is an L2 figure.
//
//   kernel_bench [OUT.json]
//
// Prints one line per measurement; with OUT.json also writes them as a JSON array.
#include "gemm.cuh"
#include "kernels.cuh"
#include "routereplay_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using namespace rr;

namespace {

constexpr int kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 128, kExperts = 128, kTopK = 8, kInter = 768, kVocab = 151936;
constexpr size_t kRotationBytes = 512ull << 20;  // ten times the H200's L2

struct Row {
    std::string kernel, shape;
    double microseconds, gigabytes, teraflops;
};
std::vector<Row> g_rows;
double g_read_gbps = 0, g_gemm_tflops = 0;
GemmScratch g_scratch;

void record(const std::string& kernel, const std::string& shape, double us, double bytes, double flops) {
    const double gbps = bytes / (us * 1e-6) / 1e9, tflops = flops / (us * 1e-6) / 1e12;
    g_rows.push_back({kernel, shape, us, gbps, tflops});
    std::printf("%-14s %-34s %10.2f us %9.0f GB/s (%5.1f%%) %8.1f TFLOP/s\n", kernel.c_str(), shape.c_str(), us, gbps,
                100.0 * gbps / g_read_gbps, tflops);
    std::fflush(stdout);
}

template <typename T>
T* device(size_t count) {
    T* p = nullptr;
    check_cuda(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)), "cudaMalloc");
    return p;
}

bf16* random_device(cudaStream_t s, size_t count, float std, uint64_t seed) {
    bf16* p = device<bf16>(count);
    launch_fill_normal(s, p, count, seed, 0.f, std);
    return p;
}

template <typename T>
T* upload(const std::vector<T>& host) {
    T* p = device<T>(host.size());
    check_cuda(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    return p;
}

// Microseconds per call of run(i) (i counts calls), captured `per_graph` times in a graph replayed until about 50 ms.
template <typename F>
double time_graph(cudaStream_t s, int per_graph, F&& run) {
    run(0);  // outside the capture: one-time set-up such as raising a kernel's shared-memory limit
    check_cuda(cudaStreamSynchronize(s), "warm-up");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    check_cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    for (int i = 0; i < per_graph; ++i) run(i);
    check_cuda(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
    check_cuda(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiate");
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
    check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
    check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
    check_cuda(cudaEventRecord(stop, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float once = 0;
    check_cuda(cudaEventElapsedTime(&once, start, stop), "cudaEventElapsedTime");
    const int replays = std::max(3, std::min(200, (int)(50.0 / std::max(once, 0.01f))));
    check_cuda(cudaEventRecord(start, s), "cudaEventRecord");
    for (int r = 0; r < replays; ++r) check_cuda(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
    check_cuda(cudaEventRecord(stop, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    cudaEventDestroy(start), cudaEventDestroy(stop);
    cudaGraphExecDestroy(exec), cudaGraphDestroy(graph);
    return ms * 1e3 / ((double)replays * per_graph);
}

// Every decode-sized candidate configuration at M = 1 and 8 (what a model's tuning chooses from), over the same
// rotation of weights as bench_linear.
void bench_linear_candidates(cudaStream_t s, const char* name, int n, int k) {
    const size_t weight_bytes = (size_t)n * k * 2;
    const int copies = (int)std::min<size_t>(64, std::max<size_t>(2, kRotationBytes / weight_bytes + 1));
    LinearShape shape{n, k, {}};
    for (int i = 0; i < copies; ++i) shape.weights.push_back(random_device(s, (size_t)n * k, 0.02f, 100 + i));
    bf16* x = random_device(s, (size_t)16 * k, 1.f, 1);
    bf16* y = device<bf16>((size_t)16 * n);
    for (int m : {1, 8}) {
        const auto times = time_linear_candidates(s, shape, x, y, m, 20, g_scratch);
        for (int c = 0; c < (int)times.size(); ++c) {
            if (times[c] < 0) continue;
            const std::string label = std::string(name) + " M=" + std::to_string(m) + " " + linear_decode_candidate_name(c);
            record("linear cand", label, times[c], weight_bytes + (double)m * (k + n) * 2, 2.0 * m * n * k);
        }
    }
    const LinearTuning tuning = tune_decode_linears(s, {shape}, x, y, g_scratch);
    std::printf("tuning %s: M<=4 %s, M<=16 %s\n", name, tuning.entries[0].few < 0 ? "own rule" : linear_decode_candidate_name(tuning.entries[0].few).c_str(),
                tuning.entries[0].many < 0 ? "own rule" : linear_decode_candidate_name(tuning.entries[0].many).c_str());
    for (const bf16* w : shape.weights) cudaFree(const_cast<bf16*>(w));
    cudaFree(x), cudaFree(y);
}

void bench_linear(cudaStream_t s, const char* name, int n, int k, const std::vector<int>& batches) {
    const size_t weight_bytes = (size_t)n * k * 2;
    const int copies = (int)std::max<size_t>(2, kRotationBytes / weight_bytes + 1);
    std::vector<bf16*> weights;
    for (int i = 0; i < copies; ++i) weights.push_back(random_device(s, (size_t)n * k, 0.02f, 100 + i));
    const int most = *std::max_element(batches.begin(), batches.end());
    bf16* x = random_device(s, (size_t)most * k, 1.f, 1);
    bf16* y = device<bf16>((size_t)most * n);
    for (int m : batches) {
        const double us = time_graph(s, copies, [&](int i) { launch_linear(s, x, weights[i % copies], y, m, n, k, g_scratch); });
        const std::string shape = std::string(name) + " M=" + std::to_string(m) + " " + linear_config(m, n, k);
        record("linear", shape, us, weight_bytes + (double)m * (k + n) * 2, 2.0 * m * n * k);
    }
    for (bf16* w : weights) cudaFree(w);
    cudaFree(x), cudaFree(y);
}

void bench_moe(cudaStream_t s, const std::vector<int>& batches) {
    const int layers = 4;  // 1.2 GB of experts each
    std::vector<bf16*> gate_up, down;
    for (int l = 0; l < layers; ++l) {
        gate_up.push_back(random_device(s, (size_t)kExperts * 2 * kInter * kHidden, 0.02f, 200 + l));
        down.push_back(random_device(s, (size_t)kExperts * kHidden * kInter, 0.02f, 300 + l));
    }
    const int most = *std::max_element(batches.begin(), batches.end());
    bf16* x = random_device(s, (size_t)most * kHidden, 1.f, 2);
    bf16* hidden = random_device(s, (size_t)most * kHidden, 1.f, 3);
    bf16* act = device<bf16>((size_t)most * kTopK * kInter);
    bf16* out = device<bf16>((size_t)most * kTopK * kHidden);
    const int max_tiles = moe_max_tiles(most, kTopK, kExperts, 16);
    MoePlan plan{device<int32_t>(kExperts + 1), device<int32_t>(max_tiles), device<int32_t>(max_tiles), device<int32_t>(max_tiles),
                 device<int32_t>(1), device<int32_t>((size_t)most * kTopK), device<int32_t>((size_t)most * kTopK)};
    uint64_t state = 12345;
    auto next = [&] { state = state * 6364136223846793005ULL + 1442695040888963407ULL; return (int)(state >> 33); };
    std::vector<int32_t> ids((size_t)most * kTopK), slots(most, 1);
    std::vector<float> weights((size_t)most * kTopK, 0.125f);
    for (int t = 0; t < most; ++t) {
        std::vector<int> experts(kExperts);
        for (int e = 0; e < kExperts; ++e) experts[e] = e;
        for (int j = 0; j < kTopK; ++j) std::swap(experts[j], experts[j + next() % (kExperts - j)]), ids[(size_t)t * kTopK + j] = experts[j];
    }
    int32_t* d_ids = upload(ids);
    int32_t* d_slots = upload(slots);
    float* d_weights = upload(weights);
    for (int T : batches) {
        std::vector<char> used(kExperts, 0);
        for (size_t i = 0; i < (size_t)T * kTopK; ++i) used[ids[i]] = 1;
        const int distinct = (int)std::count(used.begin(), used.end(), 1);
        const int tile_m = moe_tile_m(T, kTopK, kExperts), tiles = moe_max_tiles(T, kTopK, kExperts, tile_m);
        const double expert_bytes = (double)distinct * 3 * kInter * kHidden * 2;
        const double flops = 2.0 * T * kTopK * 3 * kInter * kHidden;
        const std::string shape = "T=" + std::to_string(T) + " tile " + std::to_string(tile_m) + " (" + std::to_string(distinct) + " experts)";
        const double all = time_graph(s, layers, [&](int i) {
            launch_moe_plan(s, d_ids, T, kTopK, kExperts, tile_m, plan);
            launch_moe_gate_up(s, x, gate_up[i % layers], act, plan, tiles, tile_m, kHidden, kInter, g_scratch);
            launch_moe_down(s, act, down[i % layers], out, plan, tiles, tile_m, kHidden, kInter, g_scratch);
            launch_moe_combine(s, hidden, out, d_ids, d_weights, plan.assignment_row, d_slots, T, kTopK, kHidden);
        });
        record("moe block", shape, all, expert_bytes, flops);
        const double plan_us = time_graph(s, layers, [&](int) { launch_moe_plan(s, d_ids, T, kTopK, kExperts, tile_m, plan); });
        record("moe plan", shape, plan_us, 0, 0);
        const double gate_up_us = time_graph(s, layers, [&](int i) { launch_moe_gate_up(s, x, gate_up[i % layers], act, plan, tiles, tile_m, kHidden, kInter, g_scratch); });
        record("moe gate_up", shape, gate_up_us, expert_bytes * 2 / 3, flops * 2 / 3);
        const double down_us = time_graph(s, layers, [&](int i) { launch_moe_down(s, act, down[i % layers], out, plan, tiles, tile_m, kHidden, kInter, g_scratch); });
        record("moe down", shape, down_us, expert_bytes / 3, flops / 3);
    }
    for (int l = 0; l < layers; ++l) cudaFree(gate_up[l]), cudaFree(down[l]);
    cudaFree(x), cudaFree(hidden), cudaFree(act), cudaFree(out), cudaFree(d_ids), cudaFree(d_slots), cudaFree(d_weights);
}

void bench_route(cudaStream_t s, const std::vector<int>& batches) {
    const int most = *std::max_element(batches.begin(), batches.end());
    bf16* logits = random_device(s, (size_t)most * kExperts, 1.f, 4);
    int32_t* ids = device<int32_t>((size_t)most * kTopK);
    float* weights = device<float>((size_t)most * kTopK);
    uint8_t* routing = device<uint8_t>((size_t)most * 48 * kTopK);
    uint8_t* status = device<uint8_t>(most);
    int32_t* slots = upload(std::vector<int32_t>(most, 1));
    for (int T : batches) {
        const RouteArgs a{logits, slots, nullptr, T, kExperts, kTopK, 1, 48 * kTopK, 1, 3, ids, weights, routing, status};
        record("route", "T=" + std::to_string(T), time_graph(s, 16, [&](int) { launch_route(s, a); }), 0, 0);
    }
    cudaFree(logits), cudaFree(ids), cudaFree(weights), cudaFree(routing), cudaFree(status), cudaFree(slots);
}

void bench_norms(cudaStream_t s, const std::vector<int>& batches) {
    const int most = *std::max_element(batches.begin(), batches.end());
    bf16* hidden = random_device(s, (size_t)most * kHidden, 1.f, 5);
    bf16* delta = random_device(s, (size_t)most * kHidden, 1.f, 6);
    bf16* weight = random_device(s, kHidden, 0.1f, 7);
    bf16* y = device<bf16>((size_t)most * kHidden);
    for (int T : batches) {
        const double us = time_graph(s, 16, [&](int) { launch_add_rmsnorm(s, hidden, delta, weight, y, T, kHidden, 1e-6f); });
        record("add_rmsnorm", "T=" + std::to_string(T), us, (double)T * kHidden * 2 * 4, 0);
    }
    cudaFree(hidden), cudaFree(delta), cudaFree(weight), cudaFree(y);
}

// The paged KV cache of `seqs` sequences of `length` positions each (block size 16, one layer of 48 used), shuffled pages.
struct Cache {
    int seqs, length, max_blocks;
    uint8_t* kv;
    int32_t* tables;
};

Cache make_cache(cudaStream_t s, int seqs, int length) {
    const int pages_per_seq = (length + 15) / 16, pages = seqs * pages_per_seq;
    const size_t plane = (size_t)16 * kKvHeads * kHeadDim;
    bf16* kv = random_device(s, (size_t)pages * 2 * plane, 1.f, 8);
    std::vector<int32_t> tables((size_t)seqs * pages_per_seq);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = (int32_t)((i * 7919) % pages);
    return {seqs, length, pages_per_seq, reinterpret_cast<uint8_t*>(kv), upload(tables)};
}

void bench_attention(cudaStream_t s, int seqs, int tokens_per_seq, int context, const char* name) {
    Cache cache = make_cache(s, seqs, context);
    const int T = seqs * tokens_per_seq;
    const int64_t stride = (kHeads + 2 * kKvHeads) * kHeadDim;
    bf16* q = random_device(s, (size_t)T * stride, 1.f, 9);
    bf16* out = device<bf16>((size_t)T * kHeads * kHeadDim);
    std::vector<int32_t> positions(T), seq(T), slots(T, 0);
    double flops = 0, kv_bytes = 0;
    for (int i = 0; i < seqs; ++i) {
        for (int j = 0; j < tokens_per_seq; ++j) {
            const int t = i * tokens_per_seq + j;
            positions[t] = context - tokens_per_seq + j;
            seq[t] = i;
            flops += 4.0 * (positions[t] + 1) * kHeadDim * kHeads;
        }
        kv_bytes += (double)context * kKvHeads * kHeadDim * 2 * 2;
    }
    int32_t *d_pos = upload(positions), *d_seq = upload(seq);
    const int split_blocks = (context + 63) / 64;
    std::vector<int32_t> lists(2 + 3 * (size_t)T), tiles(2 * (size_t)T);
    int sms = 0;
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
    const AttentionPlan plan = plan_attention(seq.data(), positions.data(), slots.data(), T, kHeads / kKvHeads, kKvHeads, 2 * sms, T, split_blocks,
                                              lists.data() + 2, tiles.data());
    lists[0] = plan.decode_tokens;
    lists[1] = plan.prefill_tiles;
    std::copy(tiles.begin(), tiles.begin() + 2 * plan.prefill_tiles, lists.begin() + 2 + plan.decode_tokens);
    int32_t* d_lists = upload(lists);
    const size_t partials = (size_t)T * kHeads * split_blocks;
    float *pm = device<float>(partials), *pl = device<float>(partials), *pacc = device<float>(partials * kHeadDim);
    const AttentionArgs a{q, stride, out, d_pos, d_seq, cache.tables, cache.max_blocks, kHeads, kHeads / kKvHeads, 0, 0.12751743f};
    const KvLayout kv{cache.kv, 1, kKvHeads, kHeadDim, 16};
    const AttentionWork work{d_lists, d_lists + 2, d_lists + 1, d_lists + 2 + plan.decode_tokens, pm, pl, pacc, split_blocks};
    const double us = time_graph(s, 8, [&](int) { launch_attention(s, a, kv, work, plan); });
    const std::string path = plan.prefill_tiles > 0 ? "prefill" : plan.split ? "decode split" : "decode whole";
    record("attention", std::string(name) + " (" + path + ")", us, kv_bytes, flops);
    cudaFree(cache.kv), cudaFree(cache.tables), cudaFree(q), cudaFree(out), cudaFree(d_pos), cudaFree(d_seq), cudaFree(d_lists);
    cudaFree(pm), cudaFree(pl), cudaFree(pacc);
}

void write_json(const char* path) {
    FILE* f = std::fopen(path, "w");
    if (!f) return;
    std::fprintf(f, "{\"read_gigabytes_per_s\": %.1f, \"bf16_gemm_teraflops\": %.1f, \"kernels\": [\n", g_read_gbps, g_gemm_tflops);
    for (size_t i = 0; i < g_rows.size(); ++i) {
        const Row& r = g_rows[i];
        std::fprintf(f, "  {\"kernel\": \"%s\", \"shape\": \"%s\", \"microseconds\": %.3f, \"gigabytes_per_s\": %.1f, \"teraflops\": %.2f}%s\n",
                     r.kernel.c_str(), r.shape.c_str(), r.microseconds, r.gigabytes, r.teraflops, i + 1 < g_rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        double copy = 0;
        if (rr_measure_ceilings(4ull << 30, 8192, &copy, &g_read_gbps, &g_gemm_tflops) != RR_OK) fail(rr_last_error());
        std::printf("ceilings: copy %.0f GB/s (read+written), read %.0f GB/s, bf16 GEMM %.0f TFLOP/s; percentages are of the read rate\n", copy,
                    g_read_gbps, g_gemm_tflops);
        cudaStream_t s;
        check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        const size_t floats = std::max({linear_scratch_floats(5120, 2048), linear_scratch_floats(2048, 4096), moe_scratch_floats(kExperts, kHidden, kInter, 64)});
        const int counters = std::max({linear_scratch_counters(5120), linear_scratch_counters(2048), moe_scratch_counters(kExperts, kHidden, kInter, 64)});
        g_scratch.partials = device<float>(floats);
        g_scratch.capacity = floats;
        g_scratch.counters = device<int>(counters);
        g_scratch.counter_capacity = counters;
        check_cuda(cudaMemset(g_scratch.counters, 0, counters * sizeof(int)), "cudaMemset");
        int sms = 0;
        check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
        g_scratch.split_below_tiles = 4 * sms;
        const std::vector<int> decode = {1, 8, 64, 256};
        bench_linear(s, "qkv 5120x2048", 5120, 2048, {1, 8, 64, 256, 16384});
        bench_linear(s, "o 2048x4096", 2048, 4096, {1, 8, 64, 256, 16384});
        bench_linear(s, "router 128x2048", 128, 2048, {1, 8, 64, 256, 16384});
        bench_linear(s, "lm_head 151936x2048", kVocab, 2048, {1, 8, 64, 256});
        bench_linear_candidates(s, "qkv 5120x2048", 5120, 2048);
        bench_linear_candidates(s, "o 2048x4096", 2048, 4096);
        bench_linear_candidates(s, "router 128x2048", 128, 2048);
        bench_moe(s, {1, 8, 64, 256, 16384});
        bench_route(s, {1, 64, 256, 16384});
        bench_norms(s, {1, 64, 256, 16384});
        attention_prepare(kHeadDim);
        for (int b : decode) bench_attention(s, b, 1, 768, ("decode batch " + std::to_string(b) + " ctx 768").c_str());
        bench_attention(s, 1, 1, 4608, "decode batch 1 ctx 4608");
        bench_attention(s, 8, 2048, 2048, "prefill 8 x 2048");
        check_cuda(cudaStreamSynchronize(s), "the benchmark");
        if (argc > 1) write_json(argv[1]);
    } catch (const Failure& f) {
        std::printf("kernel bench: CUDA failure: %s\n", f.message.c_str());
        if (argc > 1) write_json(argv[1]);
        return 2;
    }
    return 0;
}
