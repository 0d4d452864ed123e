#include "privacy/noise.h"

#include <bit>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

struct Moments {
  double mean = 0;
  double variance = 0;  // unbiased
  double kurtosis = 0;  // E[(x - mean)^4] / variance^2
};

Moments ComputeMoments(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  Moments m;
  for (double v : x) m.mean += v;
  m.mean /= n;
  double m2 = 0, m4 = 0;
  for (double v : x) {
    const double d = (v - m.mean) * (v - m.mean);
    m2 += d;
    m4 += d * d;
  }
  m.variance = m2 / (n - 1);
  m.kurtosis = (m4 / n) / ((m2 / n) * (m2 / n));
  return m;
}

TEST(SeededRandomSourceTest, IsTheStandardMt19937_64Stream) {
  // The C++ standard ([rand.predef]) fixes the 10000th output of a default-seeded mt19937_64.
  SeededRandomSource random(5489);
  uint64_t x = 0;
  for (int i = 0; i < 10000; ++i) x = random.NextUint64();
  EXPECT_EQ(x, 9981545732273789042ULL);
}

TEST(SeededRandomSourceTest, SameSeedSameStreamDifferentSeedDifferentStream) {
  SeededRandomSource a(42), b(42), c(43);
  int equal_to_c = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextUint64();
    EXPECT_EQ(x, b.NextUint64());
    equal_to_c += x == c.NextUint64();
  }
  EXPECT_EQ(equal_to_c, 0);
}

TEST(UniformTest, DoubleIsInUnitIntervalWith53BitResolution) {
  SeededRandomSource random(1);
  double sum = 0;
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) {
    const double u = UniformDouble(random);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    ASSERT_EQ(u, std::ldexp(std::floor(std::ldexp(u, 53)), -53));  // a multiple of 2^-53
    sum += u;
  }
  // Mean 1/2, stddev of the mean sqrt(1/12 / N) ~ 0.0009: 5 sigma.
  EXPECT_NEAR(sum / kN, 0.5, 5 * std::sqrt(1.0 / 12 / kN));
}

TEST(UniformTest, BelowIsUniformForANonPowerOfTwo) {
  SeededRandomSource random(2);
  constexpr int kN = 60000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < kN; ++i) {
    const uint64_t x = UniformBelow(random, 6);
    ASSERT_LT(x, 6u);
    ++counts[x];
  }
  double chi2 = 0;
  for (int c : counts) chi2 += (c - kN / 6.0) * (c - kN / 6.0) / (kN / 6.0);
  EXPECT_LT(chi2, 20.52);  // chi-square, 5 degrees of freedom, p = 0.001
  EXPECT_EQ(UniformBelow(random, 1), 0u);
}

// N(0, (z S)^2) with z = 1.5, S = 2: mean and variance within 5 standard errors (the variance
// estimator of a Gaussian has standard error sigma^2 sqrt(2 / (N - 1))), kurtosis 3 within 5
// standard errors (sqrt(96 / N)), and 68.27% of samples within one sigma.
TEST(GaussianTest, AddedNoiseHasTheRequestedMeanVarianceAndShape) {
  constexpr int kN = 200000;
  const double z = 1.5, clip = 2.0, sigma = z * clip;
  SeededRandomSource random(7);
  std::vector<double> noise(kN, 0.0);
  AddGaussianNoise(absl::MakeSpan(noise), sigma, random);
  const Moments m = ComputeMoments(noise);
  EXPECT_NEAR(m.mean, 0.0, 5 * sigma / std::sqrt(kN));
  EXPECT_NEAR(m.variance, sigma * sigma, 5 * sigma * sigma * std::sqrt(2.0 / (kN - 1)));
  EXPECT_NEAR(m.kurtosis, 3.0, 5 * std::sqrt(96.0 / kN));
  int within = 0;
  for (double x : noise) within += std::abs(x) <= sigma;
  const double p = std::erf(1 / std::sqrt(2.0));  // 0.6827
  EXPECT_NEAR(static_cast<double>(within) / kN, p, 5 * std::sqrt(p * (1 - p) / kN));
}

TEST(GaussianTest, FillHandlesOddLengthsAndIsReproducible) {
  SeededRandomSource a(3), b(3);
  std::vector<double> x(7), y(7);
  FillStandardGaussian(a, absl::MakeSpan(x));
  FillStandardGaussian(b, absl::MakeSpan(y));
  EXPECT_EQ(x, y);
  for (double v : x) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NE(x[5], x[6]);
  SeededRandomSource c(3);
  EXPECT_EQ(StandardGaussian(c), x[0]);  // the first of the first pair
}

TEST(GaussianTest, ZeroStddevAddsNothing) {
  SeededRandomSource random(4);
  std::vector<double> x = {1.0, -2.0, 3.5};
  AddGaussianNoise(absl::MakeSpan(x), 0.0, random);
  EXPECT_EQ(x, (std::vector<double>{1.0, -2.0, 3.5}));
}

TEST(CentralDpAverageTest, WithoutNoiseDividesByTheFixedDenominator) {
  SeededRandomSource random(5);
  const std::vector<double> sum = {10.0, -5.0, 2.5};
  // 7 clients may have reported, but the denominator is the expected 10.
  absl::StatusOr<std::vector<float>> avg = CentralDpAverage(sum, 0.0, 10.0, random);
  ASSERT_TRUE(avg.ok()) << avg.status();
  EXPECT_EQ(*avg, (std::vector<float>{1.0f, -0.5f, 0.25f}));
}

// Sum 100 in every coordinate, noise stddev 10, denominator 50: outputs have mean 2 and variance
// (10 / 50)^2 = 0.04 (the noise is divided too).
TEST(CentralDpAverageTest, NoiseIsAddedToTheSumBeforeDividing) {
  constexpr int kD = 100000;
  SeededRandomSource random(6);
  const std::vector<double> sum(kD, 100.0);
  absl::StatusOr<std::vector<float>> avg = CentralDpAverage(sum, 10.0, 50.0, random);
  ASSERT_TRUE(avg.ok()) << avg.status();
  ASSERT_EQ(avg->size(), static_cast<size_t>(kD));
  const Moments m = ComputeMoments(std::vector<double>(avg->begin(), avg->end()));
  const double sd = 10.0 / 50.0;
  EXPECT_NEAR(m.mean, 2.0, 5 * sd / std::sqrt(kD));
  EXPECT_NEAR(m.variance, sd * sd, 5 * sd * sd * std::sqrt(2.0 / (kD - 1)));
}

TEST(CentralDpAverageTest, RejectsBadArguments) {
  SeededRandomSource random(8);
  const std::vector<double> sum = {1.0};
  EXPECT_EQ(CentralDpAverage(sum, -1.0, 10.0, random).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CentralDpAverage(sum, NAN, 10.0, random).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CentralDpAverage(sum, 1.0, 0.0, random).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<double> bad = {1.0, INFINITY};
  EXPECT_EQ(CentralDpAverage(bad, 1.0, 10.0, random).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SecureRandomSourceTest, ProducesDifferentBalancedStreams) {
  absl::StatusOr<std::unique_ptr<SecureRandomSource>> a = SecureRandomSource::Create();
  absl::StatusOr<std::unique_ptr<SecureRandomSource>> b = SecureRandomSource::Create();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  // 2000 words: across the 512-word buffer refills.
  constexpr int kWords = 2000;
  int equal = 0;
  int64_t ones = 0;
  std::vector<uint64_t> first;
  for (int i = 0; i < kWords; ++i) {
    const uint64_t x = (*a)->NextUint64();
    equal += x == (*b)->NextUint64();
    ones += std::popcount(x);
    first.push_back(x);
  }
  EXPECT_EQ(equal, 0);
  // 128,000 fair bits: 8 standard deviations (~181 each) leave no room for flakiness.
  EXPECT_NEAR(static_cast<double>(ones), 64.0 * kWords / 2, 8 * std::sqrt(64.0 * kWords / 4));
  // A secure source drives the samplers like any other.
  EXPECT_TRUE(std::isfinite(StandardGaussian(**a)));
}

}  // namespace
}  // namespace fedkit::privacy
