// ExactSum::Add per value (aggregation/exact_sum.h) side by side with what it replaced: a reference
// written here of the first exact sum (each term rounded with std::llround at a scale that keeps it
// within 2^62, then one absl::int128 addition per value), and the kernel alone, with the run-time
// choice of instruction set and in its portable build. Values: an mlp-sized (199,210) delta of
// N(0, 0.01^2) floats, bound 1. Run: build/bin/fedkit_exact_sum_bench.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "absl/numeric/int128.h"
#include "aggregation/exact_sum.h"
#include "aggregation/exact_sum_kernels.h"

namespace fedkit::aggregation {
namespace {

constexpr int64_t kDim = 199210;

std::vector<float> Values() {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> v(kDim);
  for (float& x : v) x = normal(rng);
  return v;
}

void BM_ExactSumAdd(benchmark::State& state) {
  const std::vector<float> values = Values();
  ExactSum sum(kDim, *ChooseFixedPoint(1.0));
  for (auto _ : state) benchmark::DoNotOptimize(sum.Add(values));
  state.SetItemsProcessed(state.iterations() * kDim);
}
BENCHMARK(BM_ExactSumAdd);

void BM_Int128Reference(benchmark::State& state) {
  const std::vector<float> values = Values();
  const double scale = std::ldexp(1.0, 62);  // |term| <= 1 -> |round(term * scale)| <= 2^62
  std::vector<absl::int128> sums(kDim);
  for (auto _ : state) {
    for (int64_t i = 0; i < kDim; ++i) {
      sums[i] += absl::int128(std::llround(static_cast<double>(values[i]) * scale));
    }
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetItemsProcessed(state.iterations() * kDim);
}
BENCHMARK(BM_Int128Reference);

template <bool kPortable>
void BM_Kernel(benchmark::State& state) {
  const std::vector<float> values = Values();
  const double scale = ChooseFixedPoint(1.0)->scale;
  std::vector<int64_t> high(kDim), low(kDim);
  for (auto _ : state) {
    if (kPortable) {
      internal::AddRoundedTermsPortable(values, 1.0, scale, high.data(), low.data());
    } else {
      internal::AddRoundedTerms(values, 1.0, scale, high.data(), low.data());
    }
    benchmark::DoNotOptimize(high.data());
    benchmark::DoNotOptimize(low.data());
  }
  state.SetItemsProcessed(state.iterations() * kDim);
  state.SetLabel(kPortable ? "portable" : (internal::UsesWiderVectors() ? "avx2" : "portable"));
}
BENCHMARK(BM_Kernel<false>)->Name("BM_KernelDispatched");
BENCHMARK(BM_Kernel<true>)->Name("BM_KernelPortable");

}  // namespace
}  // namespace fedkit::aggregation

BENCHMARK_MAIN();
