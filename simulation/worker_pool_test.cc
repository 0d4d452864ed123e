#include "simulation/worker_pool.h"

#include <atomic>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

TEST(WorkerPoolTest, RunsTheJobOnceOnEveryWorkerEachTime) {
  WorkerPool pool(3);
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<int> mask{0};
    pool.RunOnEachWorker([&](int w) { mask |= 1 << w; });
    EXPECT_EQ(mask.load(), 0b111);
  }
}

TEST(WorkerPoolTest, OnStartRunsOnTheWorkerThreads) {
  absl::Mutex mu;
  std::set<std::thread::id> ids;
  {
    WorkerPool pool(2, [&](int) {
      absl::MutexLock lock(&mu);
      ids.insert(std::this_thread::get_id());
    });
    pool.RunOnEachWorker([](int) {});
  }
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u);
}

TEST(WorkerPoolTest, ParallelForRunsEveryIndexOnceOnAWorker) {
  WorkerPool pool(3);
  std::vector<std::atomic<int>> seen(100);
  std::atomic<int> bad_worker{0};
  pool.ParallelFor(100, [&](int worker, int64_t i) {
    if (worker < 0 || worker >= 3) ++bad_worker;
    ++seen[i];
  });
  for (const auto& count : seen) EXPECT_EQ(count.load(), 1);
  EXPECT_EQ(bad_worker.load(), 0);
  pool.ParallelFor(0, [&](int, int64_t) { ++bad_worker; });
  EXPECT_EQ(bad_worker.load(), 0);
}

TEST(RunOrderedTest, ConsumesInTaskOrderWhateverTheFinishingOrder) {
  WorkerPool pool(4);
  std::vector<int64_t> consumed;
  absl::Status status = RunOrdered<int64_t>(
      pool, 200, 8,
      [](int, int64_t task) -> absl::StatusOr<int64_t> {
        // Later tasks often finish first.
        std::this_thread::sleep_for(std::chrono::microseconds((200 - task) % 7 * 50));
        return task * task;
      },
      [&](int64_t task, int64_t value) {
        EXPECT_EQ(value, task * task);
        consumed.push_back(task);
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(consumed.size(), 200u);
  for (int64_t i = 0; i < 200; ++i) EXPECT_EQ(consumed[i], i);
}

TEST(RunOrderedTest, AtMostWindowResultsAreOutstanding) {
  WorkerPool pool(4);
  std::atomic<int64_t> consumed_count{0};
  std::atomic<int64_t> max_ahead{0};
  const int64_t window = 3;
  absl::Status status = RunOrdered<int>(
      pool, 300, window,
      [&](int, int64_t task) -> absl::StatusOr<int> {
        const int64_t ahead = task - consumed_count.load();
        int64_t seen = max_ahead.load();
        while (ahead > seen && !max_ahead.compare_exchange_weak(seen, ahead)) {
        }
        if (task == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return 0;
      },
      [&](int64_t, int) {
        ++consumed_count;
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(consumed_count.load(), 300);
  // A task starts only when fewer than `window` results are unconsumed before it.
  EXPECT_LT(max_ahead.load(), window);
}

TEST(RunOrderedTest, FirstErrorStopsTheRunAndIsReturned) {
  WorkerPool pool(2);
  std::atomic<int> produced{0};
  absl::Status status = RunOrdered<int>(
      pool, 1000, 4,
      [&](int, int64_t task) -> absl::StatusOr<int> {
        ++produced;
        if (task == 10) return absl::InternalError("task 10 failed");
        return 1;
      },
      [](int64_t, int) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(), "task 10 failed");
  EXPECT_LT(produced.load(), 1000);

  status = RunOrdered<int>(
      pool, 50, 4, [](int, int64_t) -> absl::StatusOr<int> { return 1; },
      [](int64_t task, int) {
        return task == 5 ? absl::InvalidArgumentError("bad result") : absl::OkStatus();
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(RunOrderedTest, ZeroTasksIsFine) {
  WorkerPool pool(2);
  int calls = 0;
  EXPECT_TRUE(RunOrdered<int>(
                  pool, 0, 4, [&](int, int64_t) -> absl::StatusOr<int> { return ++calls; },
                  [&](int64_t, int) { return absl::OkStatus(); })
                  .ok());
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace fedkit::simulation
