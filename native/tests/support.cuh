// Helpers shared by the kernel tests: a reproducible generator, device buffers, and comparison against host references.
#pragma once

#include "gemm.cuh"
#include "kernels.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace rr_test {

using namespace rr;

inline int g_failures = 0;

// SplitMix64: a small reproducible generator (the C++ <random> header does not compile with every nvcc/host pair).
struct Random {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    double uniform() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
    float normal() { return (float)(std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform())); }
    int below(int n) { return (int)(next() % (uint64_t)n); }
};
inline Random g_random{20261125};

template <typename T>
inline void shuffle(std::vector<T>& v) {
    for (int i = (int)v.size() - 1; i > 0; --i) std::swap(v[i], v[g_random.below(i + 1)]);
}

inline float host_bf16r(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

inline std::vector<bf16> random_bf16(size_t n, float std, float mean = 0.f) {
    std::vector<bf16> v(n);
    for (auto& x : v) x = __float2bfloat16_rn(mean + std * g_random.normal());
    return v;
}

template <typename T>
T* to_device(const std::vector<T>& host) {
    T* d = nullptr;
    check_cuda(cudaMalloc(&d, std::max<size_t>(1, host.size()) * sizeof(T)), "cudaMalloc");
    check_cuda(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    return d;
}

template <typename T>
T* poisoned(size_t n) {
    T* d = nullptr;
    check_cuda(cudaMalloc(&d, std::max<size_t>(1, n) * sizeof(T)), "cudaMalloc");
    check_cuda(cudaMemset(d, 0xFF, n * sizeof(T)), "cudaMemset");  // bf16 NaN, int -1
    return d;
}

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
    std::vector<T> h(n);
    check_cuda(cudaDeviceSynchronize(), "kernel");
    check_cuda(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return h;
}

inline void report(const char* name, bool ok, const std::string& detail) {
    std::printf("%-34s %s  %s\n", name, ok ? "PASS" : "FAIL", detail.c_str());
    if (!ok) ++g_failures;
}

// Compares bf16 outputs with a reference that rounds at the same points: values may differ only where fp32
// summation order moved a result across a bf16 rounding boundary, and rarely. A difference is measured in bf16 steps
// of the value's scale: the value itself, or `scale` (the largest operand of a final sum, whose one-step change
// survives cancellation); up to `max_steps` (two roundings in a row may each move by one).
inline void compare_bf16(const char* name, const std::vector<bf16>& got, const std::vector<float>& want, double max_mismatch_fraction,
                  const std::vector<float>* scale = nullptr, double max_steps = 1.01) {
    size_t mismatches = 0, bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const float g = __bfloat162float(got[i]), w = want[i];
        if (std::isnan(g)) {
            ++bad;
            continue;
        }
        if (g != w) {
            ++mismatches;
            const double magnitude = std::max(std::fabs((double)w), scale ? (double)(*scale)[i] : 0.0);
            const double step = std::max(magnitude * std::ldexp(1.0, -7), 1e-30);
            const double steps = std::fabs((double)g - w) / step;
            worst = std::max(worst, steps);
            if (steps > max_steps) ++bad;
        }
    }
    const double fraction = (double)mismatches / got.size();
    char detail[200];
    std::snprintf(detail, sizeof detail, "%zu values, %zu differ (%.4f%%), worst %.2f bf16 steps, %zu beyond one step or unwritten",
                  got.size(), mismatches, 100 * fraction, worst, bad);
    report(name, bad == 0 && fraction <= max_mismatch_fraction, detail);
}


// Split-GEMM scratch as a model allocates it for these shapes (its counters zeroed).
inline GemmScratch make_scratch(size_t floats, int counters) {
    GemmScratch scratch;
    check_cuda(cudaMalloc(&scratch.partials, floats * sizeof(float)), "cudaMalloc(scratch)");
    check_cuda(cudaMalloc(&scratch.counters, (size_t)counters * sizeof(int)), "cudaMalloc(counters)");
    check_cuda(cudaMemset(scratch.counters, 0, (size_t)counters * sizeof(int)), "cudaMemset(counters)");
    scratch.capacity = floats;
    scratch.counter_capacity = counters;
    scratch.split_below_tiles = 1 << 30;
    return scratch;
}

inline void free_scratch(GemmScratch& scratch) {
    cudaFree(scratch.partials);
    cudaFree(scratch.counters);
}

}  // namespace rr_test
