// The dense projections against a host reference, and bit-for-bit the same row whatever the batch: every tile
// configuration the dispatcher picks (by M) accumulates each element in the same order. The same for the experts'
// grouped GEMMs across tile heights.
#include "support.cuh"

namespace rr_test {

namespace {

std::vector<bf16> linear_on_device(const std::vector<bf16>& x, const bf16* dw, int m, int n, int k, const GemmScratch& scratch) {
    bf16* dx = to_device(x);
    bf16* dy = poisoned<bf16>((size_t)m * n);
    launch_linear(0, dx, dw, dy, m, n, k, scratch);
    auto y = to_host(dy, (size_t)m * n);
    cudaFree(dx), cudaFree(dy);
    return y;
}

void test_linear(int n, int k, const char* name) {
    const std::vector<int> batches = {1, 5, 16, 17, 64, 65, 300, 2100};
    const int most = batches.back();
    auto x = random_bf16((size_t)most * k, 1.0f);
    auto w = random_bf16((size_t)n * k, 1.0f / std::sqrt((float)k));
    bf16* dw = to_device(w);
    GemmScratch scratch = make_scratch(linear_scratch_floats(n, k), linear_scratch_counters(n));
    const auto all = linear_on_device(x, dw, most, n, k, scratch);

    // A difference is measured against the root of the summed squared products: the size of the rounding a sum of
    // random terms in another order can move (a result that cancels to near zero would otherwise magnify it).
    std::vector<bf16> got;
    std::vector<float> want, scale;
    for (int r = 0; r < most; r += 37) {
        for (int c = 0; c < n; ++c) {
            double acc = 0, squares = 0;
            for (int i = 0; i < k; ++i) {
                const double product = (double)__bfloat162float(x[(size_t)r * k + i]) * __bfloat162float(w[(size_t)c * k + i]);
                acc += product;
                squares += product * product;
            }
            want.push_back(host_bf16r((float)acc));
            scale.push_back((float)std::sqrt(squares));
            got.push_back(all[(size_t)r * n + c]);
        }
    }
    compare_bf16((std::string("linear vs reference, ") + name).c_str(), got, want, 0.02, &scale, 2.01);

    int rows = 0, differ = 0;
    std::string configs;
    for (int m : batches) {
        configs += std::string(configs.empty() ? "" : " ") + linear_config(m, n, k);
        const std::vector<bf16> part(x.begin(), x.begin() + (size_t)m * k);
        const auto y = linear_on_device(part, dw, m, n, k, scratch);
        for (int r = 0; r < m; ++r, ++rows) differ += std::memcmp(&y[(size_t)r * n], &all[(size_t)r * n], n * sizeof(bf16)) != 0;
    }
    char detail[200];
    std::snprintf(detail, sizeof detail, "%d rows at M = 1..%d (%s): %d differ from M = %d", rows, most, configs.c_str(), differ, most);
    report((std::string("linear batch invariance, ") + name).c_str(), differ == 0, detail);
    free_scratch(scratch);
    cudaFree(dw);
}

// The experts' block for the first `tokens` rows of the inputs; returns the hidden rows after the combine.
std::vector<bf16> moe_on_device(int tokens, int E, int K, int H, int I, const std::vector<bf16>& x, const bf16* dgu, const bf16* ddown,
                                const std::vector<int32_t>& ids, const std::vector<float>& weights, const std::vector<bf16>& hidden,
                                const GemmScratch& scratch) {
    const int tile_m = moe_tile_m(tokens, K, E), max_tiles = moe_max_tiles(tokens, K, E, tile_m);
    const std::vector<int32_t> slots(tokens, 1);
    bf16 *dx = to_device(std::vector<bf16>(x.begin(), x.begin() + (size_t)tokens * H)),
         *dh = to_device(std::vector<bf16>(hidden.begin(), hidden.begin() + (size_t)tokens * H));
    int32_t *dids = to_device(std::vector<int32_t>(ids.begin(), ids.begin() + (size_t)tokens * K)), *dslots = to_device(slots);
    float* dw = to_device(std::vector<float>(weights.begin(), weights.begin() + (size_t)tokens * K));
    MoePlan plan{poisoned<int32_t>(E + 1), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles),
                 poisoned<int32_t>(1), poisoned<int32_t>((size_t)tokens * K), poisoned<int32_t>((size_t)tokens * K)};
    bf16* act = poisoned<bf16>((size_t)tokens * K * I);
    bf16* out = poisoned<bf16>((size_t)tokens * K * H);
    launch_moe_plan(0, dids, tokens, K, E, tile_m, plan);
    launch_moe_gate_up(0, dx, dgu, act, plan, max_tiles, tile_m, H, I, scratch);
    launch_moe_down(0, act, ddown, out, plan, max_tiles, tile_m, H, I, scratch);
    launch_moe_combine(0, dh, out, dids, dw, plan.assignment_row, dslots, tokens, K, H);
    auto result = to_host(dh, (size_t)tokens * H);
    cudaFree(dx), cudaFree(dh), cudaFree(dids), cudaFree(dslots), cudaFree(dw), cudaFree(act), cudaFree(out);
    cudaFree(plan.expert_offsets), cudaFree(plan.tile_expert), cudaFree(plan.tile_row0), cudaFree(plan.tile_row_end);
    cudaFree(plan.tile_count), cudaFree(plan.sorted_token), cudaFree(plan.assignment_row);
    return result;
}

// Qwen3-30B-A3B's expert shapes (128 experts, top-8, hidden 2048, 768 per expert): a token's output is the same bits
// in steps whose plans use 16-, 64- and 128-row tiles.
void test_moe_invariance() {
    const int E = 128, K = 8, H = 2048, I = 768, most = 2100;
    auto x = random_bf16((size_t)most * H, 1.0f), hidden = random_bf16((size_t)most * H, 1.0f);
    std::vector<int32_t> ids((size_t)most * K);
    std::vector<float> weights((size_t)most * K);
    for (int t = 0; t < most; ++t) {
        std::vector<int> experts(E);
        for (int e = 0; e < E; ++e) experts[e] = e;
        shuffle(experts);
        for (int j = 0; j < K; ++j) {
            ids[(size_t)t * K + j] = experts[j];
            weights[(size_t)t * K + j] = 0.05f + 0.95f * (float)g_random.uniform();
        }
    }
    bf16 *dgu = poisoned<bf16>((size_t)E * 2 * I * H), *ddown = poisoned<bf16>((size_t)E * H * I);
    launch_fill_normal(0, dgu, (size_t)E * 2 * I * H, 7, 0.f, 1.0f / std::sqrt((float)H));
    launch_fill_normal(0, ddown, (size_t)E * H * I, 8, 0.f, 1.0f / std::sqrt((float)I));
    GemmScratch scratch = make_scratch(moe_scratch_floats(E, H, I, 64), moe_scratch_counters(E, H, I, 64));
    const auto all = moe_on_device(most, E, K, H, I, x, dgu, ddown, ids, weights, hidden, scratch);
    int rows = 0, differ = 0;
    std::string tiles;
    for (int tokens : {1, 8, 16, 200, 900}) {
        tiles += std::to_string(moe_tile_m(tokens, K, E)) + " ";
        const auto part = moe_on_device(tokens, E, K, H, I, x, dgu, ddown, ids, weights, hidden, scratch);
        for (int t = 0; t < tokens; ++t, ++rows) differ += std::memcmp(&part[(size_t)t * H], &all[(size_t)t * H], H * sizeof(bf16)) != 0;
    }
    char detail[200];
    std::snprintf(detail, sizeof detail, "%d token rows in steps of 1, 8, 16, 200, 900 tokens (tiles %s) vs %d tokens (tile %d): %d differ", rows,
                  tiles.c_str(), most, moe_tile_m(most, K, E), differ);
    report("moe batch invariance (128 experts)", differ == 0, detail);
    free_scratch(scratch);
    cudaFree(dgu), cudaFree(ddown);
}

// Every decode-sized candidate configuration (the ones a model's tuning may choose) gives launch_linear's own bits, at
// 1, 5 and 16 rows; and tuning picks, per shape, either launch_linear's rule or a candidate that fits.
void test_linear_candidates(int n, int k, const char* name) {
    auto x = random_bf16((size_t)16 * k, 1.0f);
    auto w = random_bf16((size_t)n * k, 1.0f / std::sqrt((float)k));
    bf16* dw = to_device(w);
    bf16* dx = to_device(x);
    GemmScratch scratch = make_scratch(linear_scratch_floats(n, k), linear_scratch_counters(n));
    int tried = 0, differ = 0;
    std::string differing;
    for (int m : {1, 5, 16}) {
        const auto own = linear_on_device(std::vector<bf16>(x.begin(), x.begin() + (size_t)m * k), dw, m, n, k, scratch);
        for (int c = 0; c < linear_decode_candidates(); ++c) {
            if (!linear_decode_candidate_fits(c, n, k)) continue;
            bf16* dy = poisoned<bf16>((size_t)m * n);
            launch_linear_candidate(c, 0, dx, dw, dy, m, n, k, scratch);
            const auto y = to_host(dy, (size_t)m * n);
            cudaFree(dy);
            ++tried;
            if (std::memcmp(y.data(), own.data(), y.size() * sizeof(bf16)) != 0) {
                ++differ;
                differing += " " + linear_decode_candidate_name(c) + " (M=" + std::to_string(m) + ")";
            }
        }
    }
    char detail[400];
    std::snprintf(detail, sizeof detail, "%d candidate launches at M = 1, 5, 16: %d differ from launch_linear%s", tried, differ,
                  differing.substr(0, 200).c_str());
    report((std::string("linear decode candidates, ") + name).c_str(), differ == 0 && tried > 0, detail);

    LinearShape shape{n, k, {dw, dw}};
    bf16* dy = poisoned<bf16>((size_t)16 * n);
    cudaStream_t stream;  // tuning captures graphs, which the legacy default stream cannot
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const LinearTuning tuning = tune_decode_linears(stream, {shape, shape}, dx, dy, scratch);
    cudaStreamDestroy(stream);
    cudaFree(dy);
    const bool sane = tuning.count == 1 && tuning.entries[0].n == n && tuning.entries[0].k == k &&
                      (tuning.entries[0].few < 0 || linear_decode_candidate_fits(tuning.entries[0].few, n, k)) &&
                      (tuning.entries[0].many < 0 || linear_decode_candidate_fits(tuning.entries[0].many, n, k));
    std::snprintf(detail, sizeof detail, "one entry for the shape given twice: %d; picks: M<=4 %s, M<=16 %s", tuning.count,
                  tuning.entries[0].few < 0 ? "own rule" : linear_decode_candidate_name(tuning.entries[0].few).c_str(),
                  tuning.entries[0].many < 0 ? "own rule" : linear_decode_candidate_name(tuning.entries[0].many).c_str());
    report((std::string("linear decode tuning, ") + name).c_str(), sane, detail);
    free_scratch(scratch);
    cudaFree(dw), cudaFree(dx);
}

}  // namespace

void test_gemm_all() {
    test_linear(5120, 2048, "qkv 5120x2048");
    test_linear(2048, 4096, "o 2048x4096");
    test_linear(128, 2048, "router 128x2048");
    test_linear(256, 96, "K 96");
    test_linear_candidates(5120, 2048, "qkv 5120x2048");
    test_linear_candidates(2048, 4096, "o 2048x4096");
    test_linear_candidates(128, 2048, "router 128x2048");
    test_linear_candidates(384, 3072, "384x3072 (three chunks)");
    test_moe_invariance();
}

}  // namespace rr_test
