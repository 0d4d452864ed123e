#include "aggregation/fedavg.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(WeightedFedAvgTest, WeightsByExampleCount) {
  WeightedFedAvg avg(2);
  ASSERT_TRUE(avg.Add(std::vector<float>{1.0f, 2.0f}, 1).ok());
  ASSERT_TRUE(avg.Add(std::vector<float>{3.0f, 4.0f}, 2).ok());
  ASSERT_TRUE(avg.Add(std::vector<float>{-1.0f, 0.0f}, 5).ok());
  // (1*1 + 2*3 + 5*(-1)) / 8 = 2/8 = 0.25;  (1*2 + 2*4 + 5*0) / 8 = 10/8 = 1.25.
  absl::StatusOr<std::vector<float>> result = avg.Average();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, ElementsAre(0.25f, 1.25f));
  EXPECT_EQ(avg.num_contributions(), 3);
  EXPECT_DOUBLE_EQ(avg.total_weight(), 8.0);
  EXPECT_EQ(avg.dimension(), 2);
}

TEST(WeightedFedAvgTest, WeightCapLimitsLargeClients) {
  WeightedFedAvg avg(2, /*max_weight=*/2.0);
  ASSERT_TRUE(avg.Add(std::vector<float>{1.0f, 2.0f}, 1).ok());
  ASSERT_TRUE(avg.Add(std::vector<float>{3.0f, 4.0f}, 2).ok());
  ASSERT_TRUE(avg.Add(std::vector<float>{-1.0f, 0.0f}, 5).ok());
  // Weights 1, 2, min(5, 2) = 2:  (1 + 6 - 2) / 5 = 1;  (2 + 8 + 0) / 5 = 2.
  absl::StatusOr<std::vector<float>> result = avg.Average();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, ElementsAre(1.0f, 2.0f));
  EXPECT_DOUBLE_EQ(avg.total_weight(), 5.0);
}

TEST(WeightedFedAvgTest, FractionalWeightCap) {
  WeightedFedAvg avg(1, /*max_weight=*/0.5);
  ASSERT_TRUE(avg.Add(std::vector<float>{4.0f}, 3).ok());
  ASSERT_TRUE(avg.Add(std::vector<float>{2.0f}, 1).ok());
  // Both capped to 0.5, so a plain mean: (4 + 2) / 2 = 3.
  absl::StatusOr<std::vector<float>> result = avg.Average();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, ElementsAre(3.0f));
  EXPECT_DOUBLE_EQ(avg.total_weight(), 1.0);
}

TEST(WeightedFedAvgTest, AverageOfNothingIsFailedPrecondition) {
  WeightedFedAvg avg(3);
  EXPECT_EQ(avg.Average().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(avg.num_contributions(), 0);
}

// Starts from one accepted delta {1, 2} (weight 1) and checks a rejected Add left it alone.
class WeightedFedAvgRejectTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(avg_.Add(std::vector<float>{1.0f, 2.0f}, 1).ok()); }

  void ExpectUnchanged() {
    EXPECT_EQ(avg_.num_contributions(), 1);
    EXPECT_DOUBLE_EQ(avg_.total_weight(), 1.0);
    absl::StatusOr<std::vector<float>> result = avg_.Average();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_THAT(*result, ElementsAre(1.0f, 2.0f));
  }

  WeightedFedAvg avg_{2};
};

TEST_F(WeightedFedAvgRejectTest, WrongSize) {
  absl::Status status = avg_.Add(std::vector<float>{1.0f, 2.0f, 3.0f}, 4);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("delta has 3 values, expected 2"));
  ExpectUnchanged();
}

TEST_F(WeightedFedAvgRejectTest, NonPositiveNumExamples) {
  for (int64_t n : {0, -3}) {
    absl::Status status = avg_.Add(std::vector<float>{5.0f, 5.0f}, n);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_THAT(status.message(), HasSubstr("num_examples"));
  }
  ExpectUnchanged();
}

TEST_F(WeightedFedAvgRejectTest, NaN) {
  // The bad value is last, so an Add that accumulated while validating would have changed [0].
  absl::Status status =
      avg_.Add(std::vector<float>{5.0f, std::numeric_limits<float>::quiet_NaN()}, 4);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("delta[1] is not finite"));
  ExpectUnchanged();
}

TEST_F(WeightedFedAvgRejectTest, Infinity) {
  for (float inf :
       {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    absl::Status status = avg_.Add(std::vector<float>{5.0f, inf}, 4);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  }
  ExpectUnchanged();
}

TEST(WeightedFedAvgTest, NonPositiveWeightCapIsRejected) {
  WeightedFedAvg avg(1, /*max_weight=*/0.0);
  absl::Status status = avg.Add(std::vector<float>{1.0f}, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("max_weight"));
  EXPECT_EQ(avg.num_contributions(), 0);
}

std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits;
  for (float v : values) bits.push_back(std::bit_cast<uint32_t>(v));
  return bits;
}

TEST(WeightedFedAvgTest, SameOrderGivesBitIdenticalResult) {
  constexpr int kClients = 1000;
  constexpr int kDim = 64;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> value(-10.0f, 10.0f);
  std::uniform_int_distribution<int64_t> count(1, 500);
  std::vector<std::vector<float>> deltas(kClients, std::vector<float>(kDim));
  std::vector<int64_t> counts(kClients);
  for (int c = 0; c < kClients; ++c) {
    for (float& v : deltas[c]) v = value(rng);
    counts[c] = count(rng);
  }

  auto run = [&] {
    WeightedFedAvg avg(kDim, /*max_weight=*/300.0);
    for (int c = 0; c < kClients; ++c) EXPECT_TRUE(avg.Add(deltas[c], counts[c]).ok());
    absl::StatusOr<std::vector<float>> result = avg.Average();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(std::vector<float>{});
  };
  const std::vector<float> first = run();
  const std::vector<float> second = run();
  ASSERT_EQ(first.size(), static_cast<size_t>(kDim));
  EXPECT_EQ(Bits(first), Bits(second));

  // And the value is the weighted mean, recomputed here independently.
  for (int i = 0; i < kDim; ++i) {
    double sum = 0.0, total = 0.0;
    for (int c = 0; c < kClients; ++c) {
      const double w = std::min<double>(counts[c], 300.0);
      sum += w * deltas[c][i];
      total += w;
    }
    EXPECT_NEAR(first[i], sum / total, 1e-6) << i;
  }
}

}  // namespace
}  // namespace fedkit::aggregation
