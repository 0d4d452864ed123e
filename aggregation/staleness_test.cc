#include "aggregation/staleness.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {
namespace {

using ::testing::HasSubstr;

TEST(StalenessWeightingTest, NamedWeightings) {
  absl::StatusOr<StalenessWeighting> sqrt_weighting = ParseStalenessWeighting("sqrt");
  ASSERT_TRUE(sqrt_weighting.ok());
  EXPECT_EQ(sqrt_weighting->Weight(0), 1.0);
  EXPECT_DOUBLE_EQ(sqrt_weighting->Weight(3), 0.5);  // 1/sqrt(4)
  EXPECT_DOUBLE_EQ(sqrt_weighting->Weight(8), 1.0 / 3.0);
  EXPECT_EQ(sqrt_weighting->Weight(-2), 1.0);        // never above 1
  EXPECT_EQ(StalenessWeighting{}, *sqrt_weighting);  // the default

  absl::StatusOr<StalenessWeighting> constant = ParseStalenessWeighting("constant");
  ASSERT_TRUE(constant.ok());
  EXPECT_EQ(constant->Weight(1000), 1.0);

  absl::StatusOr<StalenessWeighting> linear = ParseStalenessWeighting("poly:1");
  ASSERT_TRUE(linear.ok());
  EXPECT_DOUBLE_EQ(linear->Weight(4), 0.2);
  // Decreasing in s.
  for (int64_t s = 0; s < 50; ++s) EXPECT_GT(linear->Weight(s), linear->Weight(s + 1));
}

TEST(StalenessWeightingTest, FormatsBackToTheSameWeighting) {
  for (const char* spec : {"constant", "sqrt", "poly:1", "poly:0.25", "poly:2.5"}) {
    absl::StatusOr<StalenessWeighting> parsed = ParseStalenessWeighting(spec);
    ASSERT_TRUE(parsed.ok()) << spec;
    EXPECT_EQ(FormatStalenessWeighting(*parsed), spec);
  }
  EXPECT_EQ(FormatStalenessWeighting(*ParseStalenessWeighting("poly:0.5")), "sqrt");
  EXPECT_EQ(FormatStalenessWeighting(*ParseStalenessWeighting("poly:0")), "constant");
}

TEST(StalenessWeightingTest, RefusesOtherSpecs) {
  for (const char* spec : {"", "poly:", "poly:-1", "poly:inf", "poly:nan", "poly:1e999", "linear",
                           "sqrt:2", " sqrt"}) {
    absl::StatusOr<StalenessWeighting> parsed = ParseStalenessWeighting(spec);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_THAT(parsed.status().message(), HasSubstr("constant, sqrt or poly:A")) << spec;
  }
}

TEST(StalenessWeightingTest, WeighByStalenessScalesInFloatAndLeavesFreshUpdatesAlone) {
  std::vector<float> delta = {1.0f, -2.0f, 0.5f};
  WeighByStaleness(StalenessWeighting{}, 0, absl::MakeSpan(delta));
  EXPECT_EQ(delta, (std::vector<float>{1.0f, -2.0f, 0.5f}));
  WeighByStaleness(StalenessWeighting{}, 3, absl::MakeSpan(delta));  // 1/sqrt(4) = 0.5
  EXPECT_EQ(delta, (std::vector<float>{0.5f, -1.0f, 0.25f}));
  WeighByStaleness(StalenessWeighting{.exponent = 0}, 100, absl::MakeSpan(delta));
  EXPECT_EQ(delta, (std::vector<float>{0.5f, -1.0f, 0.25f}));
}

TEST(FedBuffSettingsTest, ValidateNamesTheField) {
  EXPECT_TRUE(ValidateFedBuffSettings(FedBuffSettings{}).ok());
  EXPECT_THAT(ValidateFedBuffSettings({.buffer_size = 0}).message(), HasSubstr("`buffer_size`"));
  EXPECT_THAT(ValidateFedBuffSettings({.concurrency = -1}).message(), HasSubstr("`concurrency`"));
  EXPECT_THAT(ValidateFedBuffSettings({.staleness = {.exponent = -1}}).message(),
              HasSubstr("`staleness`"));
  EXPECT_THAT(
      ValidateFedBuffSettings({.staleness = {.exponent = std::numeric_limits<double>::infinity()}})
          .message(),
      HasSubstr("`staleness`"));
}

}  // namespace
}  // namespace fedkit::aggregation
