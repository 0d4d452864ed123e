#include "data/local_eval_split.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "data/federated_dataset.h"
#include "data/natural_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::data {
namespace {

using ::testing::HasSubstr;

TEST(LocalHeldOutCountTest, RoundsTheFractionAndKeepsOneOfEach) {
  EXPECT_EQ(LocalHeldOutCount(0, 0.2), 0);
  EXPECT_EQ(LocalHeldOutCount(1, 0.2), 0);
  EXPECT_EQ(LocalHeldOutCount(2, 0.2), 1);  // round(0.4) = 0, raised to 1
  EXPECT_EQ(LocalHeldOutCount(2, 0.9), 1);  // round(1.8) = 2, lowered to n - 1
  EXPECT_EQ(LocalHeldOutCount(10, 0.2), 2);
  EXPECT_EQ(LocalHeldOutCount(12, 0.2), 2);  // 2.4
  EXPECT_EQ(LocalHeldOutCount(13, 0.2), 3);  // 2.6
  EXPECT_EQ(LocalHeldOutCount(600, 0.2), 120);
  EXPECT_EQ(LocalHeldOutCount(100, 0.99), 99);
  EXPECT_EQ(LocalHeldOutCount(100, 0.001), 1);
}

TEST(SplitClientRowsTest, DisjointCoveringSortedAndOfTheRightSize) {
  for (int64_t n : {0, 1, 2, 3, 7, 10, 57, 600}) {
    for (double fraction : {0.1, 0.2, 0.5, 0.9}) {
      const ClientRowSplit split = SplitClientRows(n, fraction, /*seed=*/3, /*client=*/n);
      EXPECT_EQ(static_cast<int64_t>(split.held_out.size()), LocalHeldOutCount(n, fraction))
          << n << " " << fraction;
      EXPECT_TRUE(std::is_sorted(split.train.begin(), split.train.end()));
      EXPECT_TRUE(std::is_sorted(split.held_out.begin(), split.held_out.end()));
      std::vector<int64_t> all = split.train;
      all.insert(all.end(), split.held_out.begin(), split.held_out.end());
      std::sort(all.begin(), all.end());
      std::vector<int64_t> expected(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) expected[static_cast<size_t>(i)] = i;
      EXPECT_EQ(all, expected) << "n " << n << ": the two parts must be disjoint and cover [0, n)";
      if (n >= 2) {
        EXPECT_FALSE(split.train.empty()) << n << " " << fraction;
        EXPECT_FALSE(split.held_out.empty()) << n << " " << fraction;
      }
    }
  }
}

TEST(SplitClientRowsTest, DeterministicPerSeedAndClientAndDifferentAcrossThem) {
  const ClientRowSplit a = SplitClientRows(100, 0.2, 7, 4);
  EXPECT_EQ(SplitClientRows(100, 0.2, 7, 4).held_out, a.held_out);
  EXPECT_NE(SplitClientRows(100, 0.2, 8, 4).held_out, a.held_out);
  EXPECT_NE(SplitClientRows(100, 0.2, 7, 5).held_out, a.held_out);
  // Not simply the first or last rows.
  EXPECT_NE(a.held_out.front(), 0);
  EXPECT_NE(a.held_out.back() - a.held_out.front(), 19);
}

// Clients of 0..5 examples plus one of 50, each example's feature its global id, label id % 3.
std::unique_ptr<FederatedDataset> Natural(bool with_test) {
  NaturalDatasetParts parts;
  parts.source = "test";
  parts.info.feature_shape = {1};
  parts.info.num_classes = 3;
  parts.examples.feature_dim = 1;
  for (int64_t n : {2, 1, 5, 3, 50}) {
    std::vector<int64_t>& rows = parts.client_rows.emplace_back();
    for (int64_t i = 0; i < n; ++i) {
      rows.push_back(parts.examples.size());
      parts.examples.features.push_back(static_cast<float>(parts.examples.size()));
      parts.examples.labels.push_back(parts.examples.size() % 3);
    }
  }
  if (with_test) {
    // Client c's test rows: c + 1 rows with features 1000 + row.
    Examples test;
    test.feature_dim = 1;
    for (size_t c = 0; c < parts.client_rows.size(); ++c) {
      std::vector<int64_t>& rows = parts.test_client_rows.emplace_back();
      for (size_t i = 0; i <= c; ++i) {
        rows.push_back(test.size());
        test.features.push_back(1000.0f + static_cast<float>(test.size()));
        test.labels.push_back(0);
      }
    }
    parts.test = std::move(test);
  }
  auto dataset = MakeNaturalDataset(std::move(parts), 0);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  return *std::move(dataset);
}

// Minus the natural dataset's own 10% hold-out: a fraction split over a base without test rows.
class NoClientTests : public FederatedDataset {
 public:
  explicit NoClientTests(const FederatedDataset* base) : base_(base) {}
  int64_t num_clients() const override { return base_->num_clients(); }
  const DatasetInfo& info() const override { return base_->info(); }
  int64_t NumTrainExamples(int64_t c) const override { return base_->NumTrainExamples(c); }
  Examples TrainExamples(int64_t c) const override { return base_->TrainExamples(c); }
  const Examples& EvalExamples() const override { return base_->EvalExamples(); }

 private:
  const FederatedDataset* base_;
};

std::set<float> Features(const Examples& e) { return {e.features.begin(), e.features.end()}; }

TEST(LocalEvalDatasetTest, SplitsEachClientsExamplesWhenTheDataHasNoClientTests) {
  const std::unique_ptr<FederatedDataset> natural = Natural(/*with_test=*/true);
  const NoClientTests base(natural.get());
  ASSERT_FALSE(base.has_client_test_examples());
  auto split = LocalEvalDataset::Create(&base, {.fraction = 0.25, .seed = 5});
  ASSERT_TRUE(split.ok()) << split.status();
  const LocalEvalDataset& d = **split;
  EXPECT_TRUE(d.splits_training_examples());
  EXPECT_TRUE(d.has_client_test_examples());
  ASSERT_EQ(d.num_clients(), 5);
  EXPECT_EQ(&d.EvalExamples(), &base.EvalExamples());
  for (int64_t c = 0; c < d.num_clients(); ++c) {
    const Examples all = base.TrainExamples(c);
    const Examples train = d.TrainExamples(c);
    const Examples held_out = d.ClientTestExamples(c);
    EXPECT_EQ(d.NumTrainExamples(c), train.size());
    EXPECT_EQ(held_out.size(), LocalHeldOutCount(all.size(), 0.25));
    EXPECT_EQ(train.size() + held_out.size(), all.size());
    std::set<float> together = Features(train);
    for (float f : held_out.features) EXPECT_TRUE(together.insert(f).second) << "client " << c;
    EXPECT_EQ(together, Features(all)) << "client " << c;
    // Labels travel with their rows.
    for (int64_t i = 0; i < held_out.size(); ++i) {
      EXPECT_EQ(held_out.labels[i], static_cast<int64_t>(held_out.features[i]) % 3);
    }
  }
  EXPECT_EQ(d.ClientTestExamples(1).size(), 0);  // one example: it trains on it
  EXPECT_EQ(d.TrainExamples(1).size(), 1);
  EXPECT_EQ(d.ClientTestExamples(4).size(), 13);  // round(12.5) of 50, half away from zero
  // The same split from another instance (any thread, any process).
  auto again = LocalEvalDataset::Create(&base, {.fraction = 0.25, .seed = 5});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->ClientTestExamples(4).features, d.ClientTestExamples(4).features);
  auto other = LocalEvalDataset::Create(&base, {.fraction = 0.25, .seed = 6});
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->ClientTestExamples(4).features, d.ClientTestExamples(4).features);
}

TEST(LocalEvalDatasetTest, UsesTheDatasetsOwnClientTestsAndLeavesTrainingAlone) {
  const std::unique_ptr<FederatedDataset> base = Natural(/*with_test=*/true);
  ASSERT_TRUE(base->has_client_test_examples());
  auto split = LocalEvalDataset::Create(base.get(), {.fraction = 0.5, .seed = 5});
  ASSERT_TRUE(split.ok()) << split.status();
  const LocalEvalDataset& d = **split;
  EXPECT_FALSE(d.splits_training_examples());
  for (int64_t c = 0; c < d.num_clients(); ++c) {
    EXPECT_EQ(d.TrainExamples(c).features, base->TrainExamples(c).features);
    EXPECT_EQ(d.NumTrainExamples(c), base->NumTrainExamples(c));
    const Examples test = d.ClientTestExamples(c);
    EXPECT_EQ(test.size(), c + 1);
    for (float f : test.features) EXPECT_GE(f, 1000.0f);
  }
}

TEST(LocalEvalDatasetTest, RefusesBadFractionsNamingTheField) {
  const std::unique_ptr<FederatedDataset> base = Natural(/*with_test=*/false);
  for (double fraction : {0.0, 1.0, -0.1, 1.5}) {
    auto split = LocalEvalDataset::Create(base.get(), {.fraction = fraction});
    EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument) << fraction;
    EXPECT_THAT(split.status().message(), HasSubstr("`fraction`"));
  }
  EXPECT_FALSE(LocalEvalDataset::Create(nullptr, {}).ok());
}

TEST(NaturalDatasetTest, ClientTestExamplesAreTheHeldOutRowsWithoutATestSet) {
  const std::unique_ptr<FederatedDataset> d = Natural(/*with_test=*/false);
  ASSERT_TRUE(d->has_client_test_examples());
  // Only the client of 50 has >= 10 examples: its last 5 rows are the eval set.
  int64_t total = 0;
  for (int64_t c = 0; c < d->num_clients(); ++c) total += d->ClientTestExamples(c).size();
  EXPECT_EQ(total, d->EvalExamples().size());
  EXPECT_EQ(d->ClientTestExamples(4).features, d->EvalExamples().features);
  EXPECT_EQ(d->ClientTestExamples(4).features.front(), 11.0f + 45.0f);
  EXPECT_EQ(d->ClientTestExamples(0).size(), 0);
}

}  // namespace
}  // namespace fedkit::data
