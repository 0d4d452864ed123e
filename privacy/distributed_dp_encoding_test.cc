#include "privacy/distributed_dp_encoding.h"

#include <cmath>
#include <vector>

#include "core/seeds.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/adaptive_clipping.h"

namespace fedkit::privacy {
namespace {

using ::testing::HasSubstr;

// Sums encoded vectors mod 2^bits, as secure aggregation does.
void AddModular(std::vector<uint64_t>& sum, const std::vector<uint64_t>& v, int bits) {
  const uint64_t mask = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  if (sum.empty()) sum.assign(v.size(), 0);
  for (size_t i = 0; i < v.size(); ++i) sum[i] = (sum[i] + v[i]) & mask;
}

TEST(ChooseDistributedDpEncodingTest, FillsTheModulusWithoutRoomToWrap) {
  DistributedDpEncodingOptions options;
  options.modulus_bits = 32;
  options.max_clients = 100;
  options.dim = 200000;
  options.noise_multiplier = 1.0;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->min_surviving_clients, 100);
  // 100 clients of magnitude at most max_client_magnitude fit in 31 bits, and the scale is
  // large: the rounding's sqrt(d) = 447 is < 0.1% of it.
  EXPECT_LE(100 * e->max_client_magnitude, (int64_t{1} << 31) - 1);
  EXPECT_GT(e->scaled_clip, 1e6);
  EXPECT_GE(e->effective_noise_multiplier, 1.0);
  EXPECT_LT(e->effective_noise_multiplier, 1.0 + 1e-9);
  EXPECT_NEAR(e->value_noise_multiplier, 1.0, 1e-3);  // Delta_v / scaled_clip - 1 < 1e-3
  EXPECT_EQ(e->tau_times_dim, 0.0);
  // Tight: a slightly larger scale would not fit (bisection to ~1e-9 relative).
  EXPECT_GT(100 * e->max_client_magnitude, 0.999 * ((int64_t{1} << 31) - 1));

  // Dropout tolerance: every client adds more noise, sized for n_min survivors.
  options.dropout_tolerance = 0.2;
  absl::StatusOr<DistributedDpEncoding> tolerant = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(tolerant.ok()) << tolerant.status();
  EXPECT_EQ(tolerant->min_surviving_clients, 80);
  EXPECT_NEAR(
      tolerant->local_variance.ToDouble() * 80 / (tolerant->sensitivity * tolerant->sensitivity),
      1.0, 1e-6);
}

TEST(ChooseDistributedDpEncodingTest, CountCoordinateRealisesTheAdaptiveClippingSplit) {
  DistributedDpEncodingOptions options;
  options.max_clients = 100;
  options.dim = 10000;
  options.noise_multiplier = 1.0;
  options.with_count = true;
  options.clipped_count_stddev = 5.0;  // m / 20
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->length(), 10001);
  EXPECT_GT(e->count_half_step, 1000);
  // The count gets sigma_b and the updates the value noise multiplier of Andrew et al.'s split
  // (up to the integer H and the rounding's sqrt(d) / scaled_clip).
  EXPECT_NEAR(e->count_noise_stddev, 5.0, 5.0 * 1e-3);
  const double z_delta = *ValueNoiseMultiplier(1.0, 5.0);
  EXPECT_NEAR(e->value_noise_multiplier, z_delta, z_delta * 1e-3);
  EXPECT_GE(e->effective_noise_multiplier, 1.0);

  options.clipped_count_stddev = 0.5;  // z >= 2 sigma_b
  EXPECT_THAT(ChooseDistributedDpEncoding(options).status().message(), HasSubstr("sigma_b"));
}

TEST(ChooseDistributedDpEncodingTest, RefusesAModulusTooSmallForTheRounding) {
  DistributedDpEncodingOptions options;
  options.modulus_bits = 16;
  options.max_clients = 100;
  options.dim = 10000;
  options.noise_multiplier = 1.0;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("increase modulus_bits"));
  options.modulus_bits = 64;
  EXPECT_TRUE(ChooseDistributedDpEncoding(options).ok());
  options.max_clients = 0;
  EXPECT_FALSE(ChooseDistributedDpEncoding(options).ok());
}

// Without noise the encoding is a unit-weight fixed-point sum: the decoded sum equals the sum of
// the clipped updates up to the rounding, and the count is exact.
TEST(DistributedDpEncodingTest, WithoutNoiseDecodesTheSumOfClippedUpdatesAndTheExactCount) {
  DistributedDpEncodingOptions options;
  options.max_clients = 5;
  options.dim = 3;
  options.with_count = true;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->count_half_step, 1);
  const double clip = 2.0;
  const std::vector<std::vector<float>> updates = {
      {1, 0, 0}, {0, -3, 4} /* norm 5: clipped to 2 */, {0.5, 0.5, -0.5}, {0, 0, 0}, {-2, 0, 0}};
  const std::vector<bool> bits = {true, false, true, true, true};
  std::vector<uint64_t> sum;
  std::vector<double> expected(3, 0.0);
  for (size_t u = 0; u < updates.size(); ++u) {
    SeededRandomSource rounding(u), noise(100 + u);
    absl::StatusOr<std::vector<uint64_t>> v =
        EncodeDistributedDpUpdate(*e, updates[u], clip, bits[u], rounding, noise);
    ASSERT_TRUE(v.ok()) << v.status();
    AddModular(sum, *v, e->modulus_bits);
    const double norm = u == 1 ? 5.0 : 0.0;
    for (int i = 0; i < 3; ++i) expected[i] += updates[u][i] * (norm > clip ? clip / norm : 1.0);
  }
  absl::StatusOr<DistributedDpSum> decoded = DecodeDistributedDpSum(*e, sum, clip);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(decoded->sum[i], expected[i], 5 * clip / e->scaled_clip);
  ASSERT_TRUE(decoded->noised_centered_count.has_value());
  EXPECT_EQ(*decoded->noised_centered_count, 4 - 2.5);  // four unclipped of five, centred
}

TEST(DistributedDpEncodingTest, RejectsMismatchedInputs) {
  DistributedDpEncodingOptions options;
  options.max_clients = 5;
  options.dim = 3;
  DistributedDpEncoding e = *ChooseDistributedDpEncoding(options);
  SeededRandomSource r(1);
  const std::vector<float> ok = {1, 2, 3};
  EXPECT_TRUE(EncodeDistributedDpUpdate(e, ok, 1.0, std::nullopt, r, r).ok());
  EXPECT_FALSE(EncodeDistributedDpUpdate(e, ok, 1.0, true, r, r).ok());  // no count coordinate
  EXPECT_FALSE(EncodeDistributedDpUpdate(e, {1, 2}, 1.0, std::nullopt, r, r).ok());
  EXPECT_FALSE(EncodeDistributedDpUpdate(e, ok, 0.0, std::nullopt, r, r).ok());
  EXPECT_FALSE(EncodeDistributedDpUpdate(e, {1, NAN, 3}, 1.0, std::nullopt, r, r).ok());
  EXPECT_FALSE(DecodeDistributedDpSum(e, std::vector<uint64_t>{1, 2}, 1.0).ok());
  EXPECT_FALSE(DecodeDistributedDpSum(e, std::vector<uint64_t>{1, 2, uint64_t{1} << 40}, 1.0).ok());
}

// The aggregate-level noise test: n clients each encode a zero update with their noise share; the
// decoded modular sum is then pure noise, and must be N(0, (z c)^2) per coordinate (z c in
// unscaled units; the sum of n discrete Gaussians of variance (z Delta)^2 / n). Checked: mean,
// variance, the fraction within 1 and 2 standard deviations, and the fourth moment.
TEST(DistributedDpEncodingTest, SumOfClientNoiseSharesIsGaussianWithTheTargetVariance) {
  constexpr int kClients = 20;
  constexpr int64_t kDim = 20000;
  DistributedDpEncodingOptions options;
  options.max_clients = kClients;
  options.dim = kDim;
  options.noise_multiplier = 0.7;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(e.ok()) << e.status();
  const double clip = 0.3;
  std::vector<uint64_t> sum;
  const std::vector<float> zero(kDim, 0.0f);
  for (int u = 0; u < kClients; ++u) {
    SeededRandomSource rounding(DeriveSeed(5, {1, static_cast<uint64_t>(u)}));
    SeededRandomSource noise(DeriveSeed(5, {2, static_cast<uint64_t>(u)}));
    absl::StatusOr<std::vector<uint64_t>> v =
        EncodeDistributedDpUpdate(*e, zero, clip, std::nullopt, rounding, noise);
    ASSERT_TRUE(v.ok()) << v.status();
    AddModular(sum, *v, e->modulus_bits);
  }
  absl::StatusOr<DistributedDpSum> decoded = DecodeDistributedDpSum(*e, sum, clip);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  // Target stddev z c, inflated only by the sensitivity's sqrt(d) / scaled_clip.
  const double target = e->value_noise_multiplier * clip;
  EXPECT_NEAR(target, 0.7 * clip, 0.7 * clip * 1e-3);
  double mean = 0, m2 = 0, m4 = 0;
  int within1 = 0, within2 = 0;
  for (double x : decoded->sum) {
    mean += x / kDim;
    m2 += x * x / kDim;
    m4 += x * x * x * x / kDim;
    within1 += std::abs(x) <= target ? 1 : 0;
    within2 += std::abs(x) <= 2 * target ? 1 : 0;
  }
  // Standard errors over 20000 samples: mean sigma/141, variance 1%, fractions ~0.33% and 0.15%.
  EXPECT_NEAR(mean, 0.0, 4 * target / std::sqrt(kDim));
  EXPECT_NEAR(m2 / (target * target), 1.0, 0.04);
  EXPECT_NEAR(static_cast<double>(within1) / kDim, 0.6827, 0.014);
  EXPECT_NEAR(static_cast<double>(within2) / kDim, 0.9545, 0.006);
  EXPECT_NEAR(m4 / (m2 * m2), 3.0, 0.15);  // kurtosis of a Gaussian (stderr ~0.035)
}

// Worst case for wrap-around: every client puts its whole clip on one coordinate with the same
// sign. The decoded sum must be n c plus noise, with the right sign.
TEST(DistributedDpEncodingTest, WorstCaseSumDoesNotWrap) {
  constexpr int kClients = 50;
  DistributedDpEncodingOptions options;
  options.modulus_bits = 24;
  options.max_clients = kClients;
  options.dim = 4;
  options.noise_multiplier = 0.5;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);
  ASSERT_TRUE(e.ok()) << e.status();
  std::vector<uint64_t> sum;
  for (int u = 0; u < kClients; ++u) {
    SeededRandomSource rounding(u), noise(1000 + u);
    auto v = EncodeDistributedDpUpdate(*e, std::vector<float>{-1.0f, 0, 0, 0}, 1.0, std::nullopt,
                                       rounding, noise);
    ASSERT_TRUE(v.ok()) << v.status();
    AddModular(sum, *v, e->modulus_bits);
  }
  auto decoded = DecodeDistributedDpSum(*e, sum, 1.0);
  ASSERT_TRUE(decoded.ok());
  // Noise stddev 0.5: the sum is -50 give or take a few.
  EXPECT_NEAR(decoded->sum[0], -kClients, 5.0);
}

TEST(DropoutToleranceForRateTest, IsTheBinomialUpperTailQuantile) {
  EXPECT_EQ(DropoutToleranceForRate(100, 0.0), 0.0);
  const double f = DropoutToleranceForRate(100, 0.1);
  // P(Binomial(100, 0.1) > 20) ~ 8e-4 <= 1e-3 < P(> 19) ~ 2e-3.
  EXPECT_EQ(static_cast<int64_t>(std::floor(100 * (1 - f))), 80);
  EXPECT_NEAR(f, 0.2, 1e-12);
  EXPECT_LT(DropoutToleranceForRate(1000, 0.1), 0.135);  // concentrates with n
}

// Central DP under secure aggregation: the server's noise is whole encoding steps added to the
// unmasked integer sum, with variance (z Delta_v)^2 in steps (five standard errors of the sample
// variance, sqrt(2 / n) relative), and the count is decoded exactly.
TEST(DistributedDpEncodingTest, CentralNoiseOnTheUnmaskedSumIsWholeStepsOfTheRightVariance) {
  DistributedDpEncodingOptions options;
  options.modulus_bits = 24;  // a scale whose noise fits the unit grid (no coarser rounding)
  options.max_clients = 10;
  options.dim = 100000;
  options.with_count = true;
  absl::StatusOr<DistributedDpEncoding> e = ChooseDistributedDpEncoding(options);  // z = 0
  ASSERT_TRUE(e.ok()) << e.status();
  std::vector<uint64_t> sum(e->length(), 0);
  const uint64_t mask = (uint64_t{1} << 24) - 1;
  sum.back() = static_cast<uint64_t>(3 * e->count_half_step) & mask;  // centred count 1.5
  const double clip = 2.0;
  const double z = 0.9;
  SeededRandomSource noise(99);
  auto noised = DecodeDistributedDpSumWithCentralNoise(*e, sum, clip, z, noise);
  ASSERT_TRUE(noised.ok()) << noised.status();
  ASSERT_TRUE(noised->noised_centered_count.has_value());
  EXPECT_EQ(*noised->noised_centered_count, 1.5);
  const double unscale = clip / e->scaled_clip;
  const double sigma = z * e->value_sensitivity;
  ASSERT_LT(sigma, 16777216.0);
  double sum_squares = 0;
  for (double v : noised->sum) {
    const double steps = v / unscale;
    ASSERT_NEAR(steps, std::round(steps), 1e-6) << "not a whole number of encoding steps";
    sum_squares += steps * steps;
  }
  const double n = static_cast<double>(options.dim);
  EXPECT_NEAR(sum_squares / n / (sigma * sigma), 1.0, 5 * std::sqrt(2.0 / n));
  // Without noise it is DecodeDistributedDpSum.
  auto exact = DecodeDistributedDpSumWithCentralNoise(*e, sum, clip, 0.0, noise);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->sum, DecodeDistributedDpSum(*e, sum, clip)->sum);
  EXPECT_FALSE(DecodeDistributedDpSumWithCentralNoise(*e, sum, clip, -1, noise).ok());
}

}  // namespace
}  // namespace fedkit::privacy
