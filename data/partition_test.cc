#include "data/partition.h"

#include <algorithm>
#include <cctype>
#include <cmath>
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

// NIID-Bench kinds (Li et al. 2022). Sizes are not equal by design, so they get their own suite.
class NiidBenchKindTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NiidBenchKindTest, AssignsEveryIndexExactlyOnce) {
  const auto labels = BalancedLabels(6001);
  const auto parts = MustPartition(labels, GetParam(), 11);
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

TEST_P(NiidBenchKindTest, DeterministicInSeed) {
  const auto labels = BalancedLabels();
  const auto a = MustPartition(labels, GetParam(), 7);
  const auto b = MustPartition(labels, GetParam(), 7);
  const auto c = MustPartition(labels, GetParam(), 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

INSTANTIATE_TEST_SUITE_P(NiidBench, NiidBenchKindTest,
                         ::testing::Values("labels:1", "labels:2", "labels:10", "quantity:0.1",
                                           "quantity:10", "noise:0", "noise:0.5"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace_if(
                               name.begin(), name.end(),
                               [](char ch) {
                                 return !std::isalnum(static_cast<unsigned char>(ch));
                               },
                               '_');
                           return name;
                         });

std::set<int64_t> DistinctLabels(const std::vector<int64_t>& labels,
                                 const std::vector<int64_t>& client) {
  std::set<int64_t> distinct;
  for (int64_t i : client) distinct.insert(labels[static_cast<size_t>(i)]);
  return distinct;
}

TEST(PartitionTest, LabelsGiveExactlyKDistinctLabelsPerClient) {
  const auto labels = BalancedLabels();
  for (int k : {1, 2, 3, 5, 9, 10}) {
    const auto parts = MustPartition(labels, "labels:" + std::to_string(k), 12);
    ASSERT_EQ(parts.size(), static_cast<size_t>(kNumClients));
    std::vector<int64_t> holders(kNumClasses, 0);
    for (const auto& client : parts) {
      const auto distinct = DistinctLabels(labels, client);
      EXPECT_EQ(distinct.size(), static_cast<size_t>(k)) << "labels:" << k;
      for (int64_t label : distinct) ++holders[static_cast<size_t>(label)];
    }
    // Client i's first label is i mod 10, so with 100 clients every label has >= 10 holders.
    for (int64_t h : holders) EXPECT_GE(h, 10) << "labels:" << k;
  }
}

TEST(PartitionTest, LabelsSplitEachLabelEquallyAmongItsHolders) {
  const auto labels = BalancedLabels();
  const auto parts = MustPartition(labels, "labels:3", 13);
  for (int64_t label = 0; label < kNumClasses; ++label) {
    int64_t lo = INT64_MAX, hi = 0, total = 0;
    for (const auto& client : parts) {
      const int64_t count = std::count_if(client.begin(), client.end(), [&](int64_t i) {
        return labels[static_cast<size_t>(i)] == label;
      });
      if (count == 0) continue;
      lo = std::min(lo, count);
      hi = std::max(hi, count);
      total += count;
    }
    EXPECT_EQ(total, 600) << "label " << label;
    EXPECT_LE(hi - lo, 1) << "label " << label;
  }
}

TEST(PartitionTest, LabelsCoverEveryLabelWithFewClients) {
  // 4 clients x 3 labels >= 10 labels: every label must have a holder, or examples would be lost.
  const auto labels = BalancedLabels(1000);
  auto parts = Partition(labels, kNumClasses, 4, Spec("labels:3"), 14);
  ASSERT_TRUE(parts.ok()) << parts.status();
  size_t total = 0;
  std::set<int64_t> covered;
  for (const auto& client : *parts) {
    const auto distinct = DistinctLabels(labels, client);
    EXPECT_EQ(distinct.size(), 3u);
    covered.insert(distinct.begin(), distinct.end());
    total += client.size();
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(kNumClasses));
  EXPECT_EQ(total, labels.size());
}

TEST(PartitionTest, LabelsRejectsKOutOfRange) {
  const auto labels = BalancedLabels(1000);
  auto too_big = Partition(labels, kNumClasses, 10, Spec("labels:11"), 0);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("[1, 10]"));
  EXPECT_TRUE(Partition(labels, kNumClasses, 10, Spec("labels:10"), 0).ok());

  PartitionSpec zero;
  zero.kind = PartitionSpec::Kind::kLabels;
  zero.labels = 0;
  EXPECT_EQ(Partition(labels, kNumClasses, 10, zero, 0).status().code(),
            absl::StatusCode::kInvalidArgument);

  // 3 clients x 3 labels cannot hold all 10 labels.
  EXPECT_EQ(Partition(labels, kNumClasses, 3, Spec("labels:3"), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Partition(labels, kNumClasses, 4, Spec("labels:3"), 0).ok());

  // Only labels 0 and 3 occur: at most 2 distinct labels per client.
  std::vector<int64_t> two(1000);
  for (size_t i = 0; i < two.size(); ++i) two[i] = i % 2 == 0 ? 0 : 3;
  EXPECT_EQ(Partition(two, kNumClasses, 10, Spec("labels:3"), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto ok = Partition(two, kNumClasses, 10, Spec("labels:2"), 0);
  ASSERT_TRUE(ok.ok()) << ok.status();
  for (const auto& client : *ok) EXPECT_EQ(DistinctLabels(two, client).size(), 2u);

  // Label 0 has one example but 10 holders (clients 0, 2, ..., 18): 9 of them would be empty.
  std::vector<int64_t> scarce(20, 1);
  scarce[0] = 0;
  auto empty = Partition(scarce, 2, 20, Spec("labels:1"), 0);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("no example"));
}

double CoefficientOfVariation(const std::vector<std::vector<int64_t>>& parts) {
  double mean = 0;
  for (const auto& client : parts) mean += static_cast<double>(client.size());
  mean /= static_cast<double>(parts.size());
  double var = 0;
  for (const auto& client : parts) {
    const double d = static_cast<double>(client.size()) - mean;
    var += d * d;
  }
  var /= static_cast<double>(parts.size());
  return std::sqrt(var) / mean;
}

TEST(PartitionTest, QuantitySkewDependsOnBeta) {
  const auto labels = BalancedLabels();
  for (const char* spec : {"quantity:0.1", "quantity:100", "quantity:0.0001"}) {
    const auto parts = MustPartition(labels, spec, 15);
    ASSERT_EQ(parts.size(), static_cast<size_t>(kNumClients));
    size_t total = 0;
    for (const auto& client : parts) {
      EXPECT_GE(client.size(), 10u) << spec;  // the floor, min(10, 6000 / 100)
      total += client.size();
    }
    EXPECT_EQ(total, labels.size()) << spec;
  }
  // Dir(beta) over 100 clients: CV ~ sqrt(99 / (100 beta + 1)), about 3 for 0.1 and 0.1 for 100.
  const double skewed = CoefficientOfVariation(MustPartition(labels, "quantity:0.1", 16));
  const double flat = CoefficientOfVariation(MustPartition(labels, "quantity:100", 16));
  EXPECT_GT(skewed, 1.0);
  EXPECT_LT(flat, 0.3);
}

TEST(PartitionTest, QuantityKeepsEveryClientNonEmptyAtTheLimit) {
  // As many clients as examples: every client gets exactly one.
  const auto labels = BalancedLabels(100);
  auto parts = Partition(labels, kNumClasses, 100, Spec("quantity:0.01"), 17);
  ASSERT_TRUE(parts.ok()) << parts.status();
  for (const auto& client : *parts) EXPECT_EQ(client.size(), 1u);
}

TEST(PartitionTest, QuantityLabelMixIsIidForBigClients) {
  const auto labels = BalancedLabels(60000);
  auto parts = Partition(labels, kNumClasses, 20, Spec("quantity:0.5"), 18);
  ASSERT_TRUE(parts.ok()) << parts.status();
  int big = 0;
  for (const auto& client : *parts) {
    if (client.size() < 1000) continue;
    ++big;
    std::vector<int64_t> counts(kNumClasses, 0);
    for (int64_t i : client) ++counts[static_cast<size_t>(labels[static_cast<size_t>(i)])];
    for (int64_t count : counts) {
      // Binomial std of the fraction is <= 0.0095 at 1000 examples; 0.05 is > 5 of them.
      EXPECT_NEAR(static_cast<double>(count) / static_cast<double>(client.size()), 0.1, 0.05);
    }
  }
  EXPECT_GE(big, 3);
}

TEST(PartitionTest, NoiseSplitsLikeIid) {
  const auto labels = BalancedLabels();
  EXPECT_EQ(MustPartition(labels, "noise:0.3", 19), MustPartition(labels, "iid", 19));
}

double StdDev(const std::vector<float>& values) {
  double mean = 0;
  for (float v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double var = 0;
  for (float v : values) var += (v - mean) * (v - mean);
  return std::sqrt(var / static_cast<double>(values.size()));
}

TEST(PartitionTest, NoiseGrowsWithClientIndex) {
  const PartitionSpec spec = Spec("noise:0.4");
  EXPECT_EQ(ClientFeatureNoiseStd(spec, 0, 100), 0.0);
  EXPECT_DOUBLE_EQ(ClientFeatureNoiseStd(spec, 50, 100), 0.2);
  EXPECT_DOUBLE_EQ(ClientFeatureNoiseStd(spec, 99, 100), 0.396);
  EXPECT_EQ(ClientFeatureNoiseStd(spec, 100, 100), 0.0);  // outside the population
  EXPECT_EQ(ClientFeatureNoiseStd(Spec("iid"), 50, 100), 0.0);

  const std::vector<float> clean(200000, 0.5f);
  std::vector<float> client0 = clean;
  AddClientFeatureNoise(spec, 0, 100, 21, &client0);
  EXPECT_EQ(client0, clean);

  for (int64_t client : {25, 50, 99}) {
    std::vector<float> noisy = clean;
    AddClientFeatureNoise(spec, client, 100, 21, &noisy);
    const double expected = 0.4 * static_cast<double>(client) / 100.0;
    // 200000 draws: the sample std is within ~0.2% of the true one; allow 2%.
    EXPECT_NEAR(StdDev(noisy), expected, 0.02 * expected) << "client " << client;
    double mean = 0;
    for (float v : noisy) mean += v;
    EXPECT_NEAR(mean / static_cast<double>(noisy.size()), 0.5, 0.01) << "client " << client;
  }

  std::vector<float> iid = clean;
  AddClientFeatureNoise(Spec("iid"), 50, 100, 21, &iid);
  EXPECT_EQ(iid, clean);
}

TEST(PartitionTest, NoiseIsDeterministicInSeedAndClient) {
  const PartitionSpec spec = Spec("noise:1");
  const std::vector<float> clean(1000, 0.0f);
  auto noised = [&](int64_t client, uint64_t seed) {
    std::vector<float> v = clean;
    AddClientFeatureNoise(spec, client, 10, seed, &v);
    return v;
  };
  EXPECT_EQ(noised(3, 5), noised(3, 5));
  EXPECT_NE(noised(3, 5), noised(3, 6));
  EXPECT_NE(noised(3, 5), noised(4, 5));
  EXPECT_NE(noised(3, 5), clean);
}

TEST(PartitionTest, NiidBenchSingleClientGetsEverything) {
  const auto labels = BalancedLabels(50);
  for (const char* spec : {"labels:10", "quantity:0.5", "noise:1"}) {
    auto parts = Partition(labels, kNumClasses, 1, Spec(spec), 0);
    ASSERT_TRUE(parts.ok()) << spec << ": " << parts.status();
    ASSERT_EQ(parts->size(), 1u);
    EXPECT_EQ((*parts)[0].size(), 50u) << spec;
  }
}

TEST(PartitionTest, ParsesNiidBenchSpecs) {
  auto labels = ParsePartitionSpec("labels:2");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->kind, PartitionSpec::Kind::kLabels);
  EXPECT_EQ(labels->labels, 2);

  auto quantity = ParsePartitionSpec("quantity:0.5");
  ASSERT_TRUE(quantity.ok()) << quantity.status();
  EXPECT_EQ(quantity->kind, PartitionSpec::Kind::kQuantity);
  EXPECT_DOUBLE_EQ(quantity->beta, 0.5);

  auto noise = ParsePartitionSpec("noise:0.1");
  ASSERT_TRUE(noise.ok()) << noise.status();
  EXPECT_EQ(noise->kind, PartitionSpec::Kind::kNoise);
  EXPECT_DOUBLE_EQ(noise->sigma, 0.1);

  auto clean = ParsePartitionSpec("noise:0");
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_EQ(clean->sigma, 0.0);
}

TEST(PartitionTest, RejectsBadNiidBenchSpecsQuotingText) {
  for (const char* text :
       {"labels:0", "labels:-1", "labels:1.5", "labels:", "labels:x", "quantity:0", "quantity:-1",
        "quantity:x", "quantity:", "quantity:inf", "quantity:nan", "noise:-0.1", "noise:x",
        "noise:", "noise:nan", "noise:inf", "labels", "quantity", "noise"}) {
    auto spec = ParsePartitionSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << text << "\"";
    EXPECT_THAT(spec.status().message(), HasSubstr(std::string("\"") + text + "\""));
  }
}

TEST(PartitionTest, RejectsBadNiidBenchFieldsSetDirectly) {
  const auto labels = BalancedLabels(100);
  PartitionSpec quantity;
  quantity.kind = PartitionSpec::Kind::kQuantity;
  quantity.beta = 0;
  EXPECT_EQ(Partition(labels, kNumClasses, 10, quantity, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  PartitionSpec noise;
  noise.kind = PartitionSpec::Kind::kNoise;
  noise.sigma = -1;
  EXPECT_EQ(Partition(labels, kNumClasses, 10, noise, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedkit::data
