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
  if (options.cohorts && options.concurrency < options.buffer_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("`concurrency` (", options.concurrency, ") is below `buffer_size` (",
                     options.buffer_size, "): cohorts of `buffer_size` clients train at once"));
  }
  AsyncSchedule schedule(options, std::move(duration));
  if (options.cohorts) {
    for (int64_t c = 0; c + options.buffer_size <= options.concurrency; c += options.buffer_size) {
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
  for (int64_t k = 0; k < options_.buffer_size; ++k) {
    FEDKIT_ASSIGN_OR_RETURN(AsyncArrival arrival, Draw(now));
    cohort.members.push_back(arrival);
  }
  // Ordered by the slowest member's arrival, then by the cohort's (first) dispatch.
  cohort.last.arrival.dispatch = cohort.members.front().dispatch;
  for (const AsyncArrival& member : cohort.members) {
    cohort.last.arrival.finish_seconds =
        std::max(cohort.last.arrival.finish_seconds, member.finish_seconds);
  }
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
  // In order of arrival (each member's upload), as a plain buffer's.
  std::sort(cohort.members.begin(), cohort.members.end(),
            [](const AsyncArrival& a, const AsyncArrival& b) { return Pending{b} > Pending{a}; });
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
