#include "compression/random.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace fedkit::compression {
namespace {

// Pinned outputs: a change to the generator would make devices and coordinators of different
// versions disagree, so it must show up here. The values are those of the reference xoshiro256**
// seeded with SplitMix64 from 0 (state e220a8397b1dcdaf 6e789e6aa1b965f4 06c45d188009454f
// f88bb8a8724c81ec), computed independently in Python when this test was written.
TEST(Xoshiro256Test, OutputIsPinned) {
  Xoshiro256 rng(0);
  const uint64_t first = rng.Next();
  const uint64_t second = rng.Next();
  Xoshiro256 again(0);
  EXPECT_EQ(again.Next(), first);
  EXPECT_EQ(again.Next(), second);
  EXPECT_NE(first, second);
  EXPECT_NE(Xoshiro256(1).Next(), first);
  EXPECT_EQ(first, 0x99ec5f36cb75f2b4ULL);
  EXPECT_EQ(second, 0xbf6e1f784956452aULL);
}

TEST(Xoshiro256Test, BelowIsInRangeAndRoughlyUniform) {
  Xoshiro256 rng(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng.Below(10);
    ASSERT_LT(v, 10u);
    ++counts[v];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);  // 5 standard deviations
  EXPECT_EQ(rng.Below(1), 0u);
  EXPECT_EQ(rng.Below(0), 0u);
}

TEST(Xoshiro256Test, UniformUnitIsInRangeWithMeanOneHalf) {
  Xoshiro256 rng(11);
  double sum = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const double u = rng.UniformUnit();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);  // standard error 0.0009
}

TEST(RandomKIndicesTest, SortedDistinctInRangeAndDeterministic) {
  for (int64_t k : {0, 1, 5, 50, 99, 100}) {
    const std::vector<int64_t> indices = RandomKIndices(3, 100, k);
    ASSERT_EQ(static_cast<int64_t>(indices.size()), k);
    for (size_t i = 0; i < indices.size(); ++i) {
      EXPECT_GE(indices[i], 0);
      EXPECT_LT(indices[i], 100);
      if (i > 0) EXPECT_LT(indices[i - 1], indices[i]);
    }
    EXPECT_EQ(RandomKIndices(3, 100, k), indices);
  }
  EXPECT_NE(RandomKIndices(3, 1000, 10), RandomKIndices(4, 1000, 10));
  EXPECT_EQ(RandomKIndices(3, 10, 20).size(), 10u);  // clamped
  EXPECT_TRUE(RandomKIndices(3, 10, -1).empty());
  EXPECT_TRUE(RandomKIndices(3, 0, 1).empty());
}

TEST(RandomKIndicesTest, EveryPositionIsEquallyLikely) {
  std::vector<int> counts(20, 0);
  const int trials = 20000;
  for (int seed = 0; seed < trials; ++seed) {
    for (int64_t i : RandomKIndices(seed, 20, 5)) ++counts[i];
  }
  // Each position is kept with probability 1/4: mean 5000, standard deviation about 61.
  for (int c : counts) EXPECT_NEAR(c, 5000, 310);
}

}  // namespace
}  // namespace fedkit::compression
