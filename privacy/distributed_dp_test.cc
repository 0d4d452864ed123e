#include "privacy/distributed_dp.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(RoundedL2SensitivityBoundTest, MatchesTheHandComputedBounds) {
  // beta = 0: c + sqrt(d) = 10 + 10.
  absl::StatusOr<double> b = RoundedL2SensitivityBound(10, 100, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_DOUBLE_EQ(*b, 20.0);
  // beta = exp(-0.5): sqrt(2 ln(1/beta)) = 1, so sqrt(100 + 100/4 + (10 + 10/2)) = sqrt(140).
  b = RoundedL2SensitivityBound(10, 100, std::exp(-0.5));
  ASSERT_TRUE(b.ok());
  EXPECT_NEAR(*b, std::sqrt(140.0), 1e-12);
  // The conditional bound is never worse than the unconditional one: for tiny beta and tiny d
  // the first term wins.
  b = RoundedL2SensitivityBound(1, 1, 1e-300);
  ASSERT_TRUE(b.ok());
  EXPECT_DOUBLE_EQ(*b, 2.0);
}

TEST(RoundedL2SensitivityBoundTest, RejectsBadArguments) {
  EXPECT_FALSE(RoundedL2SensitivityBound(-1, 10, 0).ok());
  EXPECT_FALSE(RoundedL2SensitivityBound(kInf, 10, 0).ok());
  EXPECT_FALSE(RoundedL2SensitivityBound(1, 0, 0).ok());
  EXPECT_FALSE(RoundedL2SensitivityBound(1, 10, 1.0).ok());
  EXPECT_FALSE(RoundedL2SensitivityBound(1, 10, -0.1).ok());
}

TEST(ConditionalRandomizedRoundTest, UnconditionalRoundingIsUnbiasedToNeighbours) {
  constexpr int kDraws = 20000;
  SeededRandomSource random(1);
  const std::vector<double> x = {0.3, -1.75, 4.0};
  std::vector<double> mean(x.size(), 0.0);
  for (int i = 0; i < kDraws; ++i) {
    absl::StatusOr<std::vector<int64_t>> r = ConditionalRandomizedRound(x, kInf, random);
    ASSERT_TRUE(r.ok()) << r.status();
    for (size_t j = 0; j < x.size(); ++j) {
      ASSERT_TRUE((*r)[j] == std::floor(x[j]) || (*r)[j] == std::ceil(x[j])) << (*r)[j];
      mean[j] += static_cast<double>((*r)[j]) / kDraws;
    }
  }
  EXPECT_NEAR(mean[0], 0.3, 5 * std::sqrt(0.3 * 0.7 / kDraws));
  EXPECT_NEAR(mean[1], -1.75, 5 * std::sqrt(0.25 * 0.75 / kDraws));
  EXPECT_NEAR(mean[2], 4.0, 1e-9);
}

// d = 400 coordinates of 0.5 (norm 10): each rounds to 0 or 1, so the rounded squared norm is
// Binomial(400, 1/2) (mean 200). With beta = exp(-0.5) the bound is sqrt(100 + 100 + 20) and the
// conditional rounding must never exceed it.
TEST(ConditionalRandomizedRoundTest, ConditionalRoundingRespectsTheBound) {
  SeededRandomSource random(2);
  const std::vector<double> x(400, 0.5);
  absl::StatusOr<double> bound = RoundedL2SensitivityBound(10, 400, std::exp(-0.5));
  ASSERT_TRUE(bound.ok());
  EXPECT_NEAR(*bound, std::sqrt(220.0), 1e-12);
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<std::vector<int64_t>> r = ConditionalRandomizedRound(x, *bound, random);
    ASSERT_TRUE(r.ok()) << r.status();
    int64_t norm_squared = 0;
    for (int64_t v : *r) norm_squared += v * v;
    ASSERT_LE(norm_squared, 220);
  }
}

TEST(ConditionalRandomizedRoundTest, FailsWhenTheInputWasNotClipped) {
  SeededRandomSource random(3);
  const std::vector<double> x(100, 10.5);  // norm 105
  absl::StatusOr<std::vector<int64_t>> r = ConditionalRandomizedRound(x, 50.0, random, 10);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ConditionalRandomizedRound(std::vector<double>{NAN}, kInf, random).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConditionalRandomizedRound(std::vector<double>{1e30}, kInf, random).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConditionalRandomizedRound(std::vector<double>{1}, -1, random).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DiscreteGaussianSumTauTest, MatchesTheHandComputedSum) {
  // n = 2: one term, 10 exp(-2 pi^2 sigma^2 / 2) = 10 exp(-pi^2) at sigma^2 = 1.
  EXPECT_NEAR(DiscreteGaussianSumTau(1.0, 2), 10 * std::exp(-M_PI * M_PI), 1e-18);
  EXPECT_NEAR(DiscreteGaussianSumTau(1.0, 2), 5.172318620381233e-4, 1e-15);
  // n = 3, sigma^2 = 2: 10 (exp(-2 pi^2) + exp(-8 pi^2 / 3)).
  EXPECT_NEAR(DiscreteGaussianSumTau(2.0, 3), 2.6790018669671623e-08, 1e-20);
  EXPECT_EQ(DiscreteGaussianSumTau(1.0, 1), 0.0);
  EXPECT_EQ(DiscreteGaussianSumTau(1.0, 0), 0.0);
  // Increasing in n.
  EXPECT_GT(DiscreteGaussianSumTau(1.0, 100), DiscreteGaussianSumTau(1.0, 10));
}

// z = 1, Delta = 20, n = 100 with 20% dropout: n_min = 80 and sigma^2 = 400 / 80 = 5 exactly.
TEST(DistributedDiscreteGaussianParametersTest, SplitsTheNoiseOverTheMinimumSurvivors) {
  absl::StatusOr<DistributedDiscreteGaussianParams> p =
      DistributedDiscreteGaussianParameters(1.0, 20.0, 100, 0.2, 1000);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->min_surviving_clients, 80);
  EXPECT_EQ(p->local_variance.numerator, 5);
  EXPECT_EQ(p->local_variance.denominator, 1);
  EXPECT_DOUBLE_EQ(p->effective_noise_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(p->tau, DiscreteGaussianSumTau(5.0, 100));
  EXPECT_LT(p->tau_times_dim, 1e-15);  // 10 exp(-5 pi^2) * 1000 ~ 3.7e-18
  EXPECT_DOUBLE_EQ(p->tau_times_dim, p->tau * 1000);
}

// A variance that is not a multiple of 2^-20 is rounded up: never less noise than asked for.
TEST(DistributedDiscreteGaussianParametersTest, RoundsTheVarianceUp) {
  const double z = 1.1, delta = 3.0;
  absl::StatusOr<DistributedDiscreteGaussianParams> p =
      DistributedDiscreteGaussianParameters(z, delta, 7, 0.0, 10);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->min_surviving_clients, 7);
  const double exact = (z * delta) * (z * delta) / 7;
  EXPECT_GE(p->local_variance.ToDouble(), exact);
  EXPECT_LT(p->local_variance.ToDouble() - exact, std::ldexp(1.0, -20));
  EXPECT_GE(p->effective_noise_multiplier, z);
  EXPECT_LT(p->effective_noise_multiplier, z * (1 + 1e-6));
}

// End to end: the noise of n_min clients, each drawing from the returned variance, sums to
// variance (z Delta)^2: z = 0.5, Delta = 20, 20 clients with half dropping out -> 10 shares of
// variance 10 sum to 100, checked within 5 standard errors over 20,000 coordinates.
TEST(DistributedDiscreteGaussianParametersTest, SurvivorsNoiseSumsToTheTargetVariance) {
  absl::StatusOr<DistributedDiscreteGaussianParams> p =
      DistributedDiscreteGaussianParameters(0.5, 20.0, 20, 0.5, 20000);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->min_surviving_clients, 10);
  absl::StatusOr<DiscreteGaussianSampler> sampler =
      DiscreteGaussianSampler::Create(p->local_variance);
  ASSERT_TRUE(sampler.ok());
  constexpr int kD = 20000;
  std::vector<int64_t> sum(kD, 0);
  for (int client = 0; client < p->min_surviving_clients; ++client) {
    SeededRandomSource random(1000 + client);  // each client its own stream
    sampler->AddNoise(absl::MakeSpan(sum), random);
  }
  double mean = 0, sum_sq = 0;
  for (int64_t v : sum) {
    mean += static_cast<double>(v) / kD;
    sum_sq += static_cast<double>(v * v);
  }
  const double variance = (sum_sq - kD * mean * mean) / (kD - 1);
  EXPECT_NEAR(variance, 100.0, 5 * 100.0 * std::sqrt(2.0 / (kD - 1)));
  EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(100.0 / kD));
}

TEST(DistributedDiscreteGaussianParametersTest, RejectsBadArguments) {
  auto code = [](double z, double delta, int64_t n, double dropout, int64_t dim) {
    return DistributedDiscreteGaussianParameters(z, delta, n, dropout, dim).status().code();
  };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(0, 20, 100, 0.2, 10), kInvalid);
  EXPECT_EQ(code(NAN, 20, 100, 0.2, 10), kInvalid);
  EXPECT_EQ(code(1, 0, 100, 0.2, 10), kInvalid);
  EXPECT_EQ(code(1, 20, 0, 0.2, 10), kInvalid);
  EXPECT_EQ(code(1, 20, 100, 1.0, 10), kInvalid);
  EXPECT_EQ(code(1, 20, 100, -0.1, 10), kInvalid);
  EXPECT_EQ(code(1, 20, 100, 0.2, 0), kInvalid);
  // sigma^2 = 1e-4 < 1/4: the scale is too small for the theorem.
  EXPECT_EQ(code(0.1, 1, 100, 0, 10), kInvalid);
  // sigma^2 = 1e24: too large for a 62-bit numerator.
  EXPECT_EQ(code(1e6, 1e6, 1, 0, 10), kInvalid);
}

TEST(DistributedDiscreteGaussianRdpTest, ApproachesTheGaussianWhenTauIsNegligible) {
  // Delta / sqrt(n sigma^2) = 20 / sqrt(80 * 5) = 1: the Gaussian's RDP is alpha / 2.
  for (double order : {2.0, 8.0, 32.0}) {
    EXPECT_NEAR(DistributedDiscreteGaussianRdp(order, 20, 5, 80, 1000), order / 2, 1e-12);
  }
  // sigma^2 = 1: tau ~ 5e-4 per coordinate is no longer negligible over 1000 coordinates.
  const double gaussian = 2.0 / 2 * (20.0 * 20.0) / (80 * 1.0);
  const double tau = DiscreteGaussianSumTau(1.0, 80);
  const double rdp = DistributedDiscreteGaussianRdp(2.0, 20, 1.0, 80, 1000);
  EXPECT_GT(rdp, gaussian);
  EXPECT_LE(rdp, gaussian + tau * 1000 + 1e-12);
  // Outside the theorem's premise.
  EXPECT_EQ(DistributedDiscreteGaussianRdp(2.0, 20, 0.2, 80, 1000), kInf);
}

}  // namespace
}  // namespace fedkit::privacy
