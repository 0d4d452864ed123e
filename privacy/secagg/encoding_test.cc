#include "privacy/secagg/encoding.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::secagg {
namespace {

using ::testing::HasSubstr;

uint64_t Mask(int bits) { return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// Adds encoded vectors mod 2^bits, as the masked sum reveals them.
void AddInto(std::vector<uint64_t>& sum, const std::vector<uint64_t>& v, int bits) {
  if (sum.empty()) sum.assign(v.size(), 0);
  ASSERT_EQ(sum.size(), v.size());
  for (size_t i = 0; i < v.size(); ++i) sum[i] = (sum[i] + v[i]) & Mask(bits);
}

class EncodingBitsTest : public ::testing::TestWithParam<int> {};

TEST_P(EncodingBitsTest, RoundTripIsWithinOneStepPerCoordinate) {
  const int bits = GetParam();
  auto encoding = ChooseEncoding(bits, 100, 1.0, 10);
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  std::vector<float> delta(50);
  double sum_sq = 0;
  for (size_t i = 0; i < delta.size(); ++i) {
    delta[i] = static_cast<float>(std::sin(0.7 * i) * ((i % 3 == 0) ? -1 : 1));
    sum_sq += static_cast<double>(delta[i]) * delta[i];
  }
  for (float& x : delta) x = static_cast<float>(x / std::sqrt(sum_sq) * 0.999);
  const int64_t weight = 7;
  auto encoded = EncodeWeightedUpdate(*encoding, delta, weight, /*rounding_seed=*/11);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(encoded->size(), delta.size() + 1);
  for (uint64_t v : *encoded) EXPECT_EQ(v & ~Mask(bits), 0u);
  EXPECT_EQ(encoded->back(), 7u);
  auto decoded = DecodeSum(*encoding, *encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->total_weight, weight);
  ASSERT_EQ(decoded->weighted_sum.size(), delta.size());
  // One quantization step, plus double rounding: with 64 bits the step (~1e-16) is below what a
  // double carries, so precision is then limited by the 53-bit arithmetic, not the modulus.
  const double step = 1.0 / encoding->scale + 1e-15;
  const std::vector<float> average = decoded->Average();
  ASSERT_EQ(average.size(), delta.size());
  for (size_t i = 0; i < delta.size(); ++i) {
    EXPECT_NEAR(decoded->weighted_sum[i], weight * static_cast<double>(delta[i]), step) << i;
    EXPECT_NEAR(average[i], delta[i], step / weight + 1e-7) << i;
  }
}

TEST_P(EncodingBitsTest, NegativeValuesDecode) {
  const int bits = GetParam();
  auto encoding = ChooseEncoding(bits, 10, 2.0, 5);
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  const std::vector<float> a = {-0.5f, 0.25f, -1.0f, 0.0f};
  const std::vector<float> b = {0.125f, -0.75f, -0.5f, -0.001f};
  auto ea = EncodeWeightedUpdate(*encoding, a, 3, 1);
  auto eb = EncodeWeightedUpdate(*encoding, b, 2, 2);
  ASSERT_TRUE(ea.ok() && eb.ok());
  // Negative coordinates wrap to the top of the modulus.
  EXPECT_GE((*ea)[0], uint64_t{1} << (bits - 1));
  const double step = 1.0 / encoding->scale;
  auto alone = DecodeSum(*encoding, *ea);
  ASSERT_TRUE(alone.ok());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(alone->weighted_sum[i], 3.0 * a[i], step);
  std::vector<uint64_t> sum;
  AddInto(sum, *ea, bits);
  AddInto(sum, *eb, bits);
  auto decoded = DecodeSum(*encoding, sum);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->total_weight, 5);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(decoded->weighted_sum[i], 3.0 * a[i] + 2.0 * b[i], 2 * step) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(ModulusBits, EncodingBitsTest, ::testing::Values(32, 64));

TEST(EncodingTest, StochasticRoundingIsUnbiased) {
  // Power-of-two scale: w * x * scale is exact, so its fractional part is known exactly.
  FixedPointEncoding encoding;
  encoding.modulus_bits = 32;
  encoding.scale = 1024.0;
  encoding.clip_norm = 1.0;
  encoding.max_weight = 1;
  encoding.max_clients = 1;
  const float x = 5.3f / 1024.0f;
  const double value = static_cast<double>(x) * 1024.0;  // 5.3 up to float rounding
  const double fraction = value - std::floor(value);
  ASSERT_NEAR(fraction, 0.3, 1e-5);
  const std::vector<float> delta(1000, x);  // norm 0.16
  const int kSeeds = 100;
  double sum = 0;
  int64_t samples = 0;
  for (int seed = 0; seed < kSeeds; ++seed) {
    auto encoded = EncodeWeightedUpdate(encoding, delta, 1, seed);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    for (size_t i = 0; i + 1 < encoded->size(); ++i) {
      const uint64_t q = (*encoded)[i];
      ASSERT_TRUE(q == 5 || q == 6) << q;
      sum += static_cast<double>(q);
      ++samples;
    }
  }
  // The mean of N Bernoulli(p) has standard deviation sqrt(p (1 - p) / N) = 0.00145 for
  // N = 100,000; 5 of them is a 1-in-3.5-million false failure.
  const double tolerance = 5 * std::sqrt(fraction * (1 - fraction) / samples);
  EXPECT_NEAR(sum / samples, value, tolerance);
  // Sanity: rounding to nearest would be off by 0.3, far outside the tolerance.
  EXPECT_LT(tolerance, 0.01);
}

TEST(EncodingTest, RoundingIsDeterministicInTheSeed) {
  auto encoding = ChooseEncoding(32, 10, 1.0, 1);
  ASSERT_TRUE(encoding.ok());
  std::vector<float> delta(64);
  for (size_t i = 0; i < delta.size(); ++i) delta[i] = 0.1f * std::cos(static_cast<float>(i));
  auto a = EncodeWeightedUpdate(*encoding, delta, 1, 42);
  auto b = EncodeWeightedUpdate(*encoding, delta, 1, 42);
  auto c = EncodeWeightedUpdate(*encoding, delta, 1, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

// The headroom guarantee: max_clients worst-case vectors (a coordinate at +-clip_norm, or just over
// it within the norm tolerance, at max weight) sum without wrapping.
struct HeadroomCase {
  int bits;
  int64_t max_clients;
  double clip_norm;
  int64_t max_weight;
};

class EncodingHeadroomTest : public ::testing::TestWithParam<HeadroomCase> {};

TEST_P(EncodingHeadroomTest, WorstCaseSumDoesNotWrap) {
  const HeadroomCase& c = GetParam();
  auto encoding = ChooseEncoding(c.bits, c.max_clients, c.clip_norm, c.max_weight);
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  // The scale is the largest the constraint allows (up to rounding).
  const double limit = std::ldexp(1.0, c.bits - 1) - 1;
  const double best = (limit / c.max_clients - 1) / (c.max_weight * c.clip_norm);
  EXPECT_LE(encoding->scale, best * (1 + 1e-12));
  EXPECT_GE(encoding->scale, best * (1 - 1e-12));

  const float at_clip = static_cast<float>(c.clip_norm);
  // Over the clip but inside the 1e-5 relative norm tolerance.
  const float over_clip = static_cast<float>(c.clip_norm * (1 + 8e-6));
  for (float magnitude : {at_clip, over_clip}) {
    for (float sign : {1.0f, -1.0f}) {
      // Two coordinates, each taking the full norm in turn, so both see worst cases.
      std::vector<uint64_t> sum;
      for (int64_t client = 0; client < c.max_clients; ++client) {
        std::vector<float> delta = {0.0f, 0.0f};
        delta[client % 2] = sign * magnitude;
        auto encoded = EncodeWeightedUpdate(*encoding, delta, c.max_weight, client);
        ASSERT_TRUE(encoded.ok()) << encoded.status();
        AddInto(sum, *encoded, c.bits);
      }
      auto decoded = DecodeSum(*encoding, sum);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(decoded->total_weight, c.max_clients * c.max_weight);
      for (int i = 0; i < 2; ++i) {
        const int64_t clients = c.max_clients / 2 + (i == 0 ? c.max_clients % 2 : 0);
        // Encoding clamps coordinates to clip_norm (keeping the headroom).
        const double effective = std::min<double>(magnitude, c.clip_norm);
        const double expected = sign * static_cast<double>(clients * c.max_weight) * effective;
        // Each client's rounding is within one step; wrapping would be off by ~2^bits / scale.
        EXPECT_NEAR(decoded->weighted_sum[i], expected,
                    clients / encoding->scale + 1e-9 * std::abs(expected))
            << "coordinate " << i << " magnitude " << magnitude << " sign " << sign;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, EncodingHeadroomTest,
                         ::testing::Values(HeadroomCase{16, 4, 1.0, 1}, HeadroomCase{16, 3, 0.5, 2},
                                           HeadroomCase{32, 1000, 1.0, 100},
                                           HeadroomCase{32, 777, 3.7, 13},
                                           HeadroomCase{64, 20000, 10.0, 1000000}));

TEST(ChooseEncodingTest, RejectsImpossibleConfigurationsWithAReason) {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(ChooseEncoding(7, 10, 1.0, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(65, 10, 1.0, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 0, 1.0, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 10, 0.0, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 10, -1.0, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 10, NAN, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 10, INFINITY, 1).status().code(), kInvalid);
  EXPECT_EQ(ChooseEncoding(32, 10, 1.0, 0).status().code(), kInvalid);

  // The weight coordinate alone overflows: 1000 * 100 > 2^15 - 1.
  auto weights = ChooseEncoding(16, 1000, 1.0, 100);
  EXPECT_EQ(weights.status().code(), kInvalid);
  EXPECT_THAT(weights.status().message(), HasSubstr("max_clients * max_weight"));
  EXPECT_THAT(weights.status().message(), HasSubstr("modulus_bits"));

  // Fits, but 2^31 / (10^6 * 10) gives about 214 steps per clip_norm, fewer than 1024.
  auto coarse = ChooseEncoding(32, 1000000, 1.0, 10);
  EXPECT_EQ(coarse.status().code(), kInvalid);
  EXPECT_THAT(coarse.status().message(), HasSubstr("coarser"));
  EXPECT_THAT(coarse.status().message(), HasSubstr("increase modulus_bits"));
  EXPECT_TRUE(ChooseEncoding(64, 1000000, 1.0, 10).ok());

  // The step is relative to clip_norm, so clip_norm alone never makes it too coarse.
  EXPECT_TRUE(ChooseEncoding(32, 1000, 1e-6, 10).ok());
  EXPECT_TRUE(ChooseEncoding(32, 1000, 1e6, 10).ok());
}

// The coordinator's default with --clip-norm 5 --secagg secagg+: 10 clients of weight up to 2^20
// do not fit 32 bits at a fine step, so the modulus is derived, the smallest that does.
TEST(SmallestModulusBitsTest, IsTheFirstModulusChooseEncodingAccepts) {
  absl::StatusOr<int> bits = SmallestModulusBits(32, 10, 5.0, 1 << 20);
  ASSERT_TRUE(bits.ok()) << bits.status();
  EXPECT_GT(*bits, 32);
  EXPECT_TRUE(ChooseEncoding(*bits, 10, 5.0, 1 << 20).ok());
  EXPECT_FALSE(ChooseEncoding(*bits - 1, 10, 5.0, 1 << 20).ok());
  // Already fits: the floor is kept.
  EXPECT_EQ(*SmallestModulusBits(32, 10, 5.0, 1), 32);
  // Nothing fits: the 64-bit error.
  EXPECT_EQ(SmallestModulusBits(32, int64_t{1} << 40, 1.0, int64_t{1} << 30).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EncodeWeightedUpdateTest, RejectsBadInput) {
  auto encoding = ChooseEncoding(32, 10, 1.0, 5);
  ASSERT_TRUE(encoding.ok());
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const std::vector<float> ok = {0.6f, 0.8f};  // norm 1
  EXPECT_TRUE(EncodeWeightedUpdate(*encoding, ok, 5, 0).ok());
  EXPECT_TRUE(EncodeWeightedUpdate(*encoding, ok, 0, 0).ok());
  EXPECT_TRUE(EncodeWeightedUpdate(*encoding, {}, 1, 0).ok());
  const std::vector<float> just_over = {static_cast<float>(1 + 5e-6)};
  EXPECT_TRUE(EncodeWeightedUpdate(*encoding, just_over, 1, 0).ok());

  auto over = EncodeWeightedUpdate(*encoding, std::vector<float>{0.6f, 0.81f}, 1, 0);
  EXPECT_EQ(over.status().code(), kInvalid);
  EXPECT_THAT(over.status().message(), HasSubstr("clip"));
  EXPECT_EQ(EncodeWeightedUpdate(*encoding, std::vector<float>{1.0001f}, 1, 0).status().code(),
            kInvalid);
  EXPECT_EQ(EncodeWeightedUpdate(*encoding, std::vector<float>{0.1f, NAN}, 1, 0).status().code(),
            kInvalid);
  EXPECT_EQ(
      EncodeWeightedUpdate(*encoding, std::vector<float>{INFINITY, 0.0f}, 1, 0).status().code(),
      kInvalid);
  EXPECT_EQ(EncodeWeightedUpdate(*encoding, ok, -1, 0).status().code(), kInvalid);
  EXPECT_EQ(EncodeWeightedUpdate(*encoding, ok, 6, 0).status().code(), kInvalid);

  // A hand-built encoding that would let the sum wrap is refused.
  FixedPointEncoding unsafe = *encoding;
  unsafe.scale *= 2;
  EXPECT_EQ(EncodeWeightedUpdate(unsafe, ok, 1, 0).status().code(), kInvalid);
  FixedPointEncoding unset;
  EXPECT_EQ(EncodeWeightedUpdate(unset, ok, 1, 0).status().code(), kInvalid);
}

TEST(DecodeSumTest, RejectsMalformedSums) {
  auto encoding = ChooseEncoding(32, 10, 1.0, 5);
  ASSERT_TRUE(encoding.ok());
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(DecodeSum(*encoding, {}).status().code(), kInvalid);
  const std::vector<uint64_t> too_big = {uint64_t{1} << 32, 1};
  EXPECT_EQ(DecodeSum(*encoding, too_big).status().code(), kInvalid);
  const std::vector<uint64_t> negative_weight = {0, 0xFFFFFFFFu};
  auto wrapped = DecodeSum(*encoding, negative_weight);
  EXPECT_EQ(wrapped.status().code(), kInvalid);
  EXPECT_THAT(wrapped.status().message(), HasSubstr("wrapped"));
}

TEST(DecodeSumTest, AverageIsTheWeightedMean) {
  auto encoding = ChooseEncoding(32, 10, 1.0, 10);
  ASSERT_TRUE(encoding.ok());
  auto a = EncodeWeightedUpdate(*encoding, std::vector<float>{1.0f, 0.0f}, 1, 1);
  auto b = EncodeWeightedUpdate(*encoding, std::vector<float>{0.0f, -1.0f}, 3, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<uint64_t> sum;
  AddInto(sum, *a, 32);
  AddInto(sum, *b, 32);
  auto decoded = DecodeSum(*encoding, sum);
  ASSERT_TRUE(decoded.ok());
  const std::vector<float> average = decoded->Average();
  ASSERT_EQ(average.size(), 2u);
  EXPECT_NEAR(average[0], 0.25, 1e-4);
  EXPECT_NEAR(average[1], -0.75, 1e-4);

  auto zero = EncodeWeightedUpdate(*encoding, std::vector<float>{0.5f}, 0, 3);
  ASSERT_TRUE(zero.ok());
  auto empty = DecodeSum(*encoding, *zero);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->total_weight, 0);
  EXPECT_DOUBLE_EQ(empty->weighted_sum[0], 0.0);
  EXPECT_TRUE(empty->Average().empty());
}

}  // namespace
}  // namespace fedkit::secagg
