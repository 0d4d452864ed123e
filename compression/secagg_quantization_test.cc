#include "compression/secagg_quantization.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "compression/hadamard.h"

namespace fedkit::compression {
namespace {

using ::testing::HasSubstr;

CompressionSpec Spec(absl::string_view text) { return *ParseCompressionSpec(text); }

// A delta of L2 norm `norm` (Gaussian direction).
std::vector<float> DeltaWithNorm(int64_t n, uint32_t seed, double norm) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  double s = 0.0;
  for (double& x : v) {
    x = normal(rng);
    s += x * x;
  }
  std::vector<float> out;
  for (double x : v) out.push_back(static_cast<float>(x * norm / std::sqrt(s)));
  return out;
}

uint64_t Mask(int bits) { return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

std::vector<uint64_t> SumMod(const std::vector<std::vector<uint64_t>>& vectors, int bits) {
  std::vector<uint64_t> sum(vectors[0].size(), 0);
  for (const auto& v : vectors) {
    for (size_t i = 0; i < v.size(); ++i) sum[i] = (sum[i] + v[i]) & Mask(bits);
  }
  return sum;
}

TEST(SecAggQuantizationTest, ChooseValidatesAndSizesTheModulus) {
  absl::StatusOr<SecAggQuantization> q =
      ChooseSecAggQuantization(Spec("quantize-rotate:8"), 1000, 1.0, 100, 1000, 5);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->modulus_bits, 8 + 10);
  EXPECT_EQ(ChooseSecAggQuantization(Spec("quantize:16"), 10, 1.0, 1, 1, 0)->modulus_bits, 16);
  EXPECT_EQ(ChooseSecAggQuantization(Spec("quantize:16"), 10, 1.0, 1, 1024, 0)->modulus_bits, 26);
  EXPECT_EQ(ChooseSecAggQuantization(Spec("quantize:16"), 10, 1.0, 1, 1025, 0)->modulus_bits, 27);
  EXPECT_EQ(
      ChooseSecAggQuantization(Spec("quantize:16"), 10, 1.0, 1, int64_t{1} << 48, 0)->modulus_bits,
      64);
  EXPECT_FALSE(
      ChooseSecAggQuantization(Spec("quantize:16"), 10, 1.0, 1, (int64_t{1} << 48) + 1, 0).ok());
  for (const char* bad : {"none", "topk:0.1", "randk:0.1", "quantize:1"}) {
    absl::Status status = ChooseSecAggQuantization(Spec(bad), 10, 1.0, 1, 1, 0).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ChooseSecAggQuantization(Spec("quantize:8"), 10, 0.0, 1, 1, 0).ok());
  EXPECT_FALSE(ChooseSecAggQuantization(Spec("quantize:8"), 10, std::nan(""), 1, 1, 0).ok());
  EXPECT_FALSE(ChooseSecAggQuantization(Spec("quantize:8"), 10, 1.0, 0, 1, 0).ok());
  EXPECT_FALSE(ChooseSecAggQuantization(Spec("quantize:8"), 10, 1.0, 1, 0, 0).ok());
  EXPECT_FALSE(ChooseSecAggQuantization(Spec("quantize:8"), 0, 1.0, 1, 1, 0).ok());
}

TEST(SecAggQuantizationTest, EncodedValuesAreInRangeAndBoundedInMagnitude) {
  const SecAggQuantization q =
      *ChooseSecAggQuantization(Spec("quantize-rotate:6"), 3000, 2.0, 50, 100, 9);
  const std::vector<float> delta = DeltaWithNorm(3000, 1, 2.0);
  const std::vector<uint64_t> encoded = *EncodeForSecAgg(q, delta, 50, 3);
  ASSERT_EQ(encoded.size(), 3001u);
  const int64_t max_level = (1 << 5) - 1;
  for (uint64_t v : encoded) {
    ASSERT_LE(v, Mask(q.modulus_bits));
    const int64_t signed_v = v >= (uint64_t{1} << (q.modulus_bits - 1))
                                 ? static_cast<int64_t>(v) - (int64_t{1} << q.modulus_bits)
                                 : static_cast<int64_t>(v);
    ASSERT_LE(std::abs(signed_v), max_level);
  }
  EXPECT_EQ(encoded.back(), static_cast<uint64_t>(max_level));  // full weight: exact
  EXPECT_EQ(*EncodeForSecAgg(q, delta, 50, 3), encoded);        // deterministic
  EXPECT_NE(*EncodeForSecAgg(q, delta, 50, 4), encoded);
}

// Several clients' encodings summed modulo 2^modulus_bits decode to their weighted sum, within a
// few quantization steps times sqrt(n).
TEST(SecAggQuantizationTest, DecodedSumIsCloseToTheWeightedSum) {
  for (const char* text : {"quantize:8", "quantize-rotate:8", "quantize-rotate:12"}) {
    const int64_t n = 2000, clients = 20, max_weight = 100;
    const double clip = 1.0;
    const SecAggQuantization q =
        *ChooseSecAggQuantization(Spec(text), n, clip, max_weight, clients, 77);
    std::vector<std::vector<uint64_t>> encoded;
    std::vector<double> truth(n, 0.0);
    double true_weight = 0.0;
    for (int u = 0; u < clients; ++u) {
      const std::vector<float> delta = DeltaWithNorm(n, 100 + u, clip * (0.5 + 0.025 * u));
      const int64_t weight = 5 * (u + 1);
      for (int64_t i = 0; i < n; ++i) truth[i] += static_cast<double>(weight) * delta[i];
      true_weight += static_cast<double>(weight);
      encoded.push_back(*EncodeForSecAgg(q, delta, weight, 1000 + u));
    }
    const SecAggQuantizedSum sum = *DecodeSecAggSum(q, SumMod(encoded, q.modulus_bits));
    // One client's step in value units is max_weight * range / (2^(bits-1) - 1), range the
    // largest of the blocks'.
    const double range = q.spec.method == CompressionMethod::kQuantizeRotate
                             ? std::min(clip, 6.0 * clip / std::sqrt(2.0))  // smallest block: 2
                             : clip;
    const double step = static_cast<double>(max_weight) * range / ((1 << (q.spec.bits - 1)) - 1);
    double worst = 0.0, error_sq = 0.0, truth_sq = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      worst = std::max(worst, std::fabs(sum.weighted_sum[i] - truth[i]));
      error_sq += std::pow(sum.weighted_sum[i] - truth[i], 2);
      truth_sq += truth[i] * truth[i];
    }
    EXPECT_LE(worst, 3.0 * step * std::sqrt(static_cast<double>(clients))) << text;
    // With rotation and 12 bits the steps are fine enough for a close estimate.
    if (q.spec.bits == 12) {
      EXPECT_LT(std::sqrt(error_sq / truth_sq), 0.02) << text;
    }
    EXPECT_NEAR(sum.total_weight, true_weight,
                static_cast<double>(max_weight) / ((1 << (q.spec.bits - 1)) - 1) * clients)
        << text;
    const std::vector<float> average = sum.Average();
    ASSERT_EQ(average.size(), static_cast<size_t>(n));
    EXPECT_NEAR(average[7], sum.weighted_sum[7] / sum.total_weight, 1e-6);
  }
}

// The rotation makes the steps finer: at 8 bits the rotated encoding's error is much smaller.
TEST(SecAggQuantizationTest, RotationReducesTheErrorForALargeDimension) {
  const int64_t n = 65536;
  auto squared_error = [&](const char* text) {
    const SecAggQuantization q = *ChooseSecAggQuantization(Spec(text), n, 1.0, 1, 1, 3);
    const std::vector<float> delta = DeltaWithNorm(n, 5, 1.0);
    const SecAggQuantizedSum sum = *DecodeSecAggSum(q, *EncodeForSecAgg(q, delta, 1, 8));
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += std::pow(sum.weighted_sum[i] - delta[i], 2);
    return s;
  };
  EXPECT_LT(squared_error("quantize-rotate:8"), 0.01 * squared_error("quantize:8"));
}

// Over many rounding seeds the mean decoded sum converges to the true one.
TEST(SecAggQuantizationTest, DecodedSumIsUnbiased) {
  const int64_t n = 64, clients = 3;
  const SecAggQuantization q =
      *ChooseSecAggQuantization(Spec("quantize-rotate:4"), n, 1.0, 10, clients, 21);
  std::vector<std::vector<float>> deltas;
  std::vector<double> truth(n, 0.0);
  for (int u = 0; u < clients; ++u) {
    deltas.push_back(DeltaWithNorm(n, 50 + u, 0.8));
    for (int64_t i = 0; i < n; ++i) truth[i] += (u + 7) * static_cast<double>(deltas[u][i]);
  }
  const int trials = 3000;
  std::vector<double> mean(n, 0.0);
  double mean_weight = 0.0;
  for (int t = 0; t < trials; ++t) {
    std::vector<std::vector<uint64_t>> encoded;
    for (int u = 0; u < clients; ++u) {
      encoded.push_back(*EncodeForSecAgg(q, deltas[u], u + 7, static_cast<uint64_t>(t * 10 + u)));
    }
    const SecAggQuantizedSum sum = *DecodeSecAggSum(q, SumMod(encoded, q.modulus_bits));
    for (int64_t i = 0; i < n; ++i) mean[i] += sum.weighted_sum[i] / trials;
    mean_weight += sum.total_weight / trials;
  }
  // Per client and coordinate the rounding's standard deviation is at most step / 2 (the step of
  // the 64-block: 10 * 0.75 / 7); the mean over trials of the sum of 3 has standard deviation
  // <= sqrt(3) * step / 2 / sqrt(trials); allow 6 of them.
  const double step = 10.0 * std::min(1.0, 6.0 / 8.0) / 7.0;
  const double tolerance =
      6.0 * std::sqrt(3.0) * step / 2.0 / std::sqrt(static_cast<double>(trials));
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(mean[i], truth[i], tolerance) << i;
  EXPECT_NEAR(mean_weight, 7 + 8 + 9, tolerance);
}

TEST(SecAggQuantizationTest, EncodeRefusesBadInput) {
  const SecAggQuantization q = *ChooseSecAggQuantization(Spec("quantize:8"), 10, 1.0, 5, 4, 0);
  const std::vector<float> delta = DeltaWithNorm(10, 1, 0.5);
  EXPECT_FALSE(EncodeForSecAgg(q, DeltaWithNorm(9, 1, 0.5), 1, 0).ok());
  EXPECT_FALSE(EncodeForSecAgg(q, delta, 6, 0).ok());
  EXPECT_FALSE(EncodeForSecAgg(q, delta, -1, 0).ok());
  EXPECT_TRUE(EncodeForSecAgg(q, delta, 0, 0).ok());
  std::vector<float> bad = delta;
  bad[2] = std::numeric_limits<float>::infinity();
  absl::Status status = EncodeForSecAgg(q, bad, 1, 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("delta[2]"));
  SecAggQuantization tampered = q;
  tampered.modulus_bits = 9;  // too small for 4 inputs
  EXPECT_FALSE(EncodeForSecAgg(tampered, delta, 1, 0).ok());
}

TEST(SecAggQuantizationTest, DecodeRefusesSumsNoInputsCouldMake) {
  const SecAggQuantization q = *ChooseSecAggQuantization(Spec("quantize:8"), 3, 1.0, 5, 4, 0);
  // modulus 10 bits; one client's levels within +/-127, four clients' within +/-508.
  EXPECT_TRUE(DecodeSecAggSum(q, {508, 1024 - 508, 0, 508}).ok());
  EXPECT_FALSE(DecodeSecAggSum(q, {509, 0, 0, 10}).ok());  // beyond 4 * 127
  EXPECT_FALSE(DecodeSecAggSum(q, {0, 0, 0, 1023}).ok());  // weight -1
  EXPECT_FALSE(DecodeSecAggSum(q, {1024, 0, 0, 1}).ok());  // outside the modulus
  EXPECT_FALSE(DecodeSecAggSum(q, {0, 0, 1}).ok());        // short
  const SecAggQuantizedSum zero = *DecodeSecAggSum(q, {0, 0, 0, 0});
  EXPECT_TRUE(zero.Average().empty());
}

TEST(SecAggQuantizationTest, RandomKIndicesIsWhatTheEncoderUses) {
  // The header re-exports the generator: the same positions for the same seed.
  EXPECT_EQ(RandomKIndices(5, 100, 10), RandomKIndices(5, 100, 10));
  EXPECT_EQ(RandomKIndices(5, 100, 10).size(), 10u);
}

}  // namespace
}  // namespace fedkit::compression
