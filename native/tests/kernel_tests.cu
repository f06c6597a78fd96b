// Each kernel against a host reference that rounds at the same points, on fresh random inputs with poisoned outputs.
// Run by scripts/device/run.sh on the GPU machine; prints one line per check and exits non-zero on any failure.
#include "support.cuh"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace rr;
using namespace rr_test;

namespace {

float host_rms_inverse(const float* x, int n, float eps) {
    float ss = 0.f;
    for (int i = 0; i < n; ++i) ss += x[i] * x[i];
    return 1.0f / std::sqrt(ss * (1.0f / n) + eps);
}

void test_rmsnorm() {
    const int T = 37, H = 2048;
    const float eps = 1e-6f;
    auto x = random_bf16((size_t)T * H, 1.5f);
    auto w = random_bf16(H, 0.1f, 1.0f);
    bf16* dx = to_device(x);
    bf16* dw = to_device(w);
    bf16* dy = poisoned<bf16>((size_t)T * H);
    launch_rmsnorm(0, dx, nullptr, dw, dy, T, H, eps);
    auto got = to_host(dy, (size_t)T * H);
    std::vector<float> want((size_t)T * H), row(H);
    for (int t = 0; t < T; ++t) {
        for (int i = 0; i < H; ++i) row[i] = __bfloat162float(x[(size_t)t * H + i]);
        const float r = host_rms_inverse(row.data(), H, eps);
        for (int i = 0; i < H; ++i) want[(size_t)t * H + i] = host_bf16r(__bfloat162float(w[i]) * host_bf16r(row[i] * r));
    }
    compare_bf16("rmsnorm", got, want, 0.01, nullptr, 2.01);
    cudaFree(dx), cudaFree(dw), cudaFree(dy);
}

void test_route(bool forced_rows) {
    const int T = 300, E = 128, K = 8, layers = 3, moe_index = 1, row_bytes = layers * K;
    auto logits = random_bf16((size_t)T * E, 1.0f);
    std::vector<int32_t> slots(T, 1);
    slots[7] = -1;
    std::vector<uint8_t> forced((size_t)T * row_bytes, 0xFF);
    if (forced_rows) {
        for (int t = 0; t < T; t += 3)
            for (int i = 0; i < row_bytes; ++i) forced[(size_t)t * row_bytes + i] = (uint8_t)((t * 7 + i * 13) % E);
    }
    bf16* dl = to_device(logits);
    int32_t* ds = to_device(slots);
    uint8_t* df = to_device(forced);
    int32_t* ids = poisoned<int32_t>((size_t)T * K);
    float* w = poisoned<float>((size_t)T * K);
    std::vector<uint8_t> routing_init((size_t)T * row_bytes, 0xEE);
    uint8_t* dr = to_device(routing_init);
    RouteArgs a{dl, ds, forced_rows ? df : nullptr, T, E, K, 1, row_bytes, 1, moe_index, ids, w, dr};
    launch_route(0, a);
    auto got_ids = to_host(ids, (size_t)T * K);
    auto got_w = to_host(w, (size_t)T * K);
    auto got_r = to_host(dr, (size_t)T * row_bytes);
    int wrong = 0;
    double worst_weight = 0;
    for (int t = 0; t < T; ++t) {
        if (slots[t] < 0) {
            for (int j = 0; j < K; ++j) wrong += got_ids[t * K + j] != -1;
            continue;
        }
        std::vector<double> p(E);
        double m = -1e30, sum = 0;
        for (int e = 0; e < E; ++e) m = std::max(m, (double)__bfloat162float(logits[(size_t)t * E + e]));
        for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(__bfloat162float(logits[(size_t)t * E + e]) - m));
        std::vector<int> want(K);
        const bool is_forced = forced_rows && forced[(size_t)t * row_bytes] != 0xFF;
        if (is_forced) {
            for (int j = 0; j < K; ++j) want[j] = forced[(size_t)t * row_bytes + moe_index * K + j];
        } else {
            std::vector<int> order(E);
            for (int e = 0; e < E; ++e) order[e] = e;
            std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return p[x] > p[y]; });
            for (int j = 0; j < K; ++j) want[j] = order[j];
        }
        double total = 0;
        for (int j = 0; j < K; ++j) total += p[want[j]] / sum;
        for (int j = 0; j < K; ++j) {
            wrong += got_ids[t * K + j] != want[j];
            wrong += got_r[(size_t)t * row_bytes + moe_index * K + j] != want[j];
            wrong += got_r[(size_t)t * row_bytes + j] != 0xEE;  // other layers' columns untouched
            // Rounded to bf16: within one bf16 step of the exact weight, and a bf16 value.
            const double exact = p[want[j]] / sum / total;
            worst_weight = std::max(worst_weight, std::fabs(got_w[t * K + j] - exact) / exact);
            wrong += host_bf16r(got_w[t * K + j]) != got_w[t * K + j];
        }
    }
    char detail[160];
    std::snprintf(detail, sizeof detail, "%d tokens, %d wrong ids, row bytes or unrounded weights, worst relative weight error %.2e", T, wrong, worst_weight);
    report(forced_rows ? "route (forced rows)" : "route", wrong == 0 && worst_weight < 1.0 / 256, detail);
    cudaFree(dl), cudaFree(ds), cudaFree(df), cudaFree(ids), cudaFree(w), cudaFree(dr);
}

// Router logits that are not finite: such a token is flagged, its ids stay in [0, E) (NaN and infinities count as -inf,
// so the finite logits still decide), the other tokens are routed exactly as before, and the plan ignores ids out of
// range. The context must stay usable afterwards.
void test_route_nonfinite() {
    const int T = 64, E = 128, K = 8, row_bytes = K;
    auto logits = random_bf16((size_t)T * E, 1.0f);
    const float nan = std::nanf(""), inf = INFINITY;
    std::vector<int> bad_tokens = {1, 5, 9, 13, 17};
    for (int e = 0; e < E; e += 7) logits[(size_t)1 * E + e] = __float2bfloat16_rn(nan);
    logits[(size_t)5 * E + 3] = __float2bfloat16_rn(inf);
    logits[(size_t)9 * E + 100] = __float2bfloat16_rn(-inf);
    for (int e = 0; e < E; ++e) logits[(size_t)13 * E + e] = __float2bfloat16_rn(nan);
    for (int e = 0; e < E; ++e) logits[(size_t)17 * E + e] = __float2bfloat16_rn(e % 2 ? inf : -inf);
    std::vector<int32_t> slots(T, 1);
    bf16* dl = to_device(logits);
    int32_t* ds = to_device(slots);
    int32_t* ids = poisoned<int32_t>((size_t)T * K);
    float* w = poisoned<float>((size_t)T * K);
    uint8_t* dr = poisoned<uint8_t>((size_t)T * row_bytes);
    std::vector<uint8_t> status_init(T, 0);
    uint8_t* dstatus = to_device(status_init);
    RouteArgs a{dl, ds, nullptr, T, E, K, 1, row_bytes, 1, 0, ids, w, dr, dstatus};
    launch_route(0, a);
    auto got_ids = to_host(ids, (size_t)T * K);
    auto got_w = to_host(w, (size_t)T * K);
    auto got_status = to_host(dstatus, T);
    int wrong = 0, flagged = 0;
    for (int t = 0; t < T; ++t) {
        const bool bad = std::find(bad_tokens.begin(), bad_tokens.end(), t) != bad_tokens.end();
        flagged += got_status[t] != 0;
        wrong += (got_status[t] != 0) != bad;
        std::vector<int> order;
        for (int e = 0; e < E; ++e) {
            if (std::isfinite(__bfloat162float(logits[(size_t)t * E + e]))) order.push_back(e);
        }
        std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
            return __bfloat162float(logits[(size_t)t * E + x]) > __bfloat162float(logits[(size_t)t * E + y]);
        });
        for (int j = 0; j < K; ++j) {
            const int id = got_ids[t * K + j];
            wrong += id < 0 || id >= E;
            wrong += !std::isfinite(got_w[t * K + j]);
            if ((int)order.size() >= K) wrong += id != order[j];
        }
    }
    // The plan with ids out of range (a corrupt forced row, a padding token): counted nowhere, nothing written out of bounds.
    std::vector<int32_t> plan_ids = {0, 3, E + 5, -1, 3, 2 * E, 7, 0};
    const int assignments = (int)plan_ids.size(), tile_m = 16, max_tiles = moe_max_tiles(assignments, 1, E, tile_m);
    int32_t* dids = to_device(plan_ids);
    MoePlan plan{poisoned<int32_t>(E + 1), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles),
                 poisoned<int32_t>(1), poisoned<int32_t>(assignments), poisoned<int32_t>(assignments)};
    launch_moe_plan(0, dids, assignments, 1, E, tile_m, plan);
    auto offsets = to_host(plan.expert_offsets, E + 1);
    auto rows = to_host(plan.assignment_row, assignments);
    wrong += offsets[E] != 5;
    wrong += rows[2] != -1 || rows[3] != -1 || rows[5] != -1;
    char detail[160];
    std::snprintf(detail, sizeof detail, "%d tokens, %d flagged (want %zu), %d wrong; plan rows %d of %d", T, flagged, bad_tokens.size(), wrong, offsets[E], assignments);
    report("route (NaN and Inf logits)", wrong == 0, detail);
    cudaFree(dl), cudaFree(ds), cudaFree(ids), cudaFree(w), cudaFree(dr), cudaFree(dstatus), cudaFree(dids);
    cudaFree(plan.expert_offsets), cudaFree(plan.tile_expert), cudaFree(plan.tile_row0), cudaFree(plan.tile_row_end);
    cudaFree(plan.tile_count), cudaFree(plan.sorted_token), cudaFree(plan.assignment_row);
}

// The MoE block (plan, both grouped GEMMs, combine) against a host reference with the same rounding points.
void test_moe(int T, const char* name) {
    const int E = 16, K = 4, H = 256, I = 96;
    auto x = random_bf16((size_t)T * H, 1.0f);
    auto gate_up = random_bf16((size_t)E * 2 * I * H, 1.0f / std::sqrt((float)H));
    auto down = random_bf16((size_t)E * H * I, 1.0f / std::sqrt((float)I));
    auto hidden = random_bf16((size_t)T * H, 1.0f);
    std::vector<int32_t> ids((size_t)T * K), slots(T, 1);
    std::vector<float> weights((size_t)T * K);
    for (int t = 0; t < T; ++t) {
        std::vector<int> experts(E);
        for (int e = 0; e < E; ++e) experts[e] = e;
        shuffle(experts);
        for (int j = 0; j < K; ++j) {
            ids[t * K + j] = experts[j];
            weights[t * K + j] = 0.05f + 0.95f * (float)g_random.uniform();
        }
    }
    if (T > 3) slots[3] = -1, std::fill(ids.begin() + 3 * K, ids.begin() + 4 * K, -1);
    const int tile_m = moe_tile_m(T, K, E), max_tiles = moe_max_tiles(T, K, E, tile_m);
    bf16 *dx = to_device(x), *dgu = to_device(gate_up), *ddown = to_device(down), *dh = to_device(hidden);
    int32_t *dids = to_device(ids), *dslots = to_device(slots);
    float* dw = to_device(weights);
    MoePlan plan{poisoned<int32_t>(E + 1), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles), poisoned<int32_t>(max_tiles),
                 poisoned<int32_t>(1), poisoned<int32_t>((size_t)T * K), poisoned<int32_t>((size_t)T * K)};
    bf16* act = poisoned<bf16>((size_t)T * K * I);
    bf16* out = poisoned<bf16>((size_t)T * K * H);
    launch_moe_plan(0, dids, T, K, E, tile_m, plan);
    GemmScratch scratch = make_scratch(moe_scratch_floats(E, H, I, 64), moe_scratch_counters(E, H, I, 64));
    launch_moe_gate_up(0, dx, dgu, act, plan, max_tiles, tile_m, H, I, scratch);
    launch_moe_down(0, act, ddown, out, plan, max_tiles, tile_m, H, I, scratch);
    launch_moe_combine(0, dh, out, dids, dw, plan.assignment_row, dslots, T, K, H);
    auto got = to_host(dh, (size_t)T * H);

    std::vector<float> want((size_t)T * H), scale((size_t)T * H, 0.f);
    std::vector<float> a(I), y(H);
    for (int t = 0; t < T; ++t) {
        if (slots[t] < 0) {
            for (int h = 0; h < H; ++h) want[(size_t)t * H + h] = __bfloat162float(hidden[(size_t)t * H + h]);
            continue;
        }
        std::vector<int> order(K);
        for (int j = 0; j < K; ++j) order[j] = j;
        std::stable_sort(order.begin(), order.end(), [&](int p, int q) { return ids[t * K + p] < ids[t * K + q]; });
        std::vector<float> sum(H, 0.f);
        for (int j : order) {
            const int e = ids[t * K + j];
            for (int i = 0; i < I; ++i) {
                float g = 0.f, u = 0.f;
                for (int k = 0; k < H; ++k) {
                    const float xv = __bfloat162float(x[(size_t)t * H + k]);
                    g += xv * __bfloat162float(gate_up[((size_t)e * 2 * I + i) * H + k]);
                    u += xv * __bfloat162float(gate_up[((size_t)e * 2 * I + I + i) * H + k]);
                }
                g = host_bf16r(g);
                u = host_bf16r(u);
                a[i] = host_bf16r(host_bf16r(g / (1.0f + std::exp(-g))) * u);
            }
            for (int h = 0; h < H; ++h) {
                float acc = 0.f;
                for (int i = 0; i < I; ++i) acc += a[i] * __bfloat162float(down[((size_t)e * H + h) * I + i]);
                const float contribution = host_bf16r(host_bf16r(acc) * weights[t * K + j]);
                sum[h] = host_bf16r(sum[h] + contribution);
                float& s = scale[(size_t)t * H + h];
                s = std::max(s, std::max(std::fabs(contribution), std::fabs(sum[h])));
            }
        }
        for (int h = 0; h < H; ++h) {
            const float residual = __bfloat162float(hidden[(size_t)t * H + h]);
            want[(size_t)t * H + h] = host_bf16r(residual + sum[h]);
            scale[(size_t)t * H + h] = std::max(scale[(size_t)t * H + h], std::fabs(residual));
        }
    }
    compare_bf16(name, got, want, 0.08, &scale, 2.01);
    cudaFree(dx), cudaFree(dgu), cudaFree(ddown), cudaFree(dh), cudaFree(dids), cudaFree(dslots), cudaFree(dw);
    cudaFree(act), cudaFree(out);
    free_scratch(scratch);
}

void test_qk_norm_rope() {
    const int T = 5, heads = 4, kvh = 2, hd = 128, block_size = 16, layers = 2, layer = 1, blocks = 4;
    const float eps = 1e-6f;
    auto q = random_bf16((size_t)T * heads * hd, 2.0f);
    auto k = random_bf16((size_t)T * kvh * hd, 2.0f);
    auto v = random_bf16((size_t)T * kvh * hd, 2.0f);
    auto qn = random_bf16(hd, 0.1f, 1.0f), kn = random_bf16(hd, 0.1f, 1.0f);
    std::vector<int32_t> positions = {0, 1, 17, 300, 4095}, slots = {0, 5, 16, 33, -1};
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = (float)(1.0 / std::pow(1e6, (double)(2 * i) / hd));
    const size_t plane = (size_t)block_size * kvh * hd;
    std::vector<bf16> cache((size_t)blocks * layers * 2 * plane, __float2bfloat16_rn(0.f));
    // One fused projection output: each token's q, k and v side by side.
    const int stride = (heads + 2 * kvh) * hd;
    std::vector<bf16> qkv((size_t)T * stride);
    for (int t = 0; t < T; ++t) {
        std::copy(&q[(size_t)t * heads * hd], &q[(size_t)(t + 1) * heads * hd], &qkv[(size_t)t * stride]);
        std::copy(&k[(size_t)t * kvh * hd], &k[(size_t)(t + 1) * kvh * hd], &qkv[(size_t)t * stride + heads * hd]);
        std::copy(&v[(size_t)t * kvh * hd], &v[(size_t)(t + 1) * kvh * hd], &qkv[(size_t)t * stride + (heads + kvh) * hd]);
    }
    bf16 *dqkv = to_device(qkv), *dqn = to_device(qn), *dkn = to_device(kn), *dc = to_device(cache);
    int32_t *dp = to_device(positions), *ds = to_device(slots);
    float* di = to_device(inv);
    KvLayout kv{reinterpret_cast<uint8_t*>(dc), layers, kvh, hd, block_size};
    launch_qk_norm_rope_cache(0, dqkv, dqkv + heads * hd, dqkv + (heads + kvh) * hd, stride, dqn, dkn, dp, ds, di, 1.0f, eps, T, heads, kv, layer);
    auto got_qkv = to_host(dqkv, qkv.size());
    std::vector<bf16> got_q((size_t)T * heads * hd);
    for (int t = 0; t < T; ++t) std::copy(&got_qkv[(size_t)t * stride], &got_qkv[(size_t)t * stride + heads * hd], &got_q[(size_t)t * heads * hd]);
    auto got_c = to_host(dc, cache.size());
    std::vector<bf16> got;
    std::vector<float> want;
    auto rope = [&](const bf16* src, const std::vector<bf16>& w, int pos, std::vector<float>& result) {
        std::vector<float> x(hd), n(hd);
        for (int d = 0; d < hd; ++d) x[d] = __bfloat162float(src[d]);
        const float r = host_rms_inverse(x.data(), hd, eps);
        for (int d = 0; d < hd; ++d) n[d] = host_bf16r(__bfloat162float(w[d]) * host_bf16r(x[d] * r));
        for (int d = 0; d < hd; ++d) {
            const int i = d % (hd / 2);
            const float angle = inv[i] * (float)pos;
            const float c = host_bf16r(std::cos(angle)), s = host_bf16r(std::sin(angle));
            const float rot = d < hd / 2 ? -n[d + hd / 2] : n[d - hd / 2];
            result.push_back(host_bf16r(host_bf16r(n[d] * c) + host_bf16r(rot * s)));
        }
    };
    for (int t = 0; t < T; ++t) {
        if (slots[t] < 0) continue;
        for (int h = 0; h < heads; ++h) {
            rope(&q[((size_t)t * heads + h) * hd], qn, positions[t], want);
            got.insert(got.end(), &got_q[((size_t)t * heads + h) * hd], &got_q[((size_t)t * heads + h + 1) * hd]);
        }
        const int block = slots[t] / block_size, off = slots[t] % block_size;
        for (int h = 0; h < kvh; ++h) {
            rope(&k[((size_t)t * kvh + h) * hd], kn, positions[t], want);
            const bf16* kc = &got_c[((size_t)block * layers + layer) * 2 * plane + ((size_t)off * kvh + h) * hd];
            got.insert(got.end(), kc, kc + hd);
            const bf16* vc = kc + plane;
            for (int d = 0; d < hd; ++d) want.push_back(__bfloat162float(v[((size_t)t * kvh + h) * hd + d]));
            got.insert(got.end(), vc, vc + hd);
        }
    }
    compare_bf16("qk_norm_rope_cache", got, want, 0.02);
    cudaFree(dqkv), cudaFree(dqn), cudaFree(dkn), cudaFree(dc), cudaFree(dp), cudaFree(ds), cudaFree(di);
}

void test_fill() {
    const uint64_t n = 1 << 22;
    bf16* a = poisoned<bf16>(n);
    bf16* b = poisoned<bf16>(n);
    launch_fill_normal(0, a, n, 42, 0.f, 1.f);
    launch_fill_normal(0, b, n, 42, 0.f, 1.f);
    auto ha = to_host(a, n), hb = to_host(b, n);
    launch_fill_normal(0, b, n, 43, 0.f, 1.f);
    auto hc = to_host(b, n);
    double sum = 0, sq = 0;
    size_t same = 0, equal_other_seed = 0;
    for (uint64_t i = 0; i < n; ++i) {
        const double x = __bfloat162float(ha[i]);
        sum += x;
        sq += x * x;
        same += std::memcmp(&ha[i], &hb[i], 2) == 0;
        equal_other_seed += std::memcmp(&ha[i], &hc[i], 2) == 0;
    }
    const double mean = sum / n, std = std::sqrt(sq / n - mean * mean);
    char detail[160];
    std::snprintf(detail, sizeof detail, "mean %.4f std %.4f, same seed identical %s, other seed equal %.3f%%", mean, std,
                  same == n ? "yes" : "no", 100.0 * equal_other_seed / n);
    report("fill_normal", same == n && std::fabs(mean) < 0.01 && std::fabs(std - 1) < 0.01 && equal_other_seed < n / 20, detail);
    cudaFree(a), cudaFree(b);
}


// Argmax of logit rows: vocabulary 151,936 (the real head) and an odd 1,001 (the scalar path); rows with a tie (lowest
// index wins), a NaN (the first NaN wins), a maximum at the last id below the limit, one past it (ignored), and +0/-0.
void test_argmax() {
    int wrong = 0, rows_checked = 0;
    for (int vocab : {151936, 1001}) {
        const int rows = 7, limit = vocab - 37;
        auto logits = random_bf16((size_t)rows * vocab, 2.0f);
        auto at = [&](int r, int i) -> bf16& { return logits[(size_t)r * vocab + i]; };
        const bf16 big = __float2bfloat16_rn(50.f), nan = __float2bfloat16_rn(NAN);
        at(1, 900) = big, at(1, 17) = big;                     // tie: 17
        at(2, 400) = nan, at(2, 950) = nan, at(2, 10) = big;   // NaN first: 400
        at(3, limit - 1) = big;                                // the last candidate
        at(4, limit) = big, at(4, vocab - 1) = big;            // past the limit: ignored
        for (int i = 0; i < vocab; ++i) at(5, i) = __float2bfloat16_rn(i % 3 == 0 ? -0.f : -1.f);
        at(5, 700) = __float2bfloat16_rn(0.f);                 // +0 above -0
        std::vector<int> want(rows);
        for (int r = 0; r < rows; ++r) {
            int best = 0;
            for (int i = 1; i < limit; ++i) {
                const float a = __bfloat162float(at(r, i)), b = __bfloat162float(at(r, best));
                const bool better = std::isnan(a) ? !std::isnan(b) : !std::isnan(b) && (a > b || (a == b && a == 0.f && !std::signbit(a) && std::signbit(b)));
                if (better) best = i;
            }
            want[r] = best;
        }
        bf16* d = to_device(logits);
        int32_t* out = poisoned<int32_t>(rows);
        launch_argmax_rows(0, d, rows, vocab, limit, out);
        const auto got = to_host(out, rows);
        for (int r = 0; r < rows; ++r) wrong += got[r] != want[r];
        wrong += vocab == 151936 && (want[1] != 17 || want[2] != 400 || want[3] != limit - 1 || want[5] != 700);
        rows_checked += rows;
        cudaFree(d), cudaFree(out);
    }
    char detail[120];
    std::snprintf(detail, sizeof detail, "%d rows (ties, NaN, limit, signed zeros), %d wrong", rows_checked, wrong);
    report("argmax rows", wrong == 0, detail);
}

}  // namespace

namespace rr_test {
void test_attention_all();
void test_gemm_all();
}  // namespace rr_test

int main() {
    try {
        cudaDeviceProp prop;
        check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
        std::printf("kernel tests on %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
        test_rmsnorm();
        test_qk_norm_rope();
        test_attention_all();
        test_gemm_all();
        test_route(false);
        test_route(true);
        test_route_nonfinite();
        test_moe(2, "moe block, 16-row tiles");
        test_moe(150, "moe block, 64-row tiles");
        test_moe(300, "moe block, 128-row tiles");
        test_fill();
        test_argmax();
    } catch (const Failure& f) {
        std::printf("kernel tests: CUDA failure: %s\n", f.message.c_str());
        return 2;
    }
    std::printf("kernel tests: %d failure(s)\n", g_failures);
    return g_failures == 0 ? 0 : 1;
}
