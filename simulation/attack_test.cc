#include "simulation/attack.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/seeds.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/client_sampler.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

TEST(AttackSpecTest, ParsesEveryFormAndFormatsItBack) {
  const std::vector<std::pair<std::string, AttackSpec>> cases = {
      {"none", {}},
      {"sign-flip", {.kind = AttackKind::kSignFlip}},
      {"scale:10", {.kind = AttackKind::kScale, .scale = 10}},
      {"scale:-4", {.kind = AttackKind::kScale, .scale = -4}},
      {"scale:0.5", {.kind = AttackKind::kScale, .scale = 0.5}},
      {"label-flip", {.kind = AttackKind::kLabelFlip}},
      {"noise:0.1", {.kind = AttackKind::kNoise, .sigma = 0.1}},
      {"noise:1e-3", {.kind = AttackKind::kNoise, .sigma = 1e-3}},
  };
  for (const auto& [text, expected] : cases) {
    absl::StatusOr<AttackSpec> spec = ParseAttackSpec(text);
    ASSERT_TRUE(spec.ok()) << text << ": " << spec.status();
    EXPECT_EQ(*spec, expected) << text;
    EXPECT_EQ(*ParseAttackSpec(FormatAttackSpec(*spec)), *spec) << text;
  }
  EXPECT_EQ(FormatAttackSpec({.kind = AttackKind::kScale, .scale = 10}), "scale:10");
  EXPECT_EQ(FormatAttackSpec({.kind = AttackKind::kNoise, .sigma = 0.1}), "noise:0.1");
}

TEST(AttackSpecTest, RefusesAnythingElseQuotingTheTextAndTheAcceptedForms) {
  for (const char* text : {"", "None", "scale", "scale:", "scale:x", "scale:inf", "scale:nan",
                           "scale:1e400", "scale: 2", "noise", "noise:0", "noise:-1", "noise:inf",
                           "sign-flip:2", "label-flip:1", "none:0", "flip", "scale:0x10"}) {
    absl::StatusOr<AttackSpec> spec = ParseAttackSpec(text);
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(spec.status().message(), HasSubstr(absl::StrCat("\"", text, "\""))) << text;
    EXPECT_THAT(spec.status().message(), HasSubstr(AcceptedAttackSpecs())) << text;
  }
}

TEST(AttackersTest, AFixedSeededSubsetOfRoundedSize) {
  EXPECT_EQ(*NumAttackers(100, 0.2), 20);
  EXPECT_EQ(*NumAttackers(10, 0.25), 3);  // 2.5 rounds up
  EXPECT_EQ(*NumAttackers(10, 0.04), 0);
  EXPECT_EQ(*NumAttackers(0, 0.5), 0);
  for (double bad : {-0.1, 1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_EQ(NumAttackers(10, bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(ChooseAttackers(10, bad, 1).ok()) << bad;
  }

  const std::vector<int64_t> attackers = *ChooseAttackers(100, 0.2, 7);
  ASSERT_EQ(attackers.size(), 20u);
  EXPECT_TRUE(std::is_sorted(attackers.begin(), attackers.end()));
  EXPECT_EQ(std::set<int64_t>(attackers.begin(), attackers.end()).size(), 20u);
  EXPECT_GE(attackers.front(), 0);
  EXPECT_LT(attackers.back(), 100);
  // The documented derivation.
  EXPECT_EQ(AttackerSetSeed(7), DeriveSeed(7, {kAttackerSetTag}));
  EXPECT_EQ(attackers, *server::SampleClients(100, 20, AttackerSetSeed(7)));
  EXPECT_EQ(*ChooseAttackers(100, 0.2, 7), attackers);
  EXPECT_NE(*ChooseAttackers(100, 0.2, 8), attackers);
  EXPECT_TRUE(ChooseAttackers(100, 0.0, 7)->empty());
  // Not the clients round 1 samples (another stream of the same run seed).
  EXPECT_NE(attackers, *server::SampleClients(100, 20, server::SamplingSeed(7, 1)));
}

TEST(ApplyAttackTest, TransformsTheHonestDelta) {
  const std::vector<float> honest = {1.0f, -2.0f, 0.0f, 3.5f};
  std::vector<float> delta = honest;
  ASSERT_TRUE(ApplyAttack({}, 0, delta).ok());
  EXPECT_EQ(delta, honest);
  ASSERT_TRUE(ApplyAttack({.kind = AttackKind::kLabelFlip}, 0, delta).ok());
  EXPECT_EQ(delta, honest);
  ASSERT_TRUE(ApplyAttack({.kind = AttackKind::kSignFlip}, 0, delta).ok());
  EXPECT_EQ(delta, (std::vector<float>{-1.0f, 2.0f, -0.0f, -3.5f}));
  delta = honest;
  ASSERT_TRUE(ApplyAttack({.kind = AttackKind::kScale, .scale = 10}, 0, delta).ok());
  EXPECT_EQ(delta, (std::vector<float>{10.0f, -20.0f, 0.0f, 35.0f}));
  delta = honest;
  ASSERT_TRUE(ApplyAttack({.kind = AttackKind::kScale, .scale = 1e39}, 0, delta).ok());
  EXPECT_TRUE(std::isinf(delta[0]));  // the coordinator's checks refuse such an upload

  EXPECT_FALSE(ApplyAttack({.kind = AttackKind::kNoise, .sigma = 0}, 0, delta).ok());
  EXPECT_FALSE(ApplyAttack({.kind = AttackKind::kSignFlip, .scale = 2}, 0, delta).ok());
  EXPECT_FALSE(
      ApplyAttack({.kind = AttackKind::kScale, .scale = std::numeric_limits<double>::infinity()}, 0,
                  delta)
          .ok());
}

TEST(ApplyAttackTest, NoiseIsSeededGaussianOfTheGivenSigma) {
  const AttackSpec spec{.kind = AttackKind::kNoise, .sigma = 0.5};
  const uint64_t seed = AttackNoiseSeed(3, 2, 17);
  EXPECT_EQ(seed, DeriveSeed(3, {2, 17, kAttackNoiseTag}));
  EXPECT_NE(seed, AttackNoiseSeed(3, 3, 17));
  EXPECT_NE(seed, AttackNoiseSeed(3, 2, 18));
  std::vector<float> a(20000, 1.0f);
  std::vector<float> b(20000, -7.0f);  // the honest values do not matter
  ASSERT_TRUE(ApplyAttack(spec, seed, a).ok());
  ASSERT_TRUE(ApplyAttack(spec, seed, b).ok());
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 20000u);
  double sum = 0, sum_squares = 0;
  for (float v : a) {
    sum += v;
    sum_squares += static_cast<double>(v) * v;
  }
  const double mean = sum / a.size();
  const double stddev = std::sqrt(sum_squares / a.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);  // 5 standard errors (0.5 / sqrt(20000) = 0.0035)
  EXPECT_NEAR(stddev, 0.5, 0.015);
  std::vector<float> c(20000, 0.0f);
  ASSERT_TRUE(ApplyAttack(spec, AttackNoiseSeed(3, 3, 17), c).ok());
  EXPECT_NE(a, c);
  EXPECT_FALSE(AttackTrains(spec));
  EXPECT_TRUE(AttackTrains({.kind = AttackKind::kScale, .scale = 2}));
  EXPECT_TRUE(AttackTrains({.kind = AttackKind::kLabelFlip}));
}

TEST(FlipLabelsTest, MapsYToTheMirrorClass) {
  data::Examples examples;
  examples.feature_dim = 1;
  examples.features = {0, 0, 0, 0};
  examples.labels = {0, 1, 2, 9};
  ASSERT_TRUE(FlipLabels(10, examples).ok());
  EXPECT_EQ(examples.labels, (std::vector<int64_t>{9, 8, 7, 0}));
  ASSERT_TRUE(FlipLabels(10, examples).ok());
  EXPECT_EQ(examples.labels, (std::vector<int64_t>{0, 1, 2, 9}));  // an involution

  EXPECT_FALSE(FlipLabels(1, examples).ok());
  examples.labels = {0, 10};
  EXPECT_EQ(FlipLabels(10, examples).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(examples.labels, (std::vector<int64_t>{0, 10}));  // unchanged
  data::Examples regression;
  regression.feature_dim = 1;
  regression.target_dim = 1;
  regression.features = {0};
  regression.targets = {0.5f};
  EXPECT_FALSE(FlipLabels(10, regression).ok());
}

}  // namespace
}  // namespace fedkit::simulation
