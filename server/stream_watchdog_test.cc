// Streams that idle or run too long are cancelled; active ones are not (server/stream_watchdog.h).
#include "server/stream_watchdog.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

TEST(StreamWatchdogTest, AnIdleStreamIsCancelledOnce) {
  StreamWatchdog dog(absl::Milliseconds(50), absl::Hours(1), absl::Milliseconds(10));
  absl::Notification cancelled;
  std::atomic<int> calls{0};
  StreamWatchdog::Watch watch = dog.Start([&] {
    ++calls;
    cancelled.Notify();
  });
  cancelled.WaitForNotification();  // no wall-clock limit: the test fails by hanging, not timing
  EXPECT_STREQ(watch.expired(), "idle");
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(dog.cancelled_idle(), 1);
}

TEST(StreamWatchdogTest, AStreamThatKeepsTalkingIsCancelledOnlyAtItsMaximum) {
  StreamWatchdog dog(absl::Seconds(30), absl::Milliseconds(200), absl::Milliseconds(10));
  absl::Notification cancelled;
  StreamWatchdog::Watch watch = dog.Start([&] { cancelled.Notify(); });
  while (!cancelled.HasBeenNotified()) {
    watch.Touch();
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_STREQ(watch.expired(), "too long");
  EXPECT_EQ(dog.cancelled_too_long(), 1);
  EXPECT_EQ(dog.cancelled_idle(), 0);
}

TEST(StreamWatchdogTest, AFinishedStreamIsNeverCancelled) {
  StreamWatchdog dog(absl::Milliseconds(20), absl::Hours(1), absl::Milliseconds(5));
  std::atomic<int> calls{0};
  {
    StreamWatchdog::Watch watch = dog.Start([&] { ++calls; });
  }
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(calls.load(), 0);
}

}  // namespace
}  // namespace fedkit::server
