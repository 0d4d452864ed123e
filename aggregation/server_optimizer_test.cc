#include "aggregation/server_optimizer.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {

// Lets GoogleTest print a Kind by name (found by ADL, so it lives in Kind's namespace).
void PrintTo(ServerOptimizerOptions::Kind kind, std::ostream* os) {
  *os << ServerOptimizerKindName(kind);
}

namespace {

using Kind = ServerOptimizerOptions::Kind;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pointwise;

constexpr double kTol = 1e-6;

std::unique_ptr<ServerOptimizer> MakeOrDie(const ServerOptimizerOptions& options,
                                           int64_t dimension) {
  absl::StatusOr<std::unique_ptr<ServerOptimizer>> optimizer =
      MakeServerOptimizer(options, dimension);
  EXPECT_TRUE(optimizer.ok()) << optimizer.status();
  return optimizer.ok() ? std::move(optimizer).value() : nullptr;
}

ServerOptimizerOptions Options(Kind kind) {
  ServerOptimizerOptions options;
  options.kind = kind;
  return options;
}

TEST(SgdTest, LearningRateOneNoMomentumIsPlainFedAvg) {
  std::unique_ptr<ServerOptimizer> sgd = MakeOrDie(Options(Kind::kSgd), 3);
  ASSERT_NE(sgd, nullptr);
  std::vector<float> model = {1.5f, -2.0f, 0.25f};
  ASSERT_TRUE(sgd->Apply(std::vector<float>{0.5f, 0.25f, -1.0f}, absl::MakeSpan(model)).ok());
  EXPECT_THAT(model, ElementsAre(2.0f, -1.75f, -0.75f));
  // No memory of the previous round: exactly x + Delta again.
  ASSERT_TRUE(sgd->Apply(std::vector<float>{1.0f, 1.0f, 1.0f}, absl::MakeSpan(model)).ok());
  EXPECT_THAT(model, ElementsAre(3.0f, -0.75f, 0.25f));
}

TEST(SgdTest, MomentumAccumulates) {
  ServerOptimizerOptions options = Options(Kind::kSgd);
  options.learning_rate = 0.5;
  options.momentum = 0.9;
  std::unique_ptr<ServerOptimizer> sgd = MakeOrDie(options, 2);
  ASSERT_NE(sgd, nullptr);
  std::vector<float> model = {1.0f, -1.0f};

  // m = {0.2, -0.4};  x = {1 + 0.5*0.2, -1 + 0.5*(-0.4)} = {1.1, -1.2}.
  ASSERT_TRUE(sgd->Apply(std::vector<float>{0.2f, -0.4f}, absl::MakeSpan(model)).ok());
  EXPECT_THAT(model, Pointwise(DoubleNear(kTol), {1.1, -1.2}));
  // m = {0.9*0.2 + 0.1, 0.9*(-0.4) + 0.3} = {0.28, -0.06};  x = {1.1 + 0.14, -1.2 - 0.03}.
  ASSERT_TRUE(sgd->Apply(std::vector<float>{0.1f, 0.3f}, absl::MakeSpan(model)).ok());
  EXPECT_THAT(model, Pointwise(DoubleNear(kTol), {1.24, -1.23}));
  // A zero delta still moves x: m = {0.252, -0.054};  x = {1.24 + 0.126, -1.23 - 0.027}.
  ASSERT_TRUE(sgd->Apply(std::vector<float>{0.0f, 0.0f}, absl::MakeSpan(model)).ok());
  EXPECT_THAT(model, Pointwise(DoubleNear(kTol), {1.366, -1.257}));
}

// The adaptive rules are checked against a scalar restatement of the header's formulas:
// `update_v(v, delta^2)` is the kind's v rule; m and x follow the shared rules
//   m = b1 m + (1 - b1) Delta;   x += lr * m / (sqrt(v) + tau),   m0 = 0, v0 = tau^2.
// `final_model` holds the values after the last round, computed separately (Python, double).
void ExpectFollowsRule(Kind kind, const std::function<double(double, double)>& update_v,
                       const std::vector<double>& final_model) {
  ServerOptimizerOptions options = Options(kind);
  options.learning_rate = 0.1;
  options.beta1 = 0.9;
  options.beta2 = 0.99;
  options.tau = 0.01;
  const std::vector<std::vector<float>> deltas = {{1.0f, -2.0f}, {0.5f, 0.0f}, {-1.0f, 1.0f}};
  std::unique_ptr<ServerOptimizer> optimizer = MakeOrDie(options, 2);
  ASSERT_NE(optimizer, nullptr);

  std::vector<float> model = {0.5f, -0.5f};
  std::vector<double> x = {0.5, -0.5}, m = {0.0, 0.0}, v = {1e-4, 1e-4};
  for (size_t round = 0; round < deltas.size(); ++round) {
    ASSERT_TRUE(optimizer->Apply(deltas[round], absl::MakeSpan(model)).ok());
    for (size_t i = 0; i < x.size(); ++i) {
      const double d = deltas[round][i];
      m[i] = 0.9 * m[i] + 0.1 * d;
      v[i] = update_v(v[i], d * d);
      x[i] += 0.1 * m[i] / (std::sqrt(v[i]) + 0.01);
    }
    EXPECT_THAT(model, Pointwise(DoubleNear(kTol), x)) << "round " << round;
  }
  EXPECT_THAT(model, Pointwise(DoubleNear(kTol), final_model));
}

TEST(AdagradTest, FollowsUpdateRule) {
  ExpectFollowsRule(Kind::kAdagrad, [](double v, double d2) { return v + d2; },
                    {0.524032798, -0.521665590});
}

TEST(AdamTest, FollowsUpdateRule) {
  ExpectFollowsRule(Kind::kAdam, [](double v, double d2) { return 0.99 * v + 0.01 * d2; },
                    {0.721743711, -0.707869911});
}

TEST(YogiTest, FollowsUpdateRule) {
  ExpectFollowsRule(Kind::kYogi,
                    [](double v, double d2) {
                      const double sign = v > d2 ? 1.0 : (v < d2 ? -1.0 : 0.0);
                      return v - 0.01 * d2 * sign;
                    },
                    {0.721234698, -0.707252308});
}

// With beta1 = 0 (m = Delta) and tau = 1 (v0 = 1) each element of one round shows one case of
// sign(v - Delta^2). The state is laid out as m then v (see server_optimizer.cc).
TEST(YogiTest, SignOfVMinusDeltaSquaredPicksDirection) {
  ServerOptimizerOptions options = Options(Kind::kYogi);
  options.beta1 = 0.0;
  options.beta2 = 0.9;
  options.tau = 1.0;
  std::unique_ptr<ServerOptimizer> yogi = MakeOrDie(options, 3);
  ASSERT_NE(yogi, nullptr);
  std::vector<float> model = {0.0f, 0.0f, 0.0f};
  ASSERT_TRUE(yogi->Apply(std::vector<float>{0.5f, 2.0f, 1.0f}, absl::MakeSpan(model)).ok());

  // [0] v = 1 > 0.25: v shrinks, 1 - 0.1*0.25 = 0.975 (Adam would give 0.9*1 + 0.1*0.25 = 0.925).
  // [1] v = 1 < 4:    v grows,   1 + 0.1*4    = 1.4   (Adam: 1.3).
  // [2] v = 1 = 1:    sign 0, v stays 1.
  EXPECT_THAT(yogi->SaveState(), Pointwise(DoubleNear(1e-12), {0.5, 2.0, 1.0, 0.975, 1.4, 1.0}));
  EXPECT_THAT(model, Pointwise(DoubleNear(kTol), {0.5 / (std::sqrt(0.975) + 1.0),
                                                  2.0 / (std::sqrt(1.4) + 1.0), 0.5}));
}

TEST(ServerOptimizerTest, AdaptiveStateStartsAtZeroAndTauSquared) {
  ServerOptimizerOptions options = Options(Kind::kAdam);
  options.tau = 0.5;
  std::unique_ptr<ServerOptimizer> adam = MakeOrDie(options, 2);
  ASSERT_NE(adam, nullptr);
  EXPECT_THAT(adam->SaveState(), ElementsAre(0.0, 0.0, 0.25, 0.25));
}

class AllKindsTest : public ::testing::TestWithParam<Kind> {
 protected:
  // Non-default settings so every piece of state influences the next step.
  static ServerOptimizerOptions TestOptions() {
    ServerOptimizerOptions options = Options(GetParam());
    options.learning_rate = 0.3;
    options.momentum = 0.9;
    options.tau = 0.05;
    return options;
  }
};

std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits;
  for (float v : values) bits.push_back(std::bit_cast<uint32_t>(v));
  return bits;
}

TEST_P(AllKindsTest, RestoredOptimizerContinuesIdentically) {
  const std::vector<std::vector<float>> deltas = {
      {0.3f, -0.7f, 1.1f}, {-0.2f, 0.4f, 0.9f}, {0.5f, 0.1f, -0.6f}};
  std::unique_ptr<ServerOptimizer> original = MakeOrDie(TestOptions(), 3);
  std::unique_ptr<ServerOptimizer> restored = MakeOrDie(TestOptions(), 3);
  std::unique_ptr<ServerOptimizer> fresh = MakeOrDie(TestOptions(), 3);
  ASSERT_NE(original, nullptr);
  ASSERT_NE(restored, nullptr);
  ASSERT_NE(fresh, nullptr);

  std::vector<float> model = {1.0f, 2.0f, 3.0f};
  ASSERT_TRUE(original->Apply(deltas[0], absl::MakeSpan(model)).ok());
  ASSERT_TRUE(original->Apply(deltas[1], absl::MakeSpan(model)).ok());
  ASSERT_TRUE(restored->RestoreState(original->SaveState()).ok());
  EXPECT_EQ(restored->SaveState(), original->SaveState());

  std::vector<float> model_original = model, model_restored = model, model_fresh = model;
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(original->Apply(deltas[2], absl::MakeSpan(model_original)).ok());
    ASSERT_TRUE(restored->Apply(deltas[2], absl::MakeSpan(model_restored)).ok());
    ASSERT_TRUE(fresh->Apply(deltas[2], absl::MakeSpan(model_fresh)).ok());
  }
  EXPECT_EQ(Bits(model_restored), Bits(model_original));
  EXPECT_EQ(restored->SaveState(), original->SaveState());
  // Without the restored state the result differs, so the state is what carried over.
  EXPECT_NE(Bits(model_fresh), Bits(model_original));
}

TEST_P(AllKindsTest, RestoreRejectsBadStateAndKeepsOld) {
  std::unique_ptr<ServerOptimizer> optimizer = MakeOrDie(TestOptions(), 3);
  ASSERT_NE(optimizer, nullptr);
  std::vector<float> model = {1.0f, 2.0f, 3.0f};
  ASSERT_TRUE(optimizer->Apply(std::vector<float>{0.3f, -0.7f, 1.1f}, absl::MakeSpan(model)).ok());
  const std::vector<double> before = optimizer->SaveState();

  std::vector<double> too_long = before;
  too_long.push_back(0.0);
  absl::Status status = optimizer->RestoreState(too_long);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("optimizer state has " + std::to_string(too_long.size()) +
                                          " values, expected " + std::to_string(before.size())));
  EXPECT_EQ(optimizer->RestoreState(std::vector<double>{}).code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<double> with_nan = before;
  with_nan.back() = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(optimizer->RestoreState(with_nan).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(optimizer->SaveState(), before);
}

TEST_P(AllKindsTest, ApplyRejectsSizeMismatchWithoutChangingAnything) {
  std::unique_ptr<ServerOptimizer> optimizer = MakeOrDie(TestOptions(), 3);
  ASSERT_NE(optimizer, nullptr);
  const std::vector<double> state_before = optimizer->SaveState();
  std::vector<float> model = {1.0f, 2.0f, 3.0f};

  absl::Status status = optimizer->Apply(std::vector<float>{1.0f, 1.0f}, absl::MakeSpan(model));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("averaged_delta has 2 values, expected 3"));

  std::vector<float> long_model = {1.0f, 2.0f, 3.0f, 4.0f};
  status = optimizer->Apply(std::vector<float>{1.0f, 1.0f, 1.0f}, absl::MakeSpan(long_model));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("model has 4 values, expected 3"));

  EXPECT_THAT(model, ElementsAre(1.0f, 2.0f, 3.0f));
  EXPECT_THAT(long_model, ElementsAre(1.0f, 2.0f, 3.0f, 4.0f));
  EXPECT_EQ(optimizer->SaveState(), state_before);
}

INSTANTIATE_TEST_SUITE_P(Kinds, AllKindsTest,
                         ::testing::Values(Kind::kSgd, Kind::kAdagrad, Kind::kAdam, Kind::kYogi),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           return std::string(ServerOptimizerKindName(info.param));
                         });

TEST(ServerOptimizerTest, AdaptiveRestoreRejectsNegativeV) {
  for (Kind kind : {Kind::kAdagrad, Kind::kAdam, Kind::kYogi}) {
    std::unique_ptr<ServerOptimizer> optimizer = MakeOrDie(Options(kind), 2);
    ASSERT_NE(optimizer, nullptr);
    absl::Status status = optimizer->RestoreState(std::vector<double>{0.1, 0.2, 1.0, -1.0});
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("v[1] is negative"));
    // A negative m is fine.
    EXPECT_TRUE(optimizer->RestoreState(std::vector<double>{-0.1, -0.2, 1.0, 0.0}).ok());
  }
}

TEST(MakeServerOptimizerTest, RejectsInvalidOptions) {
  struct Case {
    std::function<void(ServerOptimizerOptions&)> mutate;
    std::string field;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<Case> cases = {
      {[](auto& o) { o.learning_rate = 0.0; }, "learning_rate"},
      {[](auto& o) { o.learning_rate = -0.5; }, "learning_rate"},
      {[nan](auto& o) { o.learning_rate = nan; }, "learning_rate"},
      {[](auto& o) { o.learning_rate = std::numeric_limits<double>::infinity(); }, "learning_rate"},
      {[](auto& o) { o.tau = 0.0; }, "tau"},
      {[](auto& o) { o.tau = -1e-3; }, "tau"},
      {[](auto& o) { o.momentum = 1.0; }, "momentum"},
      {[](auto& o) { o.momentum = -0.1; }, "momentum"},
      {[](auto& o) { o.beta1 = 1.0; }, "beta1"},
      {[nan](auto& o) { o.beta1 = nan; }, "beta1"},
      {[](auto& o) { o.beta2 = 1.5; }, "beta2"},
      {[](auto& o) { o.beta2 = -0.01; }, "beta2"},
  };
  for (Kind kind : {Kind::kSgd, Kind::kAdagrad, Kind::kAdam, Kind::kYogi}) {
    for (const Case& c : cases) {
      ServerOptimizerOptions options = Options(kind);
      c.mutate(options);
      absl::StatusOr<std::unique_ptr<ServerOptimizer>> optimizer = MakeServerOptimizer(options, 4);
      EXPECT_EQ(optimizer.status().code(), absl::StatusCode::kInvalidArgument)
          << ServerOptimizerKindName(kind) << " " << c.field;
      EXPECT_THAT(optimizer.status().message(), HasSubstr(c.field));
    }
  }
}

TEST(MakeServerOptimizerTest, RejectsNonPositiveDimension) {
  for (int64_t dimension : {0, -1}) {
    absl::StatusOr<std::unique_ptr<ServerOptimizer>> optimizer =
        MakeServerOptimizer(ServerOptimizerOptions{}, dimension);
    EXPECT_EQ(optimizer.status().code(), absl::StatusCode::kInvalidArgument) << dimension;
    EXPECT_THAT(optimizer.status().message(), HasSubstr("dimension"));
  }
}

TEST(MakeServerOptimizerTest, AcceptsBoundaryValues) {
  ServerOptimizerOptions options = Options(Kind::kAdam);
  options.momentum = 0.0;
  options.beta1 = 0.0;
  options.beta2 = 0.0;
  EXPECT_TRUE(MakeServerOptimizer(options, 1).ok());
}

TEST(ParseServerOptimizerKindTest, ParsesEveryNameAndRoundTrips) {
  EXPECT_EQ(ParseServerOptimizerKind("sgd").value_or(Kind::kYogi), Kind::kSgd);
  EXPECT_EQ(ParseServerOptimizerKind("adam").value_or(Kind::kSgd), Kind::kAdam);
  EXPECT_EQ(ParseServerOptimizerKind("yogi").value_or(Kind::kSgd), Kind::kYogi);
  EXPECT_EQ(ParseServerOptimizerKind("adagrad").value_or(Kind::kSgd), Kind::kAdagrad);
  for (Kind kind : {Kind::kSgd, Kind::kAdagrad, Kind::kAdam, Kind::kYogi}) {
    absl::StatusOr<Kind> parsed = ParseServerOptimizerKind(ServerOptimizerKindName(kind));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
  }
}

TEST(ParseServerOptimizerKindTest, RejectsUnknownTextQuotingIt) {
  for (std::string_view text : {"rmsprop", "", "adam "}) {
    absl::StatusOr<Kind> parsed = ParseServerOptimizerKind(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr("\"" + std::string(text) + "\""));
  }
}

}  // namespace
}  // namespace fedkit::aggregation
