#include "privacy/central_discrete_noise.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

// Noise on zero sums: every value is a whole number of grid steps, and the sample variance is the
// sampler's within five standard errors (for a Gaussian-like variable the sample variance's
// relative standard error is sqrt(2 / n)).
TEST(CentralDiscreteNoiseTest, NoiseIsWholeGridStepsWithTheRightVariance) {
  // The exact sum's units for clip 1: 2^94 units per unit value; z = 1.3.
  const double sensitivity = std::ldexp(1.0, 94);
  const double stddev = 1.3 * sensitivity;
  const int64_t n = 200'000;
  auto noise = CentralDiscreteNoise::Create(stddev, sensitivity, n);
  ASSERT_TRUE(noise.ok()) << noise.status();
  const int k = noise->grid_bits();
  EXPECT_GT(k, 60);
  const double grid_sigma = std::sqrt(noise->grid_variance().ToDouble());
  EXPECT_LE(grid_sigma, std::ldexp(1.0, 24));
  EXPECT_GT(grid_sigma, std::ldexp(1.0, 23));
  // Never less noise than asked for; more only by the rounding's sensitivity inflation.
  EXPECT_GE(noise->stddev_units(), stddev);
  EXPECT_LE(noise->stddev_units(),
            stddev * (1 + std::ldexp(std::sqrt(static_cast<double>(n)), k) / sensitivity) * 1.0001);

  SeededRandomSource random(20261205);
  const std::vector<absl::int128> noised =
      noise->Noise(std::vector<absl::int128>(n, absl::int128(0)), random);
  ASSERT_EQ(static_cast<int64_t>(noised.size()), n);
  const absl::int128 step = absl::int128(1) << k;
  double sum = 0, sum_squares = 0;
  int64_t nonzero = 0;
  for (const absl::int128& v : noised) {
    ASSERT_EQ(v % step, 0) << "not a whole number of grid steps";
    const double steps = static_cast<double>(v / step);
    sum += steps;
    sum_squares += steps * steps;
    nonzero += v != 0 ? 1 : 0;
  }
  EXPECT_GT(nonzero, n * 99 / 100);
  const double variance = noise->grid_variance().ToDouble();
  const double mean = sum / n;
  EXPECT_LE(std::abs(mean), 5 * std::sqrt(variance / n));
  const double sample_variance = sum_squares / n - mean * mean;
  EXPECT_NEAR(sample_variance / variance, 1.0, 5 * std::sqrt(2.0 / n));
}

TEST(CentralDiscreteNoiseTest, SmallNoiseStaysOnTheUnitGrid) {
  // Already integer and sigma well below 2^24 units: no extra rounding (k = 0); the discrete
  // Gaussian's variance for sigma = 3 is sigma^2 up to ~1e-70.
  auto noise = CentralDiscreteNoise::Create(3.0, 10.0, 1);
  ASSERT_TRUE(noise.ok()) << noise.status();
  EXPECT_EQ(noise->grid_bits(), 0);
  EXPECT_NEAR(noise->grid_variance().ToDouble(), 9.0, 1e-5);
  const int64_t n = 100'000;
  SeededRandomSource random(7);
  const std::vector<absl::int128> noised =
      noise->Noise(std::vector<absl::int128>(n, absl::int128(5)), random);
  double sum_squares = 0;
  for (const absl::int128& v : noised) {
    const double d = static_cast<double>(v - 5);
    sum_squares += d * d;
  }
  EXPECT_NEAR(sum_squares / n / 9.0, 1.0, 5 * std::sqrt(2.0 / n));
}

TEST(CentralDiscreteNoiseTest, SumsAreRoundedToTheNearestGridPointBeforeNoise) {
  auto noise = CentralDiscreteNoise::Create(std::ldexp(1.0, 40), std::ldexp(1.0, 40), 4);
  ASSERT_TRUE(noise.ok());
  const int k = noise->grid_bits();
  ASSERT_GT(k, 1);
  const absl::int128 step = absl::int128(1) << k;
  const absl::int128 half = step / 2;
  const std::vector<absl::int128> sums = {3 * step + half, -(3 * step + half), half - 1,
                                          -(5 * step) - half - 1};
  const std::vector<absl::int128> rounded = {4 * step, -3 * step, 0, -6 * step};
  SeededRandomSource a(11), b(11);
  const std::vector<absl::int128> noised = noise->Noise(sums, a);
  const std::vector<absl::int128> noise_alone =
      noise->Noise(std::vector<absl::int128>(4, absl::int128(0)), b);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(noised[i] - noise_alone[i], rounded[i]) << i;
}

TEST(CentralDiscreteNoiseTest, NoNoiseAndBadArguments) {
  auto none = CentralDiscreteNoise::Create(0, 1, 3);
  ASSERT_TRUE(none.ok());
  SeededRandomSource random(1);
  const std::vector<absl::int128> sums = {1, -2, 3};
  EXPECT_EQ(none->Noise(sums, random), sums);
  EXPECT_FALSE(CentralDiscreteNoise::Create(-1, 1, 3).ok());
  EXPECT_FALSE(CentralDiscreteNoise::Create(std::nan(""), 1, 3).ok());
  EXPECT_FALSE(CentralDiscreteNoise::Create(1, 0, 3).ok());
  EXPECT_FALSE(CentralDiscreteNoise::Create(1, 1, 0).ok());
  EXPECT_FALSE(CentralDiscreteNoise::Create(1e20, 1, int64_t{1} << 40).ok());  // z sqrt(d) > 2^24
}

}  // namespace
}  // namespace fedkit::privacy
