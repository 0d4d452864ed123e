#include "client/device_flags.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

TEST(DeviceFlagsTest, MegabytesBecomeBytesInTheOptions) {
  FederatedClientOptions options;
  ASSERT_TRUE(ApplyDeviceLimitFlags({.max_model_mb = 30, .memory_mb = 0.5}, &options).ok());
  EXPECT_EQ(options.max_model_bytes, 30 * 1048576);
  EXPECT_EQ(options.memory_bytes, 524288);
  // The defaults mean "no limit".
  ASSERT_TRUE(ApplyDeviceLimitFlags({}, &options).ok());
  EXPECT_EQ(options.max_model_bytes, 0);
  EXPECT_EQ(options.memory_bytes, 0);
}

TEST(DeviceFlagsTest, BadSizesNameTheFlagAndLeaveTheOptionsAlone) {
  FederatedClientOptions options;
  options.max_model_bytes = 7;
  options.memory_bytes = 9;
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e300}) {
    absl::Status status = ApplyDeviceLimitFlags({.max_model_mb = bad}, &options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(status.message()), ::testing::StartsWith("--max-model-mb: "));
    status = ApplyDeviceLimitFlags({.max_model_mb = 1, .memory_mb = bad}, &options);
    EXPECT_THAT(std::string(status.message()), ::testing::StartsWith("--memory-mb: "));
  }
  EXPECT_EQ(options.max_model_bytes, 7);
  EXPECT_EQ(options.memory_bytes, 9);
}

}  // namespace
}  // namespace fedkit::client
