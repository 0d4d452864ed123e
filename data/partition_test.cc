#include "data/partition.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

using ::testing::HasSubstr;

constexpr int kNumClasses = 10;
constexpr int64_t kNumClients = 100;

// 6000 labels, 600 per class, interleaved so label order says nothing about index order.
std::vector<int64_t> BalancedLabels(int64_t n = 6000) {
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % kNumClasses;
  return labels;
}

PartitionSpec Spec(const std::string& text) {
  auto spec = ParsePartitionSpec(text);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.value_or(PartitionSpec{});
}

std::vector<std::vector<int64_t>> MustPartition(const std::vector<int64_t>& labels,
                                                const std::string& spec, uint64_t seed,
                                                int64_t clients = kNumClients) {
  auto parts = Partition(labels, kNumClasses, clients, Spec(spec), seed);
  EXPECT_TRUE(parts.ok()) << spec << ": " << parts.status();
  return parts.value_or(std::vector<std::vector<int64_t>>{});
}

// Mean over clients of (count of the client's most frequent label) / (client size).
double MeanMaxClassFraction(const std::vector<int64_t>& labels,
                            const std::vector<std::vector<int64_t>>& parts) {
  double sum = 0;
  for (const auto& client : parts) {
    std::vector<int64_t> counts(kNumClasses, 0);
    for (int64_t i : client) ++counts[static_cast<size_t>(labels[static_cast<size_t>(i)])];
    sum += static_cast<double>(*std::max_element(counts.begin(), counts.end())) /
           static_cast<double>(client.size());
  }
  return sum / static_cast<double>(parts.size());
}

class PartitionKindTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PartitionKindTest, AssignsEveryIndexExactlyOnce) {
  const auto labels = BalancedLabels();
  const auto parts = MustPartition(labels, GetParam(), 1);
  ASSERT_EQ(parts.size(), static_cast<size_t>(kNumClients));
  std::vector<int> seen(labels.size(), 0);
  for (const auto& client : parts) {
    EXPECT_FALSE(client.empty());
    for (int64_t i : client) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, static_cast<int64_t>(labels.size()));
      ++seen[static_cast<size_t>(i)];
    }
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<int64_t>(labels.size()));
}

TEST_P(PartitionKindTest, SizesAreEqualWithinOne) {
  // 6001 examples so the split cannot be exactly even.
  const auto labels = BalancedLabels(6001);
  const auto parts = MustPartition(labels, GetParam(), 2);
  ASSERT_EQ(parts.size(), static_cast<size_t>(kNumClients));
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& client : parts) {
    lo = std::min(lo, client.size());
    hi = std::max(hi, client.size());
  }
  EXPECT_LE(hi - lo, 1u);
  EXPECT_EQ(lo, 60u);
}

TEST_P(PartitionKindTest, DeterministicInSeed) {
  const auto labels = BalancedLabels();
  const auto a = MustPartition(labels, GetParam(), 7);
  const auto b = MustPartition(labels, GetParam(), 7);
  const auto c = MustPartition(labels, GetParam(), 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, PartitionKindTest,
    ::testing::Values("iid", "dirichlet:0.5", "dirichlet:100", "shards:2"), [](const auto& info) {
      std::string name = info.param;
      std::replace_if(
          name.begin(), name.end(),
          [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); }, '_');
      return name;
    });

TEST(PartitionTest, IidIsRoughlyBalancedPerClass) {
  const auto labels = BalancedLabels();
  const auto parts = MustPartition(labels, "iid", 3);
  EXPECT_LT(MeanMaxClassFraction(labels, parts), 0.3);
}

TEST(PartitionTest, DirichletSkewDependsOnAlpha) {
  const auto labels = BalancedLabels();
  const double skewed = MeanMaxClassFraction(labels, MustPartition(labels, "dirichlet:0.1", 4));
  const double flat = MeanMaxClassFraction(labels, MustPartition(labels, "dirichlet:100", 4));
  EXPECT_GT(skewed, 0.6);
  EXPECT_LT(flat, 0.3);
}

TEST(PartitionTest, DirichletHandlesTinyAlpha) {
  // alpha * p = 1e-5 per class: plain Gamma draws would all underflow to zero.
  const auto labels = BalancedLabels();
  const auto parts = MustPartition(labels, "dirichlet:0.0001", 5);
  size_t total = 0;
  for (const auto& client : parts) total += client.size();
  EXPECT_EQ(total, labels.size());
  EXPECT_GT(MeanMaxClassFraction(labels, parts), 0.7);
}

TEST(PartitionTest, DirichletSkipsAbsentClasses) {
  // Only classes 0 and 3 occur; nothing must break on the empty ones.
  std::vector<int64_t> labels(1000);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = i % 2 == 0 ? 0 : 3;
  auto parts = Partition(labels, kNumClasses, 10, Spec("dirichlet:1"), 6);
  ASSERT_TRUE(parts.ok()) << parts.status();
  for (const auto& client : *parts) EXPECT_EQ(client.size(), 100u);
}

TEST(PartitionTest, ShardsGiveAtMostTwoLabelsPerClient) {
  const auto labels = BalancedLabels();
  // 200 shards of 30; each class's 600 examples fill exactly 20 shards.
  const auto parts = MustPartition(labels, "shards:2", 9);
  for (const auto& client : parts) {
    std::set<int64_t> distinct;
    for (int64_t i : client) distinct.insert(labels[static_cast<size_t>(i)]);
    EXPECT_LE(distinct.size(), 2u);
    EXPECT_EQ(client.size(), 60u);
  }
}

TEST(PartitionTest, SingleClientGetsEverything) {
  const auto labels = BalancedLabels(50);
  for (const char* spec : {"iid", "dirichlet:0.3", "shards:5"}) {
    auto parts = Partition(labels, kNumClasses, 1, Spec(spec), 0);
    ASSERT_TRUE(parts.ok()) << spec << ": " << parts.status();
    ASSERT_EQ(parts->size(), 1u);
    EXPECT_EQ((*parts)[0].size(), 50u) << spec;
  }
}

TEST(PartitionTest, ParsesGoodSpecs) {
  auto iid = ParsePartitionSpec("iid");
  ASSERT_TRUE(iid.ok());
  EXPECT_EQ(iid->kind, PartitionSpec::Kind::kIid);

  auto dir = ParsePartitionSpec("dirichlet:0.5");
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir->kind, PartitionSpec::Kind::kDirichlet);
  EXPECT_DOUBLE_EQ(dir->alpha, 0.5);

  auto shards = ParsePartitionSpec("shards:3");
  ASSERT_TRUE(shards.ok());
  EXPECT_EQ(shards->kind, PartitionSpec::Kind::kShards);
  EXPECT_EQ(shards->shards, 3);

  auto natural = ParsePartitionSpec("natural");
  ASSERT_TRUE(natural.ok());
  EXPECT_EQ(natural->kind, PartitionSpec::Kind::kNatural);
}

TEST(PartitionTest, RejectsBadSpecsQuotingText) {
  for (const char* text :
       {"dirichlet:0", "dirichlet:-1", "dirichlet:x", "dirichlet:", "dirichlet:nan", "shards:0",
        "shards:1.5", "shards:", "foo", "", "IID"}) {
    auto spec = ParsePartitionSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << text << "\"";
    EXPECT_THAT(spec.status().message(), HasSubstr(std::string("\"") + text + "\""));
  }
}

TEST(PartitionTest, RejectsBadArguments) {
  const auto labels = BalancedLabels(100);
  const PartitionSpec iid = Spec("iid");
  EXPECT_EQ(Partition(labels, kNumClasses, 0, iid, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Partition(labels, kNumClasses, 101, iid, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Partition(labels, kNumClasses, 100, iid, 0).ok());
  EXPECT_EQ(Partition(labels, kNumClasses, 50, Spec("shards:3"), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Partition(labels, kNumClasses, 50, Spec("shards:2"), 0).ok());
  EXPECT_EQ(Partition(labels, kNumClasses, 10, Spec("natural"), 0).status().code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<int64_t> bad = labels;
  bad[17] = 10;
  auto out_of_range = Partition(bad, kNumClasses, 10, iid, 0);
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out_of_range.status().message(), HasSubstr("17"));
  bad[17] = -1;
  EXPECT_EQ(Partition(bad, kNumClasses, 10, iid, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedkit::data
