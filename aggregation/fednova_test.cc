#include "aggregation/fednova.h"

#include <vector>

#include "aggregation/aggregator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {
namespace {

using ::testing::HasSubstr;

struct Upload {
  std::vector<float> delta;
  int64_t examples;
  int64_t steps;
};

// The server's FedNova update: normalize, exact weighted mean, rescale.
std::vector<float> FedNovaUpdate(const std::vector<Upload>& uploads, double momentum) {
  absl::StatusOr<FedNovaNormalization> nova = FedNovaNormalization::Create(momentum);
  EXPECT_TRUE(nova.ok()) << nova.status();
  auto mean = *WeightedFedAvgAggregator::Create(static_cast<int64_t>(uploads[0].delta.size()),
                                                UpdateValueBound(0.0), kDefaultMaxWeight);
  for (Upload u : uploads) {
    EXPECT_TRUE(nova->Normalize(absl::MakeSpan(u.delta), u.examples, u.steps).ok());
    EXPECT_TRUE(mean->Accumulate(u.delta, u.examples).ok());
  }
  std::vector<float> average = mean->Report()->average;
  EXPECT_TRUE(nova->Apply(absl::MakeSpan(average)).ok());
  return average;
}

std::vector<float> FedAvgUpdate(const std::vector<Upload>& uploads) {
  auto mean = *WeightedFedAvgAggregator::Create(static_cast<int64_t>(uploads[0].delta.size()),
                                                UpdateValueBound(0.0), kDefaultMaxWeight);
  for (const Upload& u : uploads) EXPECT_TRUE(mean->Accumulate(u.delta, u.examples).ok());
  return mean->Report()->average;
}

TEST(FedNovaNormalizerTest, PlainSgdIsTheStepCount) {
  for (int64_t tau : {1, 2, 7, 300}) EXPECT_EQ(*FedNovaNormalizer(tau, 0.0), tau);
}

TEST(FedNovaNormalizerTest, MomentumMatchesTheSumOfTheGradientWeights) {
  // With heavy-ball momentum, step t's gradient enters the final model with weight
  // 1 + rho + ... + rho^(tau - t): ||a||_1 is the sum of those.
  for (double rho : {0.5, 0.9}) {
    for (int64_t tau : {1, 2, 3, 10}) {
      double expected = 0;
      for (int64_t t = 0; t < tau; ++t) {
        double power = 1;
        for (int64_t j = 0; j < tau - t; ++j, power *= rho) expected += power;
      }
      EXPECT_NEAR(*FedNovaNormalizer(tau, rho), expected, 1e-12 * expected) << rho << " " << tau;
    }
  }
  EXPECT_EQ(*FedNovaNormalizer(2, 0.5), 2.5);  // (2 - 0.5 * 0.75 / 0.5) / 0.5
}

TEST(FedNovaNormalizerTest, RefusesBadArguments) {
  EXPECT_THAT(FedNovaNormalizer(0, 0.0).status().message(), HasSubstr("steps"));
  EXPECT_THAT(FedNovaNormalizer(3, 1.0).status().message(), HasSubstr("momentum"));
  EXPECT_THAT(FedNovaNormalizer(3, -0.1).status().message(), HasSubstr("momentum"));
  EXPECT_FALSE(FedNovaNormalization::Create(1.0).ok());
}

TEST(FedNovaNormalizationTest, MatchesAHandComputedExample) {
  // n = (1, 3), tau = (1, 2), plain SGD. Normalized: (1, -2) and (4, 2) / 2 = (2, 1).
  // d = ((1 + 3 * 2) / 4, (-2 + 3 * 1) / 4) = (1.75, 0.25); tau_eff = (1 * 1 + 3 * 2) / 4 = 1.75;
  // tau_eff * d = (3.0625, 0.4375). FedAvg: ((1 + 12) / 4, (-2 + 6) / 4) = (3.25, 1). All exact.
  const std::vector<Upload> uploads = {{{1.0f, -2.0f}, 1, 1}, {{4.0f, 2.0f}, 3, 2}};
  EXPECT_EQ(FedNovaUpdate(uploads, 0.0), (std::vector<float>{3.0625f, 0.4375f}));
  EXPECT_EQ(FedAvgUpdate(uploads), (std::vector<float>{3.25f, 1.0f}));

  FedNovaNormalization nova = *FedNovaNormalization::Create(0.0);
  std::vector<float> a = {1.0f, -2.0f};
  std::vector<float> b = {4.0f, 2.0f};
  ASSERT_TRUE(nova.Normalize(absl::MakeSpan(a), 1, 1).ok());
  ASSERT_TRUE(nova.Normalize(absl::MakeSpan(b), 3, 2).ok());
  EXPECT_EQ(b, (std::vector<float>{2.0f, 1.0f}));
  EXPECT_EQ(*nova.EffectiveSteps(), 1.75);
}

TEST(FedNovaNormalizationTest, MomentumExample) {
  // rho = 0.5: ||a||_1 = 1 for tau 1 and 2.5 for tau 2. n = (1, 1), deltas 2 and 6:
  // d = (2 / 1 + 6 / 2.5) / 2 = 2.2, tau_eff = (1 + 2.5) / 2 = 1.75, update 3.85; FedAvg says 4.
  const std::vector<Upload> uploads = {{{2.0f}, 1, 1}, {{6.0f}, 1, 2}};
  EXPECT_NEAR(FedNovaUpdate(uploads, 0.5)[0], 3.85f, 1e-6);
  EXPECT_EQ(FedAvgUpdate(uploads)[0], 4.0f);
}

TEST(FedNovaNormalizationTest, EqualStepCountsGiveFedAvg) {
  std::vector<Upload> uploads = {
      {{0.3f, -1.7f, 2.2f}, 17, 0}, {{-0.9f, 0.01f, 0.5f}, 400, 0}, {{1.1f, 0.2f, -0.4f}, 3, 0}};
  for (double momentum : {0.0, 0.9}) {
    for (int64_t tau : {4, 7, 23}) {
      for (Upload& u : uploads) u.steps = tau;
      const std::vector<float> nova = FedNovaUpdate(uploads, momentum);
      const std::vector<float> avg = FedAvgUpdate(uploads);
      ASSERT_EQ(nova.size(), avg.size());
      for (size_t j = 0; j < avg.size(); ++j) {
        EXPECT_NEAR(nova[j], avg[j], 1e-6 * std::abs(avg[j])) << momentum << " " << tau;
      }
      // Dividing and multiplying by a power of two is exact.
      if (tau == 4 && momentum == 0.0) {
        EXPECT_EQ(nova, avg);
      }
    }
  }
}

TEST(FedNovaNormalizationTest, OrderOfUploadsDoesNotMatter) {
  const std::vector<Upload> uploads = {{{0.3f, -1.7f}, 17, 5},
                                       {{-0.9f, 0.01f}, 400, 41},
                                       {{1.1f, 0.2f}, 3, 1},
                                       {{0.7f, 0.6f}, 60, 6}};
  const std::vector<Upload> reversed(uploads.rbegin(), uploads.rend());
  EXPECT_EQ(FedNovaUpdate(uploads, 0.9), FedNovaUpdate(reversed, 0.9));
}

TEST(FedNovaNormalizationTest, ErrorsLeaveTheStateUnchanged) {
  FedNovaNormalization nova = *FedNovaNormalization::Create(0.0);
  std::vector<float> average = {1.0f};
  EXPECT_EQ(nova.Apply(absl::MakeSpan(average)).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<float> delta = {1.0f};
  EXPECT_EQ(nova.Normalize(absl::MakeSpan(delta), 0, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(nova.Normalize(absl::MakeSpan(delta), 1, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(delta[0], 1.0f);
  EXPECT_EQ(nova.num_inputs(), 0);
  ASSERT_TRUE(nova.Normalize(absl::MakeSpan(delta), 2, 4).ok());
  EXPECT_EQ(delta[0], 0.25f);
  nova.Reset();
  EXPECT_EQ(nova.num_inputs(), 0);
  EXPECT_FALSE(nova.EffectiveSteps().ok());
}

}  // namespace
}  // namespace fedkit::aggregation
