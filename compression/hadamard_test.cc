#include "compression/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace fedkit::compression {
namespace {

std::vector<float> Gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

double Norm(const std::vector<float>& v) {
  double s = 0.0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

TEST(HadamardTest, BlockSizesAreTheBinaryDigits) {
  EXPECT_EQ(RotationBlockSizes(199210),
            (std::vector<int64_t>{65536, 65536, 65536, 2048, 512, 32, 8, 2}));
  EXPECT_EQ(RotationBlockSizes(1), (std::vector<int64_t>{1}));
  EXPECT_EQ(RotationBlockSizes(65536), (std::vector<int64_t>{65536}));
  EXPECT_EQ(RotationBlockSizes(7), (std::vector<int64_t>{4, 2, 1}));
  EXPECT_TRUE(RotationBlockSizes(0).empty());
  for (int64_t n : {1, 5, 1000, 65537, 199210}) {
    const std::vector<int64_t> sizes = RotationBlockSizes(n);
    EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}), n);
  }
}

TEST(HadamardTest, PreservesNormAndRoundTrips) {
  for (int64_t n : {1, 2, 3, 1000, 4096, 199210}) {
    const std::vector<float> original = Gaussian(n, static_cast<uint32_t>(n));
    std::vector<float> v = original;
    RotateInPlace(absl::MakeSpan(v), 42);
    EXPECT_NEAR(Norm(v), Norm(original), 1e-6 * Norm(original)) << n;
    if (n >= 1000) EXPECT_NE(v, original);
    InverseRotateInPlace(absl::MakeSpan(v), 42);
    double max_error = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      max_error = std::max(max_error, std::fabs(static_cast<double>(v[i]) - original[i]));
    }
    // Double arithmetic inside: only the two roundings to float remain.
    EXPECT_LE(max_error, 1e-6) << n;
  }
}

TEST(HadamardTest, DeterministicInTheSeedAndDifferentAcrossSeeds) {
  const std::vector<float> original = Gaussian(5000, 1);
  std::vector<float> a = original, b = original, c = original;
  RotateInPlace(absl::MakeSpan(a), 7);
  RotateInPlace(absl::MakeSpan(b), 7);
  RotateInPlace(absl::MakeSpan(c), 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(HadamardTest, SpreadsASpike) {
  // All the energy on one coordinate: after rotation every coordinate of the block carries
  // 1/sqrt(block) of it in magnitude.
  std::vector<float> v(4096, 0.0f);
  v[17] = 1.0f;
  RotateInPlace(absl::MakeSpan(v), 3);
  for (float x : v) EXPECT_NEAR(std::fabs(x), 1.0 / 64.0, 1e-7);
}

TEST(HadamardTest, DoubleMatchesFloat) {
  const std::vector<float> original = Gaussian(3000, 5);
  std::vector<float> f = original;
  std::vector<double> d(original.begin(), original.end());
  RotateInPlace(absl::MakeSpan(f), 9);
  RotateInPlace(absl::MakeSpan(d), 9);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], static_cast<float>(d[i]));
  InverseRotateInPlace(absl::MakeSpan(d), 9);
  for (size_t i = 0; i < d.size(); ++i) EXPECT_NEAR(d[i], original[i], 1e-12);
}

}  // namespace
}  // namespace fedkit::compression
