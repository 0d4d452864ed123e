#include "privacy/dp_setup.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

using ::testing::HasSubstr;

DpSettings Central(double z) {
  DpSettings s;
  s.mode = DpMode::kCentral;
  s.noise_multiplier = z;
  return s;
}

DpRoundShape Shape() {
  DpRoundShape shape;
  shape.clients_per_round = 10;
  shape.population = 100;
  shape.dim = 5;
  shape.clip_norm = 1.0;
  return shape;
}

// Each invalid setting is refused with INVALID_ARGUMENT naming, in the message and the payload,
// the one field to change.
TEST(ValidateDpSettingsTest, EachProblemNamesItsField) {
  struct Case {
    DpSettings settings;
    DpRoundShape shape;
    std::string field;
    std::string message;
  };
  std::vector<Case> cases;
  DpSettings none;
  none.noise_multiplier = 1.0;
  cases.push_back({none, Shape(), "noise_multiplier", "`noise_multiplier` needs `mode` central"});
  none = DpSettings();
  none.dropout_tolerance = 0.1;
  cases.push_back({none, Shape(), "dropout_tolerance", "`dropout_tolerance` needs `mode`"});
  DpRoundShape shape = Shape();
  shape.clip_norm = 0;
  cases.push_back({Central(1), shape, "clip_norm", "`clip_norm` > 0"});
  shape = Shape();
  shape.population = 9;
  cases.push_back({Central(1), shape, "population", "`population` (9)"});
  DpSettings distributed = Central(1);
  distributed.mode = DpMode::kDistributed;
  cases.push_back({distributed, Shape(), "mode", "`mode` distributed needs `secure_aggregation`"});
  cases.push_back({Central(-1), Shape(), "noise_multiplier", "finite and >= 0, got -1"});
  DpSettings s = Central(1);
  s.delta = 1;
  cases.push_back({s, Shape(), "delta", "`delta` must be in (0, 1), got 1"});
  s = Central(0.5);
  s.adaptive_clip_quantile = 1.0;
  cases.push_back({s, Shape(), "adaptive_clip_quantile", "in (0, 1), got 1"});
  s = Central(0.5);
  s.adaptive_clip_quantile = 0.5;
  s.adaptive_clip_learning_rate = -1;
  cases.push_back({s, Shape(), "adaptive_clip_learning_rate", "got -1"});
  s = Central(1.0);  // 2 sigma_b = 2 (10 / 20) = 1: z must be below it
  s.adaptive_clip_quantile = 0.5;
  cases.push_back({s, Shape(), "noise_multiplier", "`clients_per_round` 10"});
  s = Central(0);
  s.target_epsilon = 1;
  cases.push_back({s, Shape(), "noise_multiplier", "`target_epsilon` needs `noise_multiplier`"});
  s = Central(1);
  s.target_epsilon = 0;
  cases.push_back({s, Shape(), "target_epsilon", "`target_epsilon` must be > 0"});
  s = Central(1);
  s.dropout_tolerance = 0.1;
  cases.push_back({s, Shape(), "dropout_tolerance", "distributed only"});
  for (const Case& c : cases) {
    const absl::Status status = ValidateDpSettings(c.settings, c.shape);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
    EXPECT_EQ(DpErrorField(status), std::optional<std::string>(c.field)) << c.message;
    // SetUpDp refuses the same settings with the same error.
    if (c.settings.mode != DpMode::kNone) {
      EXPECT_EQ(SetUpDp(c.settings, c.shape).status(), status) << c.message;
    }
  }
}

TEST(ValidateDpSettingsTest, AcceptsValidSettingsAndNoDp) {
  EXPECT_TRUE(ValidateDpSettings(DpSettings(), Shape()).ok());
  DpSettings s = Central(0.9);
  s.adaptive_clip_quantile = 0.5;
  s.target_epsilon = 3;
  EXPECT_TRUE(ValidateDpSettings(s, Shape()).ok());
  DpRoundShape shape = Shape();
  shape.secure_aggregation_modulus_bits = 32;
  s.mode = DpMode::kDistributed;
  s.dropout_tolerance = 0.2;
  EXPECT_TRUE(ValidateDpSettings(s, shape).ok());
  // Other statuses blame no field.
  EXPECT_EQ(DpErrorField(absl::InvalidArgumentError("x")), std::nullopt);
}

}  // namespace
}  // namespace fedkit::privacy
