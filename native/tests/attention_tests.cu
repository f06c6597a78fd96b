// Attention against a host reference with the same arithmetic (attention.cuh), and bit-for-bit the same output for a
// token however its step is made: one step or alone, decode split per block or whole, a prefill run in one tile or cut
// into chunks (a chunk of one token takes the decode path). Real shapes too: 128-dim heads, 8 query heads per KV head,
// contexts past 4K.
#include "support.cuh"


namespace rr_test {

namespace {

struct Case {
    int group, head_dim, kv_heads;
    const char* name;
    int heads() const { return group * kv_heads; }
};

struct Token {
    int seq, position;
};

// A paged cache of two layers (layer 1 is used) whose sequences own shuffled pages, and a query row per (sequence,
// position, head).
struct Fixture {
    static constexpr int kLayers = 2, kLayer = 1, kBlockSize = 16;
    Case c;
    std::vector<int> lengths;  // positions each sequence has in the cache
    int max_blocks = 0;
    size_t plane = 0;
    std::vector<bf16> cache;
    std::vector<int32_t> tables;
    std::vector<std::vector<bf16>> queries;  // [sequence * longest + position]
    int longest = 0;
    uint8_t* d_cache = nullptr;
    int32_t* d_tables = nullptr;

    Fixture(Case cs, std::vector<int> seq_lengths) : c(cs), lengths(std::move(seq_lengths)) {
        plane = (size_t)kBlockSize * c.kv_heads * c.head_dim;
        longest = *std::max_element(lengths.begin(), lengths.end());
        queries.resize(lengths.size() * longest);
        int pages = 0;
        for (int length : lengths) {
            max_blocks = std::max(max_blocks, ceil_div(length, kBlockSize));
            pages += ceil_div(length, kBlockSize);
        }
        std::vector<int32_t> order(pages);
        for (int i = 0; i < pages; ++i) order[i] = i;
        shuffle(order);
        tables.assign(lengths.size() * max_blocks, 0);
        int next = 0;
        for (size_t s = 0; s < lengths.size(); ++s)
            for (int b = 0; b < ceil_div(lengths[s], kBlockSize); ++b) tables[s * max_blocks + b] = order[next++];
        cache = random_bf16((size_t)pages * kLayers * 2 * plane, 1.0f);
        d_cache = reinterpret_cast<uint8_t*>(to_device(cache));
        d_tables = to_device(tables);
    }
    ~Fixture() {
        cudaFree(d_cache);
        cudaFree(d_tables);
    }

    const bf16* row(int seq, int position, int kvh, int which) const {
        const int page = tables[(size_t)seq * max_blocks + position / kBlockSize], offset = position % kBlockSize;
        return &cache[((size_t)page * kLayers + kLayer) * 2 * plane + which * plane + ((size_t)offset * c.kv_heads + kvh) * c.head_dim];
    }

    const std::vector<bf16>& query(int seq, int position) {
        auto& q = queries[(size_t)seq * longest + position];
        if (q.empty()) q = random_bf16((size_t)c.heads() * c.head_dim, 1.0f);
        return q;
    }

    float scale_log2() const { return 1.4426950408889634f / std::sqrt((float)c.head_dim); }

    // One step of `tokens` (a sequence's tokens consecutive); split_below as plan_attention takes it; split_grid_blocks,
    // when positive, sizes a split's grid for that many blocks whatever the contexts (as a captured decode graph does).
    // Returns the output rows [T][heads * head_dim].
    std::vector<bf16> run(const std::vector<Token>& tokens, int split_below, int split_grid_blocks = 0) {
        const int T = (int)tokens.size(), heads = c.heads(), hd = c.head_dim;
        const int64_t stride = (int64_t)(heads + 2 * c.kv_heads) * hd;
        std::vector<bf16> q((size_t)T * stride, __float2bfloat16_rn(0.f));
        std::vector<int32_t> positions(T), seqs(T), slots(T, 0);
        for (int t = 0; t < T; ++t) {
            const auto& row = query(tokens[t].seq, tokens[t].position);
            std::copy(row.begin(), row.end(), q.begin() + (size_t)t * stride);
            positions[t] = tokens[t].position;
            seqs[t] = tokens[t].seq;
        }
        const int split_blocks = max_blocks * kBlockSize / 64 + 1;
        std::vector<int32_t> lists(2 + 3 * (size_t)T), tiles(2 * (size_t)T);
        AttentionPlan plan = plan_attention(seqs.data(), positions.data(), slots.data(), T, c.group, c.kv_heads, split_below, T,
                                            split_blocks, lists.data() + 2, tiles.data());
        if (split_grid_blocks > 0) plan.max_decode_blocks = split_grid_blocks;
        lists[0] = plan.decode_tokens;
        lists[1] = plan.prefill_tiles;
        std::copy(tiles.begin(), tiles.begin() + 2 * plan.prefill_tiles, lists.begin() + 2 + plan.decode_tokens);
        int32_t* d_lists = to_device(lists);
        bf16* d_q = to_device(q);
        bf16* d_out = poisoned<bf16>((size_t)T * heads * hd);
        int32_t *d_pos = to_device(positions), *d_seq = to_device(seqs);
        const size_t partials = (size_t)T * heads * split_blocks;
        float *d_m = poisoned<float>(partials), *d_l = poisoned<float>(partials), *d_acc = poisoned<float>(partials * hd);
        const AttentionArgs a{d_q, stride, d_out, d_pos, d_seq, d_tables, max_blocks, heads, c.group, kLayer, scale_log2()};
        const KvLayout kv{d_cache, kLayers, c.kv_heads, hd, kBlockSize};
        const AttentionWork work{d_lists, d_lists + 2, d_lists + 1, d_lists + 2 + plan.decode_tokens, d_m, d_l, d_acc, split_blocks};
        launch_attention(0, a, kv, work, plan);
        auto out = to_host(d_out, (size_t)T * heads * hd);
        cudaFree(d_lists), cudaFree(d_q), cudaFree(d_out), cudaFree(d_pos), cudaFree(d_seq), cudaFree(d_m), cudaFree(d_l), cudaFree(d_acc);
        return out;
    }

    // The arithmetic of attention.cuh on the host; dot products in double.
    std::vector<float> reference(const Token& token) {
        const int heads = c.heads(), hd = c.head_dim, L = token.position + 1;
        const auto& q = query(token.seq, token.position);
        std::vector<float> out((size_t)heads * hd);
        for (int h = 0; h < heads; ++h) {
            const int kvh = h / c.group;
            float M = -INFINITY, Lsum = 0.f;
            std::vector<float> acc(hd, 0.f);
            for (int start = 0; start < L; start += 64) {
                const int end = std::min(L, start + 64);
                std::vector<float> s(end - start);
                float m = -INFINITY;
                for (int j = start; j < end; ++j) {
                    double dot = 0;
                    const bf16* k = row(token.seq, j, kvh, 0);
                    for (int d = 0; d < hd; ++d) dot += (double)__bfloat162float(q[(size_t)h * hd + d]) * __bfloat162float(k[d]);
                    s[j - start] = (float)dot * scale_log2();
                    m = std::max(m, s[j - start]);
                }
                float l = 0.f;
                std::vector<float> a(hd, 0.f);
                for (int j = start; j < end; ++j) {
                    const float p = std::exp2(s[j - start] - m);
                    l += p;
                    const float pb = host_bf16r(p);
                    const bf16* v = row(token.seq, j, kvh, 1);
                    for (int d = 0; d < hd; ++d) a[d] += pb * __bfloat162float(v[d]);
                }
                if (M == -INFINITY) {
                    M = m, Lsum = l, acc = a;
                    continue;
                }
                const float m_new = std::max(M, m), alpha = std::exp2(M - m_new), beta = std::exp2(m - m_new);
                Lsum = Lsum * alpha + l * beta;
                for (int d = 0; d < hd; ++d) acc[d] = acc[d] * alpha + a[d] * beta;
                M = m_new;
            }
            for (int d = 0; d < hd; ++d) out[(size_t)h * hd + d] = host_bf16r(acc[d] / Lsum);
        }
        return out;
    }
};

std::vector<Token> run_of(int seq, int first, int last) {
    std::vector<Token> tokens;
    for (int p = first; p <= last; ++p) tokens.push_back({seq, p});
    return tokens;
}

void append(std::vector<Token>& to, const std::vector<Token>& more) { to.insert(to.end(), more.begin(), more.end()); }

void test_case(const Case& c) {
    // Sequences: 0 a decode past 4K; 1 a prefill chunk on a cached prefix; 2, 3, 4 decodes at 0, 63 and 64; 5 a prompt.
    Fixture f(c, {4501, 201, 1, 64, 65, 10});
    std::vector<Token> step = {{0, 4500}};
    append(step, run_of(1, 60, 200));
    step.push_back({2, 0});
    step.push_back({3, 63});
    step.push_back({4, 64});
    append(step, run_of(5, 0, 9));
    const int row = c.heads() * c.head_dim;
    const auto together = f.run(step, 1 << 30);

    std::vector<bf16> got;
    std::vector<float> want;
    for (size_t t = 0; t < step.size(); ++t) {
        if (step[t].seq == 1 && step[t].position % 10 != 0) continue;  // a sample of the long prefill run
        const auto r = f.reference(step[t]);
        want.insert(want.end(), r.begin(), r.end());
        got.insert(got.end(), together.begin() + t * row, together.begin() + (t + 1) * row);
    }
    const std::vector<float> unit(want.size(), 1.0f);
    compare_bf16((std::string("attention vs reference, ") + c.name).c_str(), got, want, 0.05, &unit, 2.01);

    // The same tokens in other steps: every output row must be bit-identical to the first step's.
    std::vector<const bf16*> first(f.lengths.size() * f.longest, nullptr);
    for (size_t t = 0; t < step.size(); ++t) first[(size_t)step[t].seq * f.longest + step[t].position] = &together[t * row];
    int compared = 0, differ = 0;
    auto check = [&](const std::vector<Token>& tokens, int split_below, int split_grid_blocks = 0) {
        const auto out = f.run(tokens, split_below, split_grid_blocks);
        for (size_t t = 0; t < tokens.size(); ++t) {
            ++compared;
            differ += std::memcmp(&out[t * row], first[(size_t)tokens[t].seq * f.longest + tokens[t].position], row * sizeof(bf16)) != 0;
        }
    };
    check(step, 0);                    // decode whole, not split
    check({{0, 4500}}, 1 << 30);       // alone, split
    check({{0, 4500}}, 0);             // alone, whole
    check({{0, 4500}, {2, 0}}, 1 << 30, 1);   // split, a grid one block deep: each warp strides over the blocks
    check({{3, 63}, {0, 4500}}, 1 << 30, 6);  // split, a grid shallower than the longest context
    check({{3, 63}, {4, 64}}, 0);
    check(run_of(1, 60, 60), 1 << 30);  // a chunk of one token: the decode path
    check(run_of(1, 61, 67), 0);
    check(run_of(1, 68, 200), 0);
    check(run_of(5, 0, 0), 0);
    check(run_of(5, 1, 1), 1 << 30);
    check(run_of(5, 2, 9), 0);
    char detail[160];
    std::snprintf(detail, sizeof detail, "%d token rows in other steps, %d not bit-identical", compared, differ);
    report((std::string("attention invariance, ") + c.name).c_str(), differ == 0, detail);
}

}  // namespace

void test_attention_all() {
    for (const Case& c : {Case{8, 128, 4, "G8 hd128"}, Case{16, 128, 1, "G16 hd128"}, Case{4, 32, 2, "G4 hd32"}, Case{2, 16, 2, "G2 hd16"},
                          Case{1, 64, 2, "G1 hd64"}}) {
        attention_prepare(c.head_dim);
        test_case(c);
    }
}

}  // namespace rr_test
