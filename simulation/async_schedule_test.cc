#include "simulation/async_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

struct Seen {
  int64_t client, start_version, staleness;
  double finish;
};

std::vector<Seen> Summary(const BufferCommit& commit) {
  std::vector<Seen> out;
  for (const AsyncArrival& a : commit.arrivals) {
    out.push_back({a.client, a.start_version, a.staleness, a.finish_seconds});
  }
  return out;
}

MATCHER_P4(IsArrival, client, start_version, staleness, finish, "") {
  return arg.client == client && arg.start_version == start_version && arg.staleness == staleness &&
         arg.finish == finish;
}

TEST(AsyncScheduleTest, HandWorkedExample) {
  // Everyone is dispatched at time 0 (C = population), so each replacement is the client that
  // just uploaded. Client 0 takes 1 s, client 1 10 s, client 2 3 s; K = 2.
  const std::vector<double> seconds = {1.0, 10.0, 3.0};
  absl::StatusOr<AsyncSchedule> schedule =
      AsyncSchedule::Create({.population = 3, .concurrency = 3, .buffer_size = 2, .seed = 7},
                            [&](int64_t client) { return seconds[client]; });
  ASSERT_TRUE(schedule.ok()) << schedule.status();

  absl::StatusOr<BufferCommit> first = schedule->Next();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->version, 1);
  EXPECT_EQ(first->seconds, 2.0);
  EXPECT_THAT(Summary(*first),
              ::testing::ElementsAre(IsArrival(0, 0, 0, 1.0), IsArrival(0, 0, 0, 2.0)));
  // Client 0 again downloads version 1 at 2 s.
  absl::StatusOr<BufferCommit> second = schedule->Next();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->seconds, 3.0);
  // Both arrive at 3 s: client 2 was dispatched first (at 0 s, from version 0: one version stale).
  EXPECT_THAT(Summary(*second),
              ::testing::ElementsAre(IsArrival(2, 0, 1, 3.0), IsArrival(0, 1, 0, 3.0)));
  // In flight: client 1 (version 0), client 2 (version 1), client 0 (version 2).
  EXPECT_EQ(schedule->version(), 2);
  EXPECT_EQ(schedule->OldestVersionInFlight(), 0);

  absl::StatusOr<BufferCommit> third = schedule->Next();
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->seconds, 5.0);
  EXPECT_THAT(Summary(*third),
              ::testing::ElementsAre(IsArrival(0, 2, 0, 4.0), IsArrival(0, 2, 0, 5.0)));
  absl::StatusOr<BufferCommit> fourth = schedule->Next();
  ASSERT_TRUE(fourth.ok());
  // Client 2 (from version 1 at 3 s) arrives at 6 s, two versions stale; client 0 at 6 s too.
  EXPECT_THAT(Summary(*fourth),
              ::testing::ElementsAre(IsArrival(2, 1, 2, 6.0), IsArrival(0, 3, 0, 6.0)));
  // Client 1 arrives at 10 s, from version 0.
  bool saw_client_1 = false;
  for (int k = 0; k < 5 && !saw_client_1; ++k) {
    absl::StatusOr<BufferCommit> next = schedule->Next();
    ASSERT_TRUE(next.ok());
    for (const AsyncArrival& a : next->arrivals) {
      if (a.client != 1) continue;
      saw_client_1 = true;
      EXPECT_EQ(a.finish_seconds, 10.0);
      EXPECT_EQ(a.start_version, 0);
      EXPECT_EQ(a.staleness, next->version - 1);
    }
  }
  EXPECT_TRUE(saw_client_1);
  EXPECT_GT(schedule->OldestVersionInFlight(), 0);
}

TEST(AsyncScheduleTest, KeepsConcurrencyAndTime) {
  // Random durations: check the invariants over many commits.
  auto duration = [](int64_t client) { return 0.5 + static_cast<double>((client * 37) % 11); };
  const AsyncSchedule::Options options{
      .population = 50, .concurrency = 12, .buffer_size = 5, .seed = 3};
  absl::StatusOr<AsyncSchedule> schedule = AsyncSchedule::Create(options, duration);
  absl::StatusOr<AsyncSchedule> again = AsyncSchedule::Create(options, duration);
  ASSERT_TRUE(schedule.ok() && again.ok());
  std::set<int64_t> dispatches;
  double last_commit = 0.0, last_finish = 0.0;
  int64_t stale = 0;
  for (int64_t version = 1; version <= 200; ++version) {
    absl::StatusOr<BufferCommit> commit = schedule->Next();
    absl::StatusOr<BufferCommit> twin = again->Next();
    ASSERT_TRUE(commit.ok() && twin.ok());
    EXPECT_EQ(commit->version, version);
    ASSERT_EQ(commit->arrivals.size(), 5u);
    EXPECT_GE(commit->seconds, last_commit);
    last_commit = commit->seconds;
    EXPECT_EQ(commit->seconds, commit->arrivals.back().finish_seconds);
    for (size_t k = 0; k < commit->arrivals.size(); ++k) {
      const AsyncArrival& a = commit->arrivals[k];
      EXPECT_GE(a.finish_seconds, last_finish);  // arrivals in order of time
      last_finish = a.finish_seconds;
      EXPECT_EQ(a.finish_seconds, a.start_seconds + duration(a.client));
      EXPECT_EQ(a.staleness, version - 1 - a.start_version);
      EXPECT_GE(a.staleness, 0);
      EXPECT_TRUE(dispatches.insert(a.dispatch).second);  // each dispatch arrives once
      EXPECT_EQ(a.client, twin->arrivals[k].client);      // deterministic in the seed
      EXPECT_EQ(a.dispatch, twin->arrivals[k].dispatch);
      stale += a.staleness > 0;
    }
    EXPECT_LE(schedule->OldestVersionInFlight(), schedule->version());
  }
  // Arrivals are the dispatches 0, 1, 2, ... up to C behind.
  EXPECT_GE(*dispatches.rbegin(), 999 - 12);
  EXPECT_LT(*dispatches.rbegin(), 1000 + 12);
  EXPECT_GT(stale, 0);  // with C > K, some updates are stale
}

TEST(AsyncScheduleTest, NoClientTrainsTwiceAtOnce) {
  // C close to the population forces replacements to be the few idle clients.
  absl::StatusOr<AsyncSchedule> schedule =
      AsyncSchedule::Create({.population = 6, .concurrency = 5, .buffer_size = 2, .seed = 11},
                            [](int64_t client) { return 1.0 + static_cast<double>(client); });
  ASSERT_TRUE(schedule.ok());
  // Replay the arrivals: between a client's dispatch and its arrival it must not be dispatched.
  std::map<int64_t, std::pair<double, double>> busy;  // client -> last (start, finish)
  for (int c = 0; c < 100; ++c) {
    absl::StatusOr<BufferCommit> commit = schedule->Next();
    ASSERT_TRUE(commit.ok());
    for (const AsyncArrival& a : commit->arrivals) {
      auto it = busy.find(a.client);
      if (it != busy.end()) {
        EXPECT_GE(a.start_seconds, it->second.second) << a.client;
      }
      busy[a.client] = {a.start_seconds, a.finish_seconds};
    }
  }
}

TEST(AsyncScheduleTest, RefusesBadSizesAndTimes) {
  auto one = [](int64_t) { return 1.0; };
  EXPECT_THAT(AsyncSchedule::Create({.population = 10, .concurrency = 11, .buffer_size = 2}, one)
                  .status()
                  .message(),
              HasSubstr("`concurrency`"));
  EXPECT_THAT(AsyncSchedule::Create({.population = 10, .concurrency = 0, .buffer_size = 2}, one)
                  .status()
                  .message(),
              HasSubstr("`concurrency`"));
  EXPECT_THAT(AsyncSchedule::Create({.population = 10, .concurrency = 5, .buffer_size = 0}, one)
                  .status()
                  .message(),
              HasSubstr("`buffer_size`"));
  EXPECT_EQ(AsyncSchedule::Create({.population = 10, .concurrency = 5, .buffer_size = 1}, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<AsyncSchedule> nan =
      AsyncSchedule::Create({.population = 3, .concurrency = 2, .buffer_size = 1},
                            [](int64_t) { return std::numeric_limits<double>::quiet_NaN(); });
  EXPECT_THAT(nan.status().message(), HasSubstr("finite and >= 0"));
}

// Cohorts (secure aggregation): a buffer's K members are dispatched together from one version and
// arrive with the slowest of them; floor(C / K) cohorts train at once and no client is in two.
TEST(AsyncScheduleTest, CohortsTrainTogetherAndArriveWithTheirSlowestMember) {
  absl::StatusOr<AsyncSchedule> schedule = AsyncSchedule::Create(
      {.population = 20, .concurrency = 7, .buffer_size = 3, .seed = 5, .cohorts = true},
      [](int64_t client) { return 1.0 + static_cast<double>(client % 4); });
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  std::map<int64_t, double> busy_until;  // client -> finish of its last cohort
  double last_commit = 0.0;
  int64_t stale = 0;
  for (int c = 0; c < 200; ++c) {
    const int64_t version_before = schedule->version();
    absl::StatusOr<BufferCommit> commit = schedule->Next();
    ASSERT_TRUE(commit.ok()) << commit.status();
    ASSERT_EQ(commit->arrivals.size(), 3u);
    EXPECT_EQ(commit->version, version_before + 1);
    EXPECT_GE(commit->seconds, last_commit);
    last_commit = commit->seconds;
    const AsyncArrival& first = commit->arrivals.front();
    double slowest = 0.0;
    for (const AsyncArrival& a : commit->arrivals) {
      EXPECT_EQ(a.start_version, first.start_version);
      EXPECT_EQ(a.start_seconds, first.start_seconds);
      EXPECT_EQ(a.staleness, version_before - a.start_version);
      EXPECT_LE(a.finish_seconds, commit->seconds);
      slowest = std::max(slowest, a.finish_seconds);
      // Not dispatched again before its previous cohort arrived.
      if (auto it = busy_until.find(a.client); it != busy_until.end()) {
        EXPECT_GE(a.start_seconds, it->second) << a.client;
      }
      stale = std::max(stale, a.staleness);
    }
    EXPECT_EQ(slowest, commit->seconds);
    for (const AsyncArrival& a : commit->arrivals) busy_until[a.client] = commit->seconds;
    EXPECT_TRUE(std::is_sorted(commit->arrivals.begin(), commit->arrivals.end(),
                               [](const AsyncArrival& a, const AsyncArrival& b) {
                                 return a.finish_seconds < b.finish_seconds;
                               }));
  }
  EXPECT_GT(stale, 0);  // two cohorts in flight: the second to arrive is stale
}

TEST(AsyncScheduleTest, OneCohortAtATimeIsNeverStale) {
  absl::StatusOr<AsyncSchedule> schedule = AsyncSchedule::Create(
      {.population = 10, .concurrency = 5, .buffer_size = 4, .seed = 5, .cohorts = true},
      [](int64_t client) { return static_cast<double>(client); });
  ASSERT_TRUE(schedule.ok());
  for (int c = 0; c < 20; ++c) {
    absl::StatusOr<BufferCommit> commit = schedule->Next();
    ASSERT_TRUE(commit.ok());
    for (const AsyncArrival& a : commit->arrivals) EXPECT_EQ(a.staleness, 0);
    EXPECT_EQ(schedule->OldestVersionInFlight(), schedule->version());
  }
  EXPECT_THAT(
      AsyncSchedule::Create({.population = 10, .concurrency = 3, .buffer_size = 4, .cohorts = true},
                            [](int64_t) { return 1.0; })
          .status()
          .message(),
      HasSubstr("`concurrency` (3) is below `buffer_size` (4)"));
}

// Over-selected cohorts: K' = 4 dispatched, the first K = 3 to finish commit, the fourth is
// stopped then and may be dispatched again.
TEST(AsyncScheduleTest, AnOverSelectedCohortCommitsItsFirstKAndStopsTheRest) {
  absl::StatusOr<AsyncSchedule> schedule =
      AsyncSchedule::Create({.population = 12,
                             .concurrency = 9,
                             .buffer_size = 3,
                             .seed = 3,
                             .cohorts = true,
                             .cohort_size = 4},
                            [](int64_t client) { return 1.0 + static_cast<double>(client); });
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  std::map<int64_t, double> busy_until;
  for (int c = 0; c < 100; ++c) {
    absl::StatusOr<BufferCommit> commit = schedule->Next();
    ASSERT_TRUE(commit.ok());
    ASSERT_EQ(commit->arrivals.size(), 3u);
    ASSERT_EQ(commit->stopped.size(), 1u);
    EXPECT_EQ(commit->arrivals.back().finish_seconds, commit->seconds);
    EXPECT_GE(commit->stopped[0].finish_seconds, commit->seconds);
    EXPECT_EQ(commit->stopped[0].start_version, commit->arrivals[0].start_version);
    for (const auto* group : {&commit->arrivals, &commit->stopped}) {
      for (const AsyncArrival& a : *group) {
        if (auto it = busy_until.find(a.client); it != busy_until.end()) {
          EXPECT_GE(a.start_seconds, it->second) << a.client;
        }
      }
    }
    for (const auto* group : {&commit->arrivals, &commit->stopped}) {
      for (const AsyncArrival& a : *group) busy_until[a.client] = commit->seconds;
    }
  }
  // K' must fill K, and C must hold K'.
  auto one = [](int64_t) { return 1.0; };
  EXPECT_THAT(
      AsyncSchedule::Create(
          {.population = 10, .concurrency = 5, .buffer_size = 4, .cohorts = true, .cohort_size = 3},
          one)
          .status()
          .message(),
      HasSubstr("cannot fill"));
  EXPECT_THAT(
      AsyncSchedule::Create(
          {.population = 10, .concurrency = 5, .buffer_size = 4, .cohorts = true, .cohort_size = 6},
          one)
          .status()
          .message(),
      HasSubstr("over-selected cohort size (6)"));
}

}  // namespace
}  // namespace fedkit::simulation
