#include "aggregation/aggregator.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/central_discrete_noise.h"
#include "privacy/noise.h"

namespace fedkit::aggregation {
namespace {

using ::testing::HasSubstr;

struct Update {
  std::vector<float> delta;
  int64_t examples = 1;
};

std::vector<Update> RandomUpdates(int n, int d, double clip, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> value(0.0f, 0.3f);
  std::uniform_int_distribution<int64_t> examples(1, 600);
  std::vector<Update> updates(n);
  for (Update& u : updates) {
    u.delta.resize(d);
    double squared = 0;
    for (float& v : u.delta) {
      v = value(rng);
      squared += v * v;
    }
    const double norm = std::sqrt(squared);
    if (norm > clip) {
      for (float& v : u.delta) v = static_cast<float>(v * (clip / norm));
    }
    u.examples = examples(rng);
  }
  return updates;
}

std::unique_ptr<Aggregator> FedAvg(int d) {
  return *WeightedFedAvgAggregator::Create(d, UpdateValueBound(1.0), kDefaultMaxWeight);
}

TEST(WeightedFedAvgAggregatorTest, AverageMatchesAHandComputedWeightedMean) {
  auto agg = FedAvg(3);
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{1.0f, 0.5f, -0.25f}, 1).ok());
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{-0.5f, 0.25f, 0.75f}, 3).ok());
  ASSERT_TRUE(agg->CanReport());
  absl::StatusOr<AggregateReport> report = agg->Report();
  ASSERT_TRUE(report.ok()) << report.status();
  // (1*1 + 3*-0.5)/4 = -0.125; (0.5 + 0.75)/4 = 0.3125; (-0.25 + 2.25)/4 = 0.5: all exact.
  EXPECT_EQ(report->average, (std::vector<float>{-0.125f, 0.3125f, 0.5f}));
  EXPECT_EQ(report->num_inputs, 2);
  EXPECT_EQ(report->total_weight, 4);
  EXPECT_EQ(report->total_examples, 4);
}

TEST(WeightedFedAvgAggregatorTest, AverageIsWithinRoundingOfTheExactMean) {
  constexpr int kD = 50;
  const std::vector<Update> updates = RandomUpdates(100, kD, 1.0, 7);
  auto agg = FedAvg(kD);
  for (const Update& u : updates) ASSERT_TRUE(agg->Accumulate(u.delta, u.examples).ok());
  const AggregateReport report = *agg->Report();
  for (int j = 0; j < kD; ++j) {
    long double num = 0, den = 0;
    for (const Update& u : updates) {
      num += static_cast<long double>(u.delta[j]) * u.examples;
      den += u.examples;
    }
    const float exact = static_cast<float>(num / den);
    // The fixed point's error (~1e-17) is far below float's: the float result is the correctly
    // rounded mean or its neighbour when the exact value lies within 1e-15 of a rounding boundary.
    EXPECT_LE(std::abs(report.average[j] - exact), std::abs(exact) * 1.2e-7f + 1e-30f) << j;
  }
}

// Any order, any split into partial aggregates, any grouping of the merges: one bit pattern.
TEST(AggregatorTest, MergeIsAssociativeAndOrderFree) {
  constexpr int kN = 120;
  constexpr int kD = 97;
  const std::vector<Update> updates = RandomUpdates(kN, kD, 1.0, 11);
  privacy::SeededRandomSource unused(1);
  using Factory = std::function<std::unique_ptr<Aggregator>()>;
  const std::vector<std::pair<std::string, Factory>> kinds = {
      {"fedavg", [] { return FedAvg(kD); }},
      {"dp", [&] {
         return std::unique_ptr<Aggregator>(
             *UnitWeightDpAggregator::Create(kD, UpdateValueBound(1.0), 0.0, 100.0, &unused));
       }}};
  for (const auto& [name, make] : kinds) {
    auto sequential = make();
    for (const Update& u : updates) ASSERT_TRUE(sequential->Accumulate(u.delta, u.examples).ok());
    const std::vector<absl::int128> expected = sequential->sum().fixed_point_sums();
    const std::vector<float> expected_average = sequential->Report()->average;

    std::mt19937 rng(3);
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<int> order(kN);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      // Three partial aggregates of uneven size, built from clones.
      std::vector<std::unique_ptr<Aggregator>> parts;
      for (int p = 0; p < 3; ++p) parts.push_back(sequential->CloneEmpty());
      for (int k = 0; k < kN; ++k) {
        const int part = k < 5 ? 0 : (k < 80 ? 1 : 2);
        const Update& u = updates[order[k]];
        ASSERT_TRUE(parts[part]->Accumulate(u.delta, u.examples).ok());
      }
      // (a + b) + c on even trials, a + (b + c) on odd ones.
      if (trial % 2 == 0) {
        ASSERT_TRUE(parts[0]->MergeWith(*parts[1]).ok());
        ASSERT_TRUE(parts[0]->MergeWith(*parts[2]).ok());
      } else {
        ASSERT_TRUE(parts[1]->MergeWith(*parts[2]).ok());
        ASSERT_TRUE(parts[0]->MergeWith(*parts[1]).ok());
      }
      EXPECT_EQ(parts[0]->num_inputs(), kN) << name;
      EXPECT_EQ(parts[0]->sum().fixed_point_sums(), expected) << name;
      EXPECT_EQ(parts[0]->Report()->average, expected_average) << name;
    }
  }
}

TEST(WeightedFedAvgAggregatorTest, OutOfRangeUpdatesAreRefusedAndLeaveTheAggregateUnchanged) {
  auto agg = *WeightedFedAvgAggregator::Create(2, 4.0, 100);
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{1, 2}, 10).ok());
  const std::vector<absl::int128> before = agg->sum().fixed_point_sums();
  absl::Status over = agg->Accumulate(std::vector<float>{1, 4.5f}, 1);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.message(), HasSubstr("update value 1"));
  EXPECT_EQ(agg->Accumulate(std::vector<float>{1, std::nanf("")}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agg->Accumulate(std::vector<float>{1, 1}, 101).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agg->Accumulate(std::vector<float>{1, 1}, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agg->Accumulate(std::vector<float>{1, 1, 1}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agg->sum().fixed_point_sums(), before);
  EXPECT_EQ(agg->num_inputs(), 1);
  // The extreme allowed term, many times: no wrap-around.
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(agg->Accumulate(std::vector<float>{4, -4}, 100).ok());
  const AggregateReport report = *agg->Report();
  EXPECT_EQ(report.total_weight, 10 + 10000 * 100);
  EXPECT_FLOAT_EQ(report.average[0], (10.0f + 4e6f) / (10 + 1e6f));
  EXPECT_FLOAT_EQ(report.average[1], (20.0f - 4e6f) / (10 + 1e6f));
}

TEST(WeightedFedAvgAggregatorTest, ConfigurationsThatCouldOverflowAreRefused) {
  EXPECT_EQ(WeightedFedAvgAggregator::Create(10, 1.0, kMaxWeightLimit + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WeightedFedAvgAggregator::Create(10, 1.0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WeightedFedAvgAggregator::Create(10, std::numeric_limits<double>::infinity(), 1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WeightedFedAvgAggregator::Create(0, 1.0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(WeightedFedAvgAggregator::Create(10, 1e6, kMaxWeightLimit).ok());
}

TEST(AggregatorTest, ReportOnceAndOnlyWithInputs) {
  auto agg = FedAvg(2);
  EXPECT_FALSE(agg->CanReport());
  EXPECT_EQ(agg->Report().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{0.5f, 0.5f}, 2).ok());
  ASSERT_TRUE(agg->Report().ok());
  EXPECT_FALSE(agg->CanReport());
  EXPECT_EQ(agg->Report().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(agg->Accumulate(std::vector<float>{0.5f, 0.5f}, 2).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(AggregatorTest, AggregatorsOfAnotherKindOrConfigurationDoNotMerge) {
  privacy::SeededRandomSource noise(1);
  auto fedavg = FedAvg(3);
  auto other_bound = *WeightedFedAvgAggregator::Create(3, 2.0, kDefaultMaxWeight);
  auto dp = *UnitWeightDpAggregator::Create(3, 1.0, 0.5, 10, &noise);
  auto dp_other = *UnitWeightDpAggregator::Create(3, 1.0, 0.7, 10, &noise);
  EXPECT_EQ(fedavg->MergeWith(*dp).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dp->MergeWith(*fedavg).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fedavg->MergeWith(*other_bound).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dp->MergeWith(*dp_other).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fedavg->MergeWith(*FedAvg(4)).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(UnitWeightDpAggregatorTest, WithoutNoiseTheReleaseIsTheSumOverTheFixedDenominator) {
  auto dp = *UnitWeightDpAggregator::Create(2, UpdateValueBound(1.0), 0.0, 4.0, nullptr);
  ASSERT_TRUE(dp->Accumulate(std::vector<float>{0.6f, 0.8f}, 100).ok());
  ASSERT_TRUE(dp->Accumulate(std::vector<float>{-0.5f, 0.25f}, 7).ok());
  const AggregateReport report = *dp->Report();
  // Weight 1 each, whatever the example counts; divided by 4, not by the 2 that arrived.
  EXPECT_EQ(report.average[0], static_cast<float>((0.6f - 0.5) / 4));
  EXPECT_EQ(report.average[1], static_cast<float>((0.8f + 0.25) / 4));
  EXPECT_EQ(report.total_weight, 2);
  EXPECT_EQ(report.total_examples, 107);
}

TEST(UnitWeightDpAggregatorTest, NoiseIsDiscreteGaussianOnTheExactIntegerSum) {
  constexpr int kD = 40;
  const std::vector<Update> updates = RandomUpdates(30, kD, 1.0, 5);
  privacy::SeededRandomSource noise(42);
  const double bound = UpdateValueBound(1.0);
  auto dp = *UnitWeightDpAggregator::Create(kD, bound, 1.3, 50.0, &noise);
  for (const Update& u : updates) ASSERT_TRUE(dp->Accumulate(u.delta, u.examples).ok());
  const ExactSum sum = dp->sum();
  const AggregateReport report = *dp->Report();
  privacy::SeededRandomSource same(42);
  EXPECT_EQ(report.average, *CentralDpRelease(sum, bound, 1.3, 50.0, same));
  // By hand: the discrete Gaussian on the grid of the integer sum (sensitivity: the bound plus the
  // terms' rounding), whole grid steps, then the division.
  const double scale = sum.fixed_point().scale;
  auto mechanism = privacy::CentralDiscreteNoise::Create(
      1.3 * scale, bound * scale + 0.5 * std::sqrt(static_cast<double>(kD)), kD);
  ASSERT_TRUE(mechanism.ok()) << mechanism.status();
  privacy::SeededRandomSource again(42);
  const std::vector<absl::int128> exact = sum.fixed_point_sums();
  const std::vector<absl::int128> noised = mechanism->Noise(exact, again);
  const absl::int128 step = absl::int128(1) << mechanism->grid_bits();
  const std::vector<double> exact_sum = sum.Sum();
  for (int j = 0; j < kD; ++j) {
    EXPECT_EQ(noised[j] % step, 0) << j;
    EXPECT_EQ(report.average[j], static_cast<float>(static_cast<double>(noised[j]) / scale / 50.0));
  }
  // And the noise is really there: the release differs from the noiseless one.
  std::vector<float> noiseless(kD);
  for (int j = 0; j < kD; ++j) noiseless[j] = static_cast<float>(exact_sum[j] / 50.0);
  EXPECT_NE(report.average, noiseless);
}

TEST(UnitWeightDpAggregatorTest, UpdatesOverTheClipBoundAreRefused) {
  auto dp = *UnitWeightDpAggregator::Create(2, 1.0, 0.0, 4.0, nullptr);
  absl::Status over = dp->Accumulate(std::vector<float>{0.8f, 0.7f}, 1);  // norm 1.063
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.message(), HasSubstr("norm"));
  EXPECT_EQ(dp->num_inputs(), 0);
  EXPECT_EQ(UnitWeightDpAggregator::Create(2, 1.0, 1.0, 4.0, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnitWeightDpAggregator::Create(2, 1.0, 0.0, 0.0, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Partial aggregates cross process boundaries (MPI ranks) as bytes: merging the bytes is merging
// the aggregator, and malformed or foreign bytes are refused without changing anything.
TEST(AggregatorTest, SerializedPartialsMergeExactlyAndBadBytesAreRefused) {
  constexpr int kD = 33;
  const std::vector<Update> updates = RandomUpdates(40, kD, 1.0, 21);
  auto whole = FedAvg(kD);
  auto first = whole->CloneEmpty();
  auto second = whole->CloneEmpty();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(whole->Accumulate(updates[i].delta, updates[i].examples).ok());
    ASSERT_TRUE(
        (i % 3 == 0 ? first : second)->Accumulate(updates[i].delta, updates[i].examples).ok());
  }
  const std::string bytes = second->Serialize();
  ASSERT_TRUE(first->MergeSerialized(bytes).ok());
  EXPECT_EQ(first->sum().fixed_point_sums(), whole->sum().fixed_point_sums());
  EXPECT_EQ(first->num_inputs(), 40);
  const std::vector<absl::int128> before = first->sum().fixed_point_sums();
  EXPECT_EQ(first->MergeSerialized(bytes.substr(0, bytes.size() - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(first->MergeSerialized("").code(), absl::StatusCode::kInvalidArgument);
  // Another configuration's bytes.
  auto other = *WeightedFedAvgAggregator::Create(kD, 2.0, kDefaultMaxWeight);
  EXPECT_EQ(first->MergeSerialized(other->Serialize()).code(),
            absl::StatusCode::kFailedPrecondition);
  privacy::SeededRandomSource noise(1);
  auto dp = *UnitWeightDpAggregator::Create(kD, 1.0, 0.5, 10, &noise);
  EXPECT_EQ(first->MergeSerialized(dp->Serialize()).code(), absl::StatusCode::kFailedPrecondition);
  // A sum larger than its vector count allows (tampered high word of the first value).
  std::string tampered = bytes;
  tampered[tampered.size() - kD * 16 + 15] = 0x3f;
  EXPECT_EQ(first->MergeSerialized(tampered).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(first->sum().fixed_point_sums(), before);
  EXPECT_EQ(first->num_inputs(), 40);
  EXPECT_EQ(first->Report()->average, whole->Report()->average);
}

}  // namespace
}  // namespace fedkit::aggregation
