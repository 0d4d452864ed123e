#include "simulation/progress_bar.h"

#include <limits>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ProgressState Midway() {
  return {.rounds_done = 37,
          .rounds_total = 200,
          .elapsed_seconds = 42.0,
          .last_accuracy = 0.8123,
          .last_accuracy_round = 30};
}

TEST(ProgressModeTest, ParsesTheThreeModesAndRefusesOthers) {
  EXPECT_EQ(*ParseProgressMode("auto"), ProgressMode::kAuto);
  EXPECT_EQ(*ParseProgressMode("on"), ProgressMode::kOn);
  EXPECT_EQ(*ParseProgressMode("off"), ProgressMode::kOff);
  const absl::StatusOr<ProgressMode> bad = ParseProgressMode("yes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("'yes'"));
  EXPECT_TRUE(ProgressEnabled(ProgressMode::kAuto, true));
  EXPECT_FALSE(ProgressEnabled(ProgressMode::kAuto, false));
  EXPECT_TRUE(ProgressEnabled(ProgressMode::kOn, false));
  EXPECT_FALSE(ProgressEnabled(ProgressMode::kOff, true));
}

TEST(ProgressFormatTest, DurationsInMinutesThenHours) {
  EXPECT_EQ(FormatDuration(0), "0:00");
  EXPECT_EQ(FormatDuration(59.4), "0:59");
  EXPECT_EQ(FormatDuration(185.03), "3:05");
  EXPECT_EQ(FormatDuration(3599), "59:59");
  EXPECT_EQ(FormatDuration(3725), "1:02:05");
  EXPECT_EQ(FormatDuration(-1), "--:--");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "--:--");
}

TEST(ProgressFormatTest, WideTerminalShowsEverything) {
  // ETA: 42 s for 37 rounds, 163 to go: 185 s. The bar gets the room the rest leaves (26 cells
  // of 99 columns), filled for 37/200 of it (4 cells).
  EXPECT_EQ(FormatProgress(Midway(), 100),
            "round 37/200 [####----------------------]   18%  0:42 elapsed  ETA 3:05  "
            "accuracy 0.8123 (round 30)");
  // At most 30 cells however wide.
  EXPECT_EQ(FormatProgress(Midway(), 300),
            "round 37/200 [#####-------------------------]   18%  0:42 elapsed  ETA 3:05  "
            "accuracy 0.8123 (round 30)");
}

TEST(ProgressFormatTest, NarrowTerminalsDropPartsInOrder) {
  EXPECT_EQ(FormatProgress(Midway(), 80),
            "round 37/200   18%  0:42 elapsed  ETA 3:05  accuracy 0.8123 (round 30)");
  EXPECT_EQ(FormatProgress(Midway(), 60),
            "round 37/200   18%  0:42 elapsed  ETA 3:05  accuracy 0.8123");
  EXPECT_EQ(FormatProgress(Midway(), 46), "round 37/200   18%  ETA 3:05  accuracy 0.8123");
  EXPECT_EQ(FormatProgress(Midway(), 30), "round 37/200   18%  ETA 3:05");
  EXPECT_EQ(FormatProgress(Midway(), 20), "round 37/200   18%");
  EXPECT_EQ(FormatProgress(Midway(), 14), "round 37/200");
  EXPECT_EQ(FormatProgress(Midway(), 8), "round 3");
}

TEST(ProgressFormatTest, NeverFillsTheLastColumnAndHasNoControlCharacters) {
  for (int width = 2; width <= 200; ++width) {
    const std::string text = FormatProgress(Midway(), width);
    EXPECT_LE(text.size(), static_cast<size_t>(width - 1)) << width;
    EXPECT_EQ(text.find_first_of("\r\n\033"), std::string::npos) << width;
  }
  EXPECT_EQ(FormatProgress(Midway(), 0), FormatProgress(Midway(), 80));
}

TEST(ProgressFormatTest, BeforeTheFirstRoundAndWhenDone) {
  ProgressState start{.rounds_done = 0, .rounds_total = 5};
  EXPECT_EQ(FormatProgress(start, 100),
            "round 0/5 [------------------------------]    0%  0:00 elapsed  ETA --:--");
  ProgressState done{.rounds_done = 5,
                     .rounds_total = 5,
                     .elapsed_seconds = 3725,
                     .last_accuracy = 0.5,
                     .last_accuracy_round = 5};
  EXPECT_EQ(FormatProgress(done, 100),
            "round 5/5 [##############################]  100%  1:02:05 elapsed  "
            "accuracy 0.5000 (round 5)");
}

TEST(ProgressBarTest, RedrawsInPlaceClearsOnlyWhatItDrewAndEndsTheLine) {
  std::ostringstream out;
  ProgressBar bar(out, -1, 30);
  bar.Clear();  // nothing drawn yet: nothing written
  EXPECT_EQ(out.str(), "");
  bar.Update(Midway());
  EXPECT_EQ(out.str(), "\rround 37/200   18%  ETA 3:05\033[K");
  out.str("");
  bar.Clear();
  EXPECT_EQ(out.str(), "\r\033[K");
  out.str("");
  bar.Clear();
  EXPECT_EQ(out.str(), "");
  bar.Update(Midway());
  out.str("");
  ProgressState done = Midway();
  done.rounds_done = 200;
  bar.Finish(done);
  EXPECT_EQ(out.str(), "\rround 200/200  100%\033[K\n");
  out.str("");
  bar.Clear();  // finished: the line is the terminal's now
  EXPECT_EQ(out.str(), "");
  EXPECT_THAT(FormatProgress(done, 200), Not(HasSubstr("ETA")));
}

}  // namespace
}  // namespace fedkit::simulation
