#include "simulation/async_schedule.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/seeds.h"
#include "core/status_macros.h"

namespace fedkit::simulation {
namespace {

constexpr uint64_t kDispatchTag = 0x6173796e63;  // "async"

}  // namespace

absl::StatusOr<AsyncSchedule> AsyncSchedule::Create(const Options& options, Duration duration) {
  if (options.population < 1) {
    return absl::InvalidArgumentError("asynchronous training needs at least one client");
  }
  if (options.concurrency < 1 || options.concurrency > options.population) {
    return absl::InvalidArgumentError(
        absl::StrCat("`concurrency` must be between 1 and the number of clients (",
                     options.population, "), got ", options.concurrency));
  }
  if (options.buffer_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("`buffer_size` must be >= 1, got ", options.buffer_size));
  }
  if (!duration) return absl::InvalidArgumentError("no duration function");
  Options resolved = options;
  if (resolved.cohorts && resolved.cohort_size == 0) resolved.cohort_size = resolved.buffer_size;
  if (resolved.cohorts && resolved.cohort_size < resolved.buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("a cohort of ", resolved.cohort_size,
                                                   " clients cannot fill a buffer of ",
                                                   resolved.buffer_size));
  }
  if (resolved.cohorts && resolved.concurrency < resolved.cohort_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`concurrency` (", resolved.concurrency, ") is below ",
        resolved.cohort_size == resolved.buffer_size
            ? absl::StrCat("`buffer_size` (", resolved.buffer_size, ")")
            : absl::StrCat("the over-selected cohort size (", resolved.cohort_size, ")"),
        ": cohorts of `buffer_size` clients train at once"));
  }
  AsyncSchedule schedule(resolved, std::move(duration));
  if (resolved.cohorts) {
    for (int64_t c = 0; c + resolved.cohort_size <= resolved.concurrency;
         c += resolved.cohort_size) {
      FEDKIT_RETURN_IF_ERROR(schedule.DispatchCohort(0.0));
    }
    return schedule;
  }
  for (int64_t c = 0; c < options.concurrency; ++c) {
    FEDKIT_RETURN_IF_ERROR(schedule.Dispatch(0.0));
  }
  return schedule;
}

AsyncSchedule::AsyncSchedule(const Options& options, Duration duration)
    : options_(options),
      duration_(std::move(duration)),
      random_(DeriveSeed(options.seed, {kDispatchTag})) {
  idle_.reserve(static_cast<size_t>(options.population));
  for (int64_t c = 0; c < options.population; ++c) idle_.push_back(c);
}

absl::Status AsyncSchedule::Dispatch(double now) {
  FEDKIT_ASSIGN_OR_RETURN(AsyncArrival arrival, Draw(now));
  in_flight_.push(Pending{arrival});
  return absl::OkStatus();
}

absl::Status AsyncSchedule::DispatchCohort(double now) {
  PendingCohort cohort;
  for (int64_t k = 0; k < options_.cohort_size; ++k) {
    FEDKIT_ASSIGN_OR_RETURN(AsyncArrival arrival, Draw(now));
    cohort.members.push_back(arrival);
  }
  // Ordered by its K-th member to finish, then by the cohort's (first) dispatch.
  std::vector<double> finishes;
  for (const AsyncArrival& member : cohort.members) finishes.push_back(member.finish_seconds);
  std::nth_element(finishes.begin(), finishes.begin() + (options_.buffer_size - 1), finishes.end());
  cohort.last.arrival.finish_seconds = finishes[options_.buffer_size - 1];
  cohort.last.arrival.dispatch = cohort.members.front().dispatch;
  cohorts_in_flight_.push(std::move(cohort));
  return absl::OkStatus();
}

absl::StatusOr<BufferCommit> AsyncSchedule::NextCohort() {
  PendingCohort cohort = cohorts_in_flight_.top();
  cohorts_in_flight_.pop();
  BufferCommit commit;
  commit.version = version_ + 1;
  commit.seconds = cohort.last.arrival.finish_seconds;
  for (AsyncArrival& arrival : cohort.members) {
    if (--clients_per_version_[arrival.start_version] == 0) {
      clients_per_version_.erase(arrival.start_version);
    }
    arrival.staleness = version_ - arrival.start_version;
    idle_.push_back(arrival.client);
  }
  // In order of arrival (each member's upload), as a plain buffer's; the first K make the commit.
  std::sort(cohort.members.begin(), cohort.members.end(),
            [](const AsyncArrival& a, const AsyncArrival& b) { return Pending{b} > Pending{a}; });
  commit.stopped.assign(cohort.members.begin() + options_.buffer_size, cohort.members.end());
  std::sort(commit.stopped.begin(), commit.stopped.end(),
            [](const AsyncArrival& a, const AsyncArrival& b) { return a.dispatch < b.dispatch; });
  cohort.members.resize(static_cast<size_t>(options_.buffer_size));
  commit.arrivals = std::move(cohort.members);
  version_ = commit.version;
  FEDKIT_RETURN_IF_ERROR(DispatchCohort(commit.seconds));
  return commit;
}

absl::StatusOr<AsyncArrival> AsyncSchedule::Draw(double now) {
  // Uniform over the idle clients: swap the drawn one to the end and remove it.
  const uint64_t pick = privacy::UniformBelow(random_, idle_.size());
  std::swap(idle_[pick], idle_.back());
  AsyncArrival arrival;
  arrival.client = idle_.back();
  idle_.pop_back();
  arrival.dispatch = dispatches_++;
  arrival.start_version = version_;
  arrival.start_seconds = now;
  const double seconds = duration_(arrival.client);
  if (!(seconds >= 0 && std::isfinite(seconds))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client ", arrival.client, ": training time must be finite and >= 0, got ", seconds));
  }
  arrival.finish_seconds = now + seconds;
  ++clients_per_version_[version_];
  return arrival;
}

absl::StatusOr<BufferCommit> AsyncSchedule::Next() {
  if (options_.cohorts) return NextCohort();
  BufferCommit commit;
  commit.version = version_ + 1;
  commit.arrivals.reserve(static_cast<size_t>(options_.buffer_size));
  for (int64_t k = 0; k < options_.buffer_size; ++k) {
    AsyncArrival arrival = in_flight_.top().arrival;
    in_flight_.pop();
    if (--clients_per_version_[arrival.start_version] == 0) {
      clients_per_version_.erase(arrival.start_version);
    }
    arrival.staleness = version_ - arrival.start_version;
    idle_.push_back(arrival.client);
    const double now = arrival.finish_seconds;
    commit.arrivals.push_back(arrival);
    // The last arrival's replacement downloads the version this commit makes.
    if (k + 1 == options_.buffer_size) {
      commit.seconds = now;
      version_ = commit.version;
    }
    FEDKIT_RETURN_IF_ERROR(Dispatch(now));
  }
  return commit;
}

int64_t AsyncSchedule::OldestVersionInFlight() const {
  return clients_per_version_.empty() ? version_ : clients_per_version_.begin()->first;
}

}  // namespace fedkit::simulation
