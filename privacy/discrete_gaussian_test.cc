#include "privacy/discrete_gaussian.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

// The exact pmf of N_Z(0, sigma^2) on [-cutoff, cutoff] (the mass beyond is negligible here).
std::map<int64_t, double> ExactPmf(double sigma_squared, int64_t cutoff = 200) {
  std::map<int64_t, double> pmf;
  double z = 0;
  for (int64_t x = -cutoff; x <= cutoff; ++x) {
    pmf[x] = std::exp(-static_cast<double>(x * x) / (2 * sigma_squared));
    z += pmf[x];
  }
  for (auto& [x, p] : pmf) p /= z;
  return pmf;
}

double ExactVariance(double sigma_squared) {
  double v = 0;
  for (const auto& [x, p] : ExactPmf(sigma_squared)) v += static_cast<double>(x * x) * p;
  return v;
}

std::vector<int64_t> Draw(const DiscreteGaussianSampler& sampler, int n, uint64_t seed) {
  SeededRandomSource random(seed);
  std::vector<int64_t> out(n);
  for (int64_t& x : out) x = sampler.Sample(random);
  return out;
}

DiscreteGaussianSampler MustCreate(Rational sigma_squared) {
  absl::StatusOr<DiscreteGaussianSampler> s = DiscreteGaussianSampler::Create(sigma_squared);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

// Pearson's chi-square of `samples` against the exact pmf, with the tails beyond +-pool_from
// pooled into the two end bins (every bin then expects >= 5 samples in the cases below).
double ChiSquare(const std::vector<int64_t>& samples, double sigma_squared, int64_t pool_from) {
  const std::map<int64_t, double> pmf = ExactPmf(sigma_squared);
  auto bin = [&](int64_t x) { return std::clamp(x, -pool_from, pool_from); };
  std::map<int64_t, double> expected, observed;
  for (const auto& [x, p] : pmf) expected[bin(x)] += p * static_cast<double>(samples.size());
  for (int64_t x : samples) observed[bin(x)] += 1;
  double chi2 = 0;
  for (const auto& [b, e] : expected) {
    EXPECT_GE(e, 5.0) << "bin " << b;
    chi2 += (observed[b] - e) * (observed[b] - e) / e;
  }
  return chi2;
}

TEST(RationalAtLeastTest, RoundsUpToMultiplesOfTheResolution) {
  absl::StatusOr<Rational> r = RationalAtLeast(2.0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numerator, 2);
  EXPECT_EQ(r->denominator, 1);
  r = RationalAtLeast(0.5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numerator, 1);
  EXPECT_EQ(r->denominator, 2);
  r = RationalAtLeast(0.0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numerator, 0);
  // 0.1 * 2^20 = 104857.6 -> 104858 / 2^20 = 52429 / 2^19.
  r = RationalAtLeast(0.1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numerator, 52429);
  EXPECT_EQ(r->denominator, 524288);
  EXPECT_GE(r->ToDouble(), 0.1);
  EXPECT_LT(r->ToDouble() - 0.1, std::ldexp(1.0, -20));
  r = RationalAtLeast(0.1, 3);  // 0.8 -> 1/8
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->numerator, 1);
  EXPECT_EQ(r->denominator, 8);
}

TEST(RationalAtLeastTest, RejectsBadValues) {
  EXPECT_FALSE(RationalAtLeast(-1.0).ok());
  EXPECT_FALSE(RationalAtLeast(NAN).ok());
  EXPECT_FALSE(RationalAtLeast(INFINITY).ok());
  EXPECT_FALSE(RationalAtLeast(1e30).ok());
  EXPECT_FALSE(RationalAtLeast(1.0, 41).ok());
  EXPECT_FALSE(RationalAtLeast(1.0, -1).ok());
}

TEST(DiscreteGaussianSamplerTest, ValidatesSigmaSquaredAndItsRange) {
  EXPECT_FALSE(DiscreteGaussianSampler::Create({-1, 1}).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::Create({1, 0}).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::Create({1, -2}).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::Create({int64_t{1} << 60, 1}).ok());
  // With denominator 2^20 the range ends near sigma^2 ~ 6.9e10 (q t^2 <= 2^56).
  constexpr int64_t kQ = int64_t{1} << 20;
  EXPECT_TRUE(DiscreteGaussianSampler::Create({60'000'000'000 * kQ + 1, kQ}).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::Create({100'000'000'000 * kQ + 1, kQ}).ok());
  // A coarser denominator allows more (here q = 1).
  EXPECT_TRUE(DiscreteGaussianSampler::CreateFromDouble(1e11).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::CreateFromDouble(-1.0).ok());
  // Reduced to lowest terms.
  const DiscreteGaussianSampler s = MustCreate({10, 4});
  EXPECT_EQ(s.sigma_squared().numerator, 5);
  EXPECT_EQ(s.sigma_squared().denominator, 2);
}

// Everything RationalAtLeast returns is in the sampler's range (see the header).
TEST(DiscreteGaussianSamplerTest, AcceptsEveryVarianceRationalAtLeastRepresents) {
  for (int bits : {0, 20, 40}) {
    for (double x : {1e-7, 0.3, 3.7, 12345.678, 4294967296.1, 1e11 + 0.5, 4e12, 4.3e12}) {
      if (!RationalAtLeast(x, bits).ok()) continue;  // x * 2^bits >= 2^62
      absl::StatusOr<DiscreteGaussianSampler> s =
          DiscreteGaussianSampler::CreateFromDouble(x, bits);
      ASSERT_TRUE(s.ok()) << x << " at " << bits << " bits: " << s.status();
      SeededRandomSource random(1);
      s->Sample(random);
    }
  }
}

TEST(DiscreteGaussianSamplerTest, ZeroVarianceGivesZero) {
  const DiscreteGaussianSampler s = MustCreate({0, 1});
  for (int64_t x : Draw(s, 100, 1)) EXPECT_EQ(x, 0);
}

TEST(DiscreteGaussianSamplerTest, IsReproducibleFromTheSeed) {
  const DiscreteGaussianSampler s = MustCreate({7, 3});
  EXPECT_EQ(Draw(s, 1000, 11), Draw(s, 1000, 11));
  EXPECT_NE(Draw(s, 1000, 11), Draw(s, 1000, 12));
}

// sigma^2 = 100: symmetric about 0, mean 0 and variance 100 (the discrete Gaussian's variance
// equals sigma^2 up to ~exp(-2 pi^2 sigma^2) here) within 5 standard errors.
TEST(DiscreteGaussianSamplerTest, LargeSigmaHasMeanZeroAndVarianceSigmaSquared) {
  constexpr int kN = 100000;
  const double sigma2 = 100;
  const std::vector<int64_t> x = Draw(MustCreate({100, 1}), kN, 21);
  double sum = 0, sum_sq = 0;
  int64_t positive = 0, negative = 0;
  for (int64_t v : x) {
    sum += static_cast<double>(v);
    sum_sq += static_cast<double>(v * v);
    positive += v > 0;
    negative += v < 0;
  }
  const double mean = sum / kN;
  const double variance = (sum_sq - kN * mean * mean) / (kN - 1);
  EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(sigma2 / kN));
  EXPECT_NEAR(variance, sigma2, 5 * sigma2 * std::sqrt(2.0 / (kN - 1)));
  // Symmetry: the sign of a non-zero sample is a fair coin.
  const double nonzero = static_cast<double>(positive + negative);
  EXPECT_NEAR(static_cast<double>(positive), nonzero / 2, 5 * std::sqrt(nonzero / 4));
}

// The empirical pmf matches exp(-x^2 / (2 sigma^2)) / Z by Pearson's chi-square at p = 0.001:
// sigma^2 = 2 (integer), 5/2 (t = 2, sigma^2 / t = 5/4 is fractional) and 1/2 (t = 1).
TEST(DiscreteGaussianSamplerTest, PmfMatchesTheExactDiscreteGaussian) {
  constexpr int kN = 200000;
  // Bins -6..6 (|x| >= 6 pooled): 13 bins, 12 degrees of freedom, critical value 32.91.
  EXPECT_LT(ChiSquare(Draw(MustCreate({2, 1}), kN, 31), 2.0, 6), 32.91);
  // Bins -6..6: 12 degrees of freedom.
  EXPECT_LT(ChiSquare(Draw(MustCreate({5, 2}), kN, 32), 2.5, 6), 32.91);
  // Bins -3..3: 6 degrees of freedom, critical value 22.46.
  EXPECT_LT(ChiSquare(Draw(MustCreate({1, 2}), kN, 33), 0.5, 3), 22.46);
}

// For small sigma the variance is not sigma^2 (0.49898 at sigma^2 = 1/2); it matches the exact
// pmf's.
TEST(DiscreteGaussianSamplerTest, SmallSigmaVarianceMatchesTheExactPmf) {
  constexpr int kN = 200000;
  const double exact = ExactVariance(0.5);
  EXPECT_NEAR(exact, 0.49898, 1e-5);
  double sum_sq = 0;
  for (int64_t v : Draw(MustCreate({1, 2}), kN, 41)) sum_sq += static_cast<double>(v * v);
  // Var(X^2) = E[X^4] - E[X^2]^2, computed from the exact pmf for the standard error.
  double m4 = 0;
  for (const auto& [x, p] : ExactPmf(0.5)) m4 += std::pow(static_cast<double>(x), 4) * p;
  EXPECT_NEAR(sum_sq / kN, exact, 5 * std::sqrt((m4 - exact * exact) / kN));
}

// Sum of n = 10 independent N_Z(0, 4): variance n sigma^2 = 40 (the distributed mechanism's total
// noise), within 5 standard errors of the variance estimator.
TEST(DiscreteGaussianSamplerTest, SumOfIndependentSamplesHasVarianceNSigmaSquared) {
  constexpr int kSums = 40000, kClients = 10;
  const DiscreteGaussianSampler s = MustCreate({4, 1});
  SeededRandomSource random(51);
  std::vector<int64_t> sums(kSums, 0);
  for (int c = 0; c < kClients; ++c) s.AddNoise(absl::MakeSpan(sums), random);
  double sum = 0, sum_sq = 0;
  for (int64_t v : sums) {
    sum += static_cast<double>(v);
    sum_sq += static_cast<double>(v * v);
  }
  const double mean = sum / kSums;
  const double variance = (sum_sq - kSums * mean * mean) / (kSums - 1);
  const double expected = kClients * ExactVariance(4);
  EXPECT_NEAR(expected, 40.0, 1e-9);
  EXPECT_NEAR(variance, expected, 5 * expected * std::sqrt(2.0 / (kSums - 1)));
}

// A very large sigma exercises the widest arithmetic (the products near 2^124).
TEST(DiscreteGaussianSamplerTest, HugeSigmaStaysInRangeWithTheRightVariance) {
  constexpr int kN = 20000;
  constexpr int64_t kQ = int64_t{1} << 20;
  absl::StatusOr<DiscreteGaussianSampler> s =
      DiscreteGaussianSampler::Create({60'000'000'000 * kQ + 1, kQ});
  ASSERT_TRUE(s.ok()) << s.status();
  const double sigma2 = s->sigma_squared().ToDouble();
  double sum_sq = 0;
  for (int64_t v : Draw(*s, kN, 61)) {
    ASSERT_LE(std::abs(v), 64 * 244949);  // 64 (floor(sigma) + 1)
    sum_sq += static_cast<double>(v) * static_cast<double>(v);
  }
  EXPECT_NEAR(sum_sq / kN, sigma2, 5 * sigma2 * std::sqrt(2.0 / kN));
}

TEST(DiscreteGaussianSamplerTest, AddNoiseModularWrapsLikeTwosComplement) {
  const DiscreteGaussianSampler s = MustCreate({9, 1});
  const std::vector<int64_t> expected = Draw(s, 1000, 71);
  for (int bits : {8, 64}) {
    const uint64_t mask = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    std::vector<uint64_t> values(expected.size(), 5);
    SeededRandomSource random(71);
    s.AddNoiseModular(absl::MakeSpan(values), bits, random);
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], (5 + static_cast<uint64_t>(expected[i])) & mask) << i;
    }
  }
}

}  // namespace
}  // namespace fedkit::privacy
