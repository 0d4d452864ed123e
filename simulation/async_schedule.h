// Buffered asynchronous training in virtual time (FedBuff, Nguyen et al., AISTATS 2022): who
// trains from which global model version, and when each buffer of K uploads is committed.
//
// The server keeps `concurrency` (C) devices training at once. At virtual time 0 it dispatches C
// clients, drawn uniformly without replacement from the population, with global model version 0.
// A client dispatched at time t uploads at t + duration(client). Uploads arrive in order of time
// (ties: in order of dispatch). Each arrival goes into the buffer and the server at once
// dispatches a replacement, drawn uniformly from the clients not training at that moment (the
// one that just uploaded included), so C stay in flight. The K-th arrival of a buffer commits it:
// the global model becomes version v + 1, and that arrival's replacement downloads version v + 1.
// An arrival that trained from version u is (v - u) versions stale when the buffer that holds it
// moves the model from version v to v + 1.
//
// With Options::cohorts (FedBuff under secure aggregation, whose members must agree keys before
// any uploads), a buffer is instead a cohort: `cohort_size` (K' >= K; K without over-selection)
// clients drawn together, uniformly without replacement from the idle ones, all from the current
// version. floor(C / K') cohorts train at once; a cohort arrives when its K-th member to finish
// does (ties: in order of dispatch) and commits at once with those K, every one (v - u) stale;
// its other K' - K members are stopped then (BufferCommit::stopped: they never upload). The
// replacement cohort, drawn from the clients idle then (the cohort's own included), downloads the
// version the commit made.
//
// Training never changes this schedule (durations depend only on the client), so the simulator
// knows a buffer's K members before training them and can train them in parallel.
//
// Thread safety: an AsyncSchedule is used by one thread at a time.
#ifndef FEDKIT_SIMULATION_ASYNC_SCHEDULE_H_
#define FEDKIT_SIMULATION_ASYNC_SCHEDULE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <queue>
#include <vector>

#include "absl/status/statusor.h"
#include "privacy/noise.h"

namespace fedkit::simulation {

struct AsyncArrival {
  int64_t client = 0;
  int64_t dispatch = 0;       // 0-based index of the dispatch, over the run
  int64_t start_version = 0;  // the global model version the client downloaded
  int64_t staleness = 0;      // versions committed between its download and its buffer's commit
  double start_seconds = 0.0;
  double finish_seconds = 0.0;
};

struct BufferCommit {
  int64_t version = 0;                 // the version the commit produces (1, 2, ...)
  double seconds = 0.0;                // virtual time of the commit: its last arrival
  std::vector<AsyncArrival> arrivals;  // K, in order of arrival
  // Cohorts with K' > K: the members stopped at the commit before they finished (finish_seconds
  // is when they would have), in order of dispatch.
  std::vector<AsyncArrival> stopped;
};

class AsyncSchedule {
 public:
  struct Options {
    int64_t population = 0;   // clients 0 .. population - 1
    int64_t concurrency = 0;  // C, in [1, population]
    int64_t buffer_size = 0;  // K, >= 1
    uint64_t seed = 0;        // draws the dispatched clients
    bool cohorts = false;     // buffers are cohorts dispatched together (needs C >= K')
    int64_t cohort_size = 0;  // K': 0 means K; else in [K, C]
  };
  // Virtual seconds from a client's download to its upload: finite and >= 0.
  using Duration = std::function<double(int64_t client)>;

  // INVALID_ARGUMENT for sizes out of range (with cohorts, also K' < K or C < K') or a null
  // `duration`.
  static absl::StatusOr<AsyncSchedule> Create(const Options& options, Duration duration);

  // Runs the clock to the next commit. INVALID_ARGUMENT if `duration` returns a negative or
  // non-finite time (the schedule is then unusable).
  absl::StatusOr<BufferCommit> Next();

  // The oldest version a client in flight trains from (the current version when none is): the
  // versions before it are needed no more.
  int64_t OldestVersionInFlight() const;
  int64_t version() const { return version_; }

 private:
  AsyncSchedule(const Options& options, Duration duration);
  absl::Status Dispatch(double now);
  // Draws one idle client and times it (not yet queued).
  absl::StatusOr<AsyncArrival> Draw(double now);
  absl::Status DispatchCohort(double now);
  absl::StatusOr<BufferCommit> NextCohort();

  struct Pending {
    AsyncArrival arrival;
    bool operator>(const Pending& other) const {
      if (arrival.finish_seconds != other.arrival.finish_seconds) {
        return arrival.finish_seconds > other.arrival.finish_seconds;
      }
      return arrival.dispatch > other.arrival.dispatch;
    }
  };

  Options options_;
  Duration duration_;
  privacy::SeededRandomSource random_;
  std::vector<int64_t> idle_;  // clients not training, in no particular order
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> in_flight_;
  // With cohorts: each cohort in flight, ordered by `last` (its slowest member's finish time and
  // its first dispatch), with its members.
  struct PendingCohort {
    Pending last;
    std::vector<AsyncArrival> members;
    bool operator>(const PendingCohort& other) const { return last > other.last; }
  };
  std::priority_queue<PendingCohort, std::vector<PendingCohort>, std::greater<PendingCohort>>
      cohorts_in_flight_;
  std::map<int64_t, int64_t> clients_per_version_;  // in flight, by start version
  int64_t version_ = 0;
  int64_t dispatches_ = 0;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_ASYNC_SCHEDULE_H_
