#include "server/client_sampler.h"

#include <set>

#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

TEST(SampleClientsTest, DistinctSortedInRangeAndDeterministic) {
  auto a = SampleClients(1000, 100, 7);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 100u);
  EXPECT_TRUE(std::is_sorted(a->begin(), a->end()));
  EXPECT_EQ(std::set<int64_t>(a->begin(), a->end()).size(), 100u);
  EXPECT_GE(a->front(), 0);
  EXPECT_LT(a->back(), 1000);
  EXPECT_EQ(*a, *SampleClients(1000, 100, 7));
  EXPECT_NE(*a, *SampleClients(1000, 100, 8));
}

TEST(SampleClientsTest, WholePopulationAndHugePopulation) {
  auto all = SampleClients(50, 50, 1);
  ASSERT_TRUE(all.ok());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ((*all)[i], i);
  auto huge = SampleClients(int64_t{1} << 40, 10, 1);  // O(k) memory
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(huge->size(), 10u);
}

TEST(SampleClientsTest, RoughlyUniform) {
  // Each of 20 clients is picked with probability 5/20 per draw; over 4000 draws the expected count
  // is 1000 with standard deviation ~27, so [850, 1150] fails only on a real bias.
  std::vector<int> counts(20, 0);
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    const std::vector<int64_t> sample = *SampleClients(20, 5, seed);
    for (int64_t c : sample) ++counts[c];
  }
  for (int c : counts) {
    EXPECT_GT(c, 850);
    EXPECT_LT(c, 1150);
  }
}

TEST(SampleClientsTest, InvalidSizes) {
  EXPECT_FALSE(SampleClients(10, 0, 1).ok());
  EXPECT_FALSE(SampleClients(10, 11, 1).ok());
}

}  // namespace
}  // namespace fedkit::server
