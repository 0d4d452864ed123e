#include "privacy/clipping.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

TEST(L2NormTest, MatchesHandComputed) {
  std::vector<float> v = {3.0f, 4.0f, 12.0f};
  EXPECT_DOUBLE_EQ(L2Norm(v), 13.0);
  EXPECT_DOUBLE_EQ(L2Norm({}), 0.0);
}

TEST(ClipL2Test, ScalesDownToClipNormPreservingDirection) {
  std::vector<float> v = {3.0f, 4.0f};
  const double before = ClipL2InPlace(absl::MakeSpan(v), 1.0);
  EXPECT_DOUBLE_EQ(before, 5.0);
  EXPECT_NEAR(v[0], 0.6f, 1e-7);
  EXPECT_NEAR(v[1], 0.8f, 1e-7);
  EXPECT_NEAR(L2Norm(v), 1.0, 1e-6);
}

TEST(ClipL2Test, LeavesSmallDeltaUnchanged) {
  std::vector<float> v = {0.3f, -0.4f};
  ClipL2InPlace(absl::MakeSpan(v), 1.0);
  EXPECT_EQ(v[0], 0.3f);
  EXPECT_EQ(v[1], -0.4f);
}

TEST(ClipL2Test, NonPositiveClipNormDisablesClipping) {
  std::vector<float> v = {30.0f, 40.0f};
  EXPECT_DOUBLE_EQ(ClipL2InPlace(absl::MakeSpan(v), 0.0), 50.0);
  EXPECT_EQ(v[0], 30.0f);
  EXPECT_EQ(v[1], 40.0f);
}

}  // namespace
}  // namespace fedkit::privacy
