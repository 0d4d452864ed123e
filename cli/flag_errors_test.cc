#include "cli/flag_errors.h"

#include "gtest/gtest.h"
#include "privacy/dp_setup.h"

namespace fedkit::cli {
namespace {

TEST(FlagErrorsTest, ADpErrorIsToldInTheBinarysFlags) {
  privacy::DpSettings dp;
  dp.mode = privacy::DpMode::kCentral;
  dp.noise_multiplier = 0;
  dp.target_epsilon = 1;
  privacy::DpRoundShape shape;
  shape.clients_per_round = 5;
  shape.population = 50;
  shape.clip_norm = 1;
  const FlagError error =
      InFlags(privacy::ValidateDpSettings(dp, shape), DpFieldFlags("--clients"));
  EXPECT_EQ(error.flag, "--noise-multiplier");
  EXPECT_EQ(error.message,
            "--target-epsilon needs --noise-multiplier > 0 (without noise epsilon is unbounded)");
  dp.target_epsilon.reset();
  dp.noise_multiplier = 5;
  dp.adaptive_clip_quantile = 0.5;
  const FlagError opens =
      InFlags(privacy::ValidateDpSettings(dp, shape), DpFieldFlags("--clients"));
  EXPECT_EQ(opens.flag, "--noise-multiplier");
  EXPECT_EQ(opens.message.rfind("5 is too large for --adaptive-clip-quantile with "
                                "--clients-per-round 5: ",
                                0),
            0u)
      << opens.message;
  dp.adaptive_clip_quantile.reset();
  shape.population = 4;
  dp.target_epsilon.reset();
  dp.noise_multiplier = 1;
  EXPECT_EQ(InFlags(privacy::ValidateDpSettings(dp, shape), DpFieldFlags("--dp-population")).flag,
            "--dp-population");
}

TEST(FlagErrorsTest, OtherErrorsKeepTheirWordsAndBlameNoFlag) {
  const FlagError error = InFlags(absl::InvalidArgumentError("`max_client_weight` is `x`"),
                                  {{"max_client_weight", "--max-client-weight"}});
  EXPECT_EQ(error.flag, "");
  EXPECT_EQ(error.message, "--max-client-weight is `x`");
}

}  // namespace
}  // namespace fedkit::cli
