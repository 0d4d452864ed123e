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

namespace fedkit::server {
namespace {

TEST(CapPerIdentityTest, WithinTheFairShareTheSampleIsUnchanged) {
  // Every client its own identity (anonymous callers, certificates): never changed.
  const std::vector<std::string> own(10);
  EXPECT_EQ(CapPerIdentity({1, 4, 7}, own, 3), (std::vector<int64_t>{1, 4, 7}));
  // Two identities of five, a sample of four: a share of two each.
  const std::vector<std::string> two = {"a", "a", "a", "a", "a", "b", "b", "b", "b", "b"};
  EXPECT_EQ(CapPerIdentity({0, 1, 5, 6}, two, 3), (std::vector<int64_t>{0, 1, 5, 6}));
}

TEST(CapPerIdentityTest, SybilsOfOneTokenCannotCrowdOutOtherCallers) {
  // 1,000 ids of one token, then two honest devices; a sample of three drawn from the sybils.
  std::vector<std::string> identities(1000, "token:flood");
  identities.push_back("token:honest");
  identities.push_back("");
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<int64_t> capped = CapPerIdentity({3, 500, 999}, identities, seed);
    ASSERT_EQ(capped.size(), 3u);
    EXPECT_EQ(capped, (std::vector<int64_t>{3, 1000, 1001})) << seed;  // keeps its first pick
  }
  // A sample of two: one sybil, and one of the two honest devices (chosen by the seed).
  int honest_first = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<int64_t> capped = CapPerIdentity({10, 20}, identities, seed);
    ASSERT_EQ(capped.size(), 2u);
    EXPECT_EQ(capped[0], 10);
    ASSERT_TRUE(capped[1] == 1000 || capped[1] == 1001);
    honest_first += capped[1] == 1000;
  }
  EXPECT_GT(honest_first, 60);
  EXPECT_LT(honest_first, 140);
}

TEST(CapPerIdentityTest, TheShareGrowsWhenOtherIdentitiesRunOut) {
  // One honest device and many sybils; a sample of five keeps five, four of them sybils.
  std::vector<std::string> identities(9, "token:fleet");
  identities.push_back("");
  const std::vector<int64_t> capped = CapPerIdentity({0, 1, 2, 3, 4}, identities, 1);
  ASSERT_EQ(capped.size(), 5u);
  EXPECT_EQ(std::count(capped.begin(), capped.end(), 9), 1);
  EXPECT_EQ(std::count_if(capped.begin(), capped.end(), [](int64_t i) { return i < 9; }), 4);
  EXPECT_TRUE(std::is_sorted(capped.begin(), capped.end()));
}

}  // namespace
}  // namespace fedkit::server
