// Encode and decode cost of compression/'s codecs for an mlp-sized update (199,210 values of
// N(0, 0.01^2)), per method, against the cost of copying the float32 vector (memcpy), and the bytes
// each method sends (counter "bytes"). Encoding includes the error-feedback bookkeeping (top-k,
// random-k) and the rotation (quantize-rotate); the decode benchmarks also report the relative L2
// error of one decoded upload (counter "rel_error"). Run: build/bin/fedkit_compression_bench.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compression/download_codec.h"
#include "compression/spec.h"
#include "compression/update_codec.h"

namespace fedkit::compression {
namespace {

constexpr int64_t kDim = 199210;

std::vector<float> Values() {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> v(kDim);
  for (float& x : v) x = normal(rng);
  return v;
}

void BM_Memcpy(benchmark::State& state) {
  const std::vector<float> values = Values();
  std::string out(4 * kDim, '\0');
  for (auto _ : state) {
    std::memcpy(out.data(), values.data(), 4 * kDim);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kDim);
  state.counters["bytes"] = static_cast<double>(4 * kDim);
}
BENCHMARK(BM_Memcpy);

void BM_Encode(benchmark::State& state, const char* text) {
  const std::vector<float> values = Values();
  const CompressionSpec spec = *ParseCompressionSpec(text);
  UpdateEncoder encoder = *UpdateEncoder::Create(spec, kDim);
  uint64_t seed = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::string> encoded = encoder.Encode(values, 0.0, ++seed);
    bytes = encoded->size();
    benchmark::DoNotOptimize(encoded->data());
  }
  state.SetItemsProcessed(state.iterations() * kDim);
  state.counters["bytes"] = static_cast<double>(bytes);
}

void BM_Decode(benchmark::State& state, const char* text) {
  const std::vector<float> values = Values();
  const CompressionSpec spec = *ParseCompressionSpec(text);
  UpdateEncoder encoder = *UpdateEncoder::Create(spec, kDim);
  const std::string encoded = *encoder.Encode(values, 0.0, 1);
  for (auto _ : state) {
    absl::StatusOr<std::vector<float>> decoded = DecodeUpdate(spec, encoded, kDim);
    benchmark::DoNotOptimize(decoded->data());
  }
  state.SetItemsProcessed(state.iterations() * kDim);
  state.counters["bytes"] = static_cast<double>(encoded.size());
  // ||decoded - values|| / ||values|| of one upload (no error feedback yet: its first round).
  const std::vector<float> decoded = *DecodeUpdate(spec, encoded, kDim);
  double error = 0.0, norm = 0.0;
  for (int64_t i = 0; i < kDim; ++i) {
    error += std::pow(static_cast<double>(decoded[i]) - values[i], 2);
    norm += std::pow(static_cast<double>(values[i]), 2);
  }
  state.counters["rel_error"] = std::sqrt(error / norm);
}

#define FEDKIT_CODEC_BENCH(name, text)      \
  BENCHMARK_CAPTURE(BM_Encode, name, text); \
  BENCHMARK_CAPTURE(BM_Decode, name, text)

FEDKIT_CODEC_BENCH(none, "none");
FEDKIT_CODEC_BENCH(quantize_8, "quantize:8");
FEDKIT_CODEC_BENCH(quantize_4, "quantize:4");
FEDKIT_CODEC_BENCH(quantize_rotate_8, "quantize-rotate:8");
FEDKIT_CODEC_BENCH(quantize_rotate_2, "quantize-rotate:2");
FEDKIT_CODEC_BENCH(topk_0_1, "topk:0.1");
FEDKIT_CODEC_BENCH(topk_0_01, "topk:0.01");
FEDKIT_CODEC_BENCH(randk_0_01, "randk:0.01");

void BM_Download(benchmark::State& state, DownloadEncoding encoding, bool decode) {
  const std::vector<float> values = Values();
  const std::string encoded = *EncodeDownload(encoding, values);
  for (auto _ : state) {
    if (decode) {
      absl::StatusOr<std::vector<float>> decoded = DecodeDownload(encoding, encoded, kDim);
      benchmark::DoNotOptimize(decoded->data());
    } else {
      absl::StatusOr<std::string> again = EncodeDownload(encoding, values);
      benchmark::DoNotOptimize(again->data());
    }
  }
  state.SetItemsProcessed(state.iterations() * kDim);
  state.counters["bytes"] = static_cast<double>(encoded.size());
}
BENCHMARK_CAPTURE(BM_Download, encode_float16, DownloadEncoding::kFloat16, false);
BENCHMARK_CAPTURE(BM_Download, decode_float16, DownloadEncoding::kFloat16, true);
BENCHMARK_CAPTURE(BM_Download, encode_quantize8, DownloadEncoding::kQuantize8, false);
BENCHMARK_CAPTURE(BM_Download, decode_quantize8, DownloadEncoding::kQuantize8, true);

}  // namespace
}  // namespace fedkit::compression
BENCHMARK_MAIN();
