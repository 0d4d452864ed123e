#include "simulation/system_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ScheduleRoundTest, KeepsTheFirstToFinishByTheDeadline) {
  // Sampled 0..4 finish at 5, 1, never (dropped), 3 and 9; K = 2, deadline 6.
  const RoundSchedule s = ScheduleRound({5.0, 1.0, std::nullopt, 3.0, 9.0}, 2, 6.0);
  EXPECT_THAT(s.kept, ElementsAre(false, true, false, true, false));
  EXPECT_EQ(s.stragglers, 1);         // the one at 9
  EXPECT_EQ(s.not_needed, 1);         // the one at 5: in time, after the first two
  EXPECT_EQ(s.virtual_seconds, 3.0);  // closed by the second update
}

TEST(ScheduleRoundTest, FewerThanKInTimeCloseAtTheDeadline) {
  const RoundSchedule s = ScheduleRound({5.0, 1.0, std::nullopt, 3.0, 9.0}, 4, 6.0);
  EXPECT_THAT(s.kept, ElementsAre(true, true, false, true, false));
  EXPECT_EQ(s.stragglers, 1);
  EXPECT_EQ(s.not_needed, 0);
  EXPECT_EQ(s.virtual_seconds, 6.0);
  // Everyone reported (fewer than K were sampled): closed by the last, no deadline wait.
  const RoundSchedule all = ScheduleRound({2.0, 4.0}, 3, 60.0);
  EXPECT_THAT(all.kept, ElementsAre(true, true));
  EXPECT_EQ(all.virtual_seconds, 4.0);
  // No deadline: nobody is a straggler.
  const RoundSchedule none = ScheduleRound({100.0, 1.0, 50.0}, 2, std::nullopt);
  EXPECT_THAT(none.kept, ElementsAre(false, true, true));
  EXPECT_EQ(none.stragglers, 0);
  EXPECT_EQ(none.virtual_seconds, 50.0);
  // Ties keep the sampled order.
  EXPECT_THAT(ScheduleRound({0.0, 0.0, 0.0}, 2, std::nullopt).kept, ElementsAre(true, true, false));
}

TEST(DeviceSpeedsTest, TwoSpeedSlowsDownAnEvenlySpreadFraction) {
  for (uint64_t seed : {1u, 2u, 99u}) {
    absl::StatusOr<DeviceSpeeds> speeds = DeviceSpeeds::Create("two-speed:0.001,0.2,10", seed);
    ASSERT_TRUE(speeds.ok()) << speeds.status();
    int slow_in_first_100 = 0, slow_in_1000 = 0;
    for (int64_t client = 0; client < 1000; ++client) {
      const double spe = speeds->Of(client).seconds_per_example;
      ASSERT_TRUE(spe == 0.001 || spe == 0.001 * 10) << spe;
      EXPECT_EQ(speeds->Of(client).fixed_seconds, 0.0);
      if (spe > 0.001) {
        ++slow_in_1000;
        if (client < 100) ++slow_in_first_100;
      }
    }
    // A Weyl sequence: the fraction holds in every prefix up to a count of about one.
    EXPECT_NEAR(slow_in_first_100, 20, 1) << "seed " << seed;
    EXPECT_NEAR(slow_in_1000, 200, 2) << "seed " << seed;
    EXPECT_DOUBLE_EQ(speeds->RoundSeconds(0, 50, 2), speeds->Of(0).seconds_per_example * 100);
  }
  // The seed moves which devices are slow.
  absl::StatusOr<DeviceSpeeds> a = DeviceSpeeds::Create("two-speed:1,0.5,2", 1);
  absl::StatusOr<DeviceSpeeds> b = DeviceSpeeds::Create("two-speed:1,0.5,2", 2);
  ASSERT_TRUE(a.ok() && b.ok());
  int differ = 0;
  for (int64_t client = 0; client < 100; ++client) {
    differ += a->Of(client).seconds_per_example != b->Of(client).seconds_per_example;
  }
  EXPECT_GT(differ, 0);
  for (const char* bad : {"two-speed:0,0.2,10", "two-speed:1,1.5,10", "two-speed:1,0.2,0.5",
                          "two-speed:1,0.2", "two-speed:1,-0.1,10", "two-speed:x,0.2,10"}) {
    absl::StatusOr<DeviceSpeeds> s = DeviceSpeeds::Create(bad, 1);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("two-speed:SECONDS,FRACTION,SLOWDOWN")) << bad;
  }
}

TEST(DeviceSpeedsTest, TraceLinesAreMappedOntoClientsCyclically) {
  const std::string path =
      WriteFile("trace_ok.csv",
                "# measured on three phones\nseconds_per_example,fixed_seconds\n0.01,2\n"
                "0.5, 0\n0.1,1.5\n");
  absl::StatusOr<DeviceSpeeds> speeds = DeviceSpeeds::Create("trace:" + path, 1);
  ASSERT_TRUE(speeds.ok()) << speeds.status();
  EXPECT_EQ(speeds->Of(1).seconds_per_example, 0.5);
  EXPECT_EQ(speeds->Of(4).seconds_per_example, 0.5);  // 4 mod 3
  EXPECT_EQ(speeds->Of(5).fixed_seconds, 1.5);
  // 2 + 100 examples x 3 epochs x 0.01 s.
  EXPECT_DOUBLE_EQ(speeds->RoundSeconds(0, 100, 3), 5.0);
}

TEST(DeviceSpeedsTest, BadSpecsAndTracesNameTheProblem) {
  EXPECT_EQ(DeviceSpeeds::Create("gamma:1,2", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeviceSpeeds::Create("lognormal:0,1", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeviceSpeeds::Create("lognormal:1", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeviceSpeeds::Create("trace:/nonexistent/trace.csv", 1).status().code(),
            absl::StatusCode::kNotFound);
  const std::string no_header = WriteFile("trace_no_header.csv", "0.1,0\n");
  EXPECT_THAT(DeviceSpeeds::Create("trace:" + no_header, 1).status().message(),
              HasSubstr(":1: the first line must be the header"));
  const std::string bad = WriteFile("trace_bad.csv",
                                    "seconds_per_example,fixed_seconds\n0.1,0\n"
                                    "-3,0\n");
  absl::Status status = DeviceSpeeds::Create("trace:" + bad, 1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("trace_bad.csv:3"));
  const std::string empty = WriteFile("trace_empty.csv", "seconds_per_example,fixed_seconds\n");
  EXPECT_THAT(DeviceSpeeds::Create("trace:" + empty, 1).status().message(),
              HasSubstr("no devices"));
}

TEST(DeviceSpeedsTest, LognormalIsDeterministicInTheSeedWithTheGivenMedian) {
  const DeviceSpeeds a = *DeviceSpeeds::Create("lognormal:0.02,0.8", 5);
  const DeviceSpeeds b = *DeviceSpeeds::Create("lognormal:0.02,0.8", 5);
  const DeviceSpeeds c = *DeviceSpeeds::Create("lognormal:0.02,0.8", 6);
  std::vector<double> values;
  for (int64_t i = 0; i < 4001; ++i) {
    EXPECT_EQ(a.Of(i).seconds_per_example, b.Of(i).seconds_per_example);
    values.push_back(a.Of(i).seconds_per_example);
  }
  EXPECT_NE(a.Of(0).seconds_per_example, c.Of(0).seconds_per_example);
  std::nth_element(values.begin(), values.begin() + 2000, values.end());
  EXPECT_NEAR(values[2000], 0.02, 0.02 * 0.08);  // the sample median of 4001 draws
  // sigma 0: every device has the median speed.
  EXPECT_EQ(DeviceSpeeds::Create("lognormal:0.3,0", 1)->Of(17).seconds_per_example, 0.3);
}

}  // namespace
}  // namespace fedkit::simulation
