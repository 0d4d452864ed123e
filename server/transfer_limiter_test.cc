#include "server/transfer_limiter.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

TEST(TransferLimiterTest, AtMostTheLimitInFlightAndSlotsAreReleased) {
  TransferLimiter limiter(2);
  std::optional<TransferLimiter::Slot> a = limiter.Acquire(absl::InfiniteFuture());
  std::optional<TransferLimiter::Slot> b = limiter.Acquire(absl::InfiniteFuture());
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(limiter.in_flight(), 2);
  // Full: a third waits until its deadline and gets nothing.
  EXPECT_FALSE(limiter.Acquire(absl::Now() + absl::Milliseconds(20)).has_value());
  a.reset();
  EXPECT_EQ(limiter.in_flight(), 1);
  EXPECT_TRUE(limiter.Acquire(absl::Now()).has_value());  // released again at once
  EXPECT_EQ(limiter.in_flight(), 1);
  EXPECT_EQ(limiter.peak_in_flight(), 2);
}

TEST(TransferLimiterTest, ManyThreadsNeverExceedTheLimitAndAllGetASlot) {
  TransferLimiter limiter(3);
  std::atomic<int> now{0}, worst{0}, served{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      std::optional<TransferLimiter::Slot> slot = limiter.Acquire(absl::InfiniteFuture());
      ASSERT_TRUE(slot.has_value());
      const int inside = ++now;
      int seen = worst.load();
      while (inside > seen && !worst.compare_exchange_weak(seen, inside)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      --now;
      ++served;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(served.load(), 16);
  EXPECT_LE(worst.load(), 3);
  EXPECT_LE(limiter.peak_in_flight(), 3);
  EXPECT_EQ(limiter.in_flight(), 0);
}

}  // namespace
}  // namespace fedkit::server
