// FedBuff (Nguyen et al., AISTATS 2022) in the simulator: buffered asynchronous aggregation on
// the virtual clock of simulation/system_model.h.
//
// Up to C clients train at once (simulation/async_schedule.h says who and from which model
// version); every K arrivals the server commits a buffer:
//     average = sum_i n_i w(s_i) delta_i / sum_i n_i
// over the buffer's K updates, where n_i is client i's example count (capped like FedAvg's
// weight), s_i its staleness and w the staleness weighting (aggregation/staleness.h; default
// 1/sqrt(1 + s)); the server optimizer then applies the average as it applies a FedAvg round's.
// With equal example counts this is the paper's (1/K) sum_i w(s_i) delta_i; with nothing stale it
// is weighted FedAvg over the buffer. Each commit is one RoundResult (`round` is the version it
// makes); `virtual_seconds` is the time since the previous commit and `virtual_elapsed_seconds`
// the commit's time, so time-to-accuracy compares with synchronous rounds' virtual time.
//
// A device's time from download to upload is its DeviceSpeeds::RoundSeconds over its examples
// and the plan's epochs (SystemOptions::device_speeds; without speeds every device takes 0 s and
// arrivals come in dispatch order). Clients train from the version they downloaded: the
// simulator keeps each version some client in flight still trains from (at most C + 1 parameter
// vectors). The updates of a buffer are known before they are trained, so they train in parallel
// on the workers and are summed exactly in arrival order: results are the same for any number of
// threads.
//
// With SimulationOptions::client_evaluation, every evaluated commit also evaluates each client on
// its own held-out examples (simulation/client_evaluation.h), as a synchronous run does.
//
// With SimulationOptions::secure_aggregation each buffer is a cohort, as in the coordinator
// (server/round_coordinator.h, CoordinatorOptions::fedbuff): K clients dispatched together from
// one version, floor(C / K) cohorts at once, each arriving when its slowest member does
// (AsyncSchedule::Options::cohorts); the cohort runs the SecAgg/SecAgg+ protocol in memory over
// its members' fixed-point encoded updates, and the commit is the decoded weighted average times
// w(s), one staleness for the cohort. RoundResult::secure_aggregation reports its cost.
//
// Create refuses (INVALID_ARGUMENT, naming the field) DP, update compression, download
// compression, robust aggregators, attacks, dropout, replay, client ids, deadlines and
// over-selection, none of which has an asynchronous meaning here yet; and secure aggregation
// without a clip norm or with C < K. It also refuses what Simulator::Create refuses of the shared
// options (a bad plan, rounds < 1, threads < 1), and buffer sizes out of range
// (AsyncSchedule::Create).
//
// Thread safety: one thread at a time (like Simulator).
#ifndef FEDKIT_SIMULATION_FEDBUFF_SIMULATOR_H_
#define FEDKIT_SIMULATION_FEDBUFF_SIMULATOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregation/server_optimizer.h"
#include "aggregation/staleness.h"
#include "client/local_trainer.h"
#include "data/federated_dataset.h"
#include "privacy/secagg/encoding.h"
#include "simulation/async_schedule.h"
#include "simulation/client_evaluation.h"
#include "simulation/simulator.h"
#include "simulation/system_model.h"
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

// K, C and the weighting, shared with the coordinator (aggregation/staleness.h); here C must also
// be at most the population.
using FedBuffOptions = aggregation::FedBuffSettings;

class FedBuffSimulator final : public RoundRunner {
 public:
  // Uses of `options`: model, rounds (commits), plan, server_optimizer, max_client_weight, seed,
  // threads, eval_every, system.device_speeds, client_evaluation; clients_per_round is not used (C
  // and K replace it). The dataset must outlive the simulator. Errors as above.
  static absl::StatusOr<std::unique_ptr<FedBuffSimulator>> Create(
      const SimulationOptions& options, const FedBuffOptions& fedbuff,
      const data::FederatedDataset* dataset);

  // Runs the clock to the next commit, trains the buffer's K clients from the versions they
  // downloaded, applies the commit and evaluates when eval_every says so or it is the last.
  absl::StatusOr<RoundResult> RunRound() override;
  const std::vector<float>& global_parameters() const override { return global_; }
  absl::StatusOr<std::shared_ptr<models::Model>> GlobalModel() const override;

  // How many parameter vectors (model versions) the simulator holds now, the global one included.
  int64_t versions_held() const { return static_cast<int64_t>(versions_.size()); }

 private:
  FedBuffSimulator(const SimulationOptions& options, const FedBuffOptions& fedbuff,
                   const data::FederatedDataset* dataset,
                   std::unique_ptr<ClientEvaluator> client_evaluator, AsyncSchedule schedule);
  // Trains one arrival from the version it downloaded, on `worker`'s trainer.
  absl::StatusOr<client::ClientUpdate> Train(int worker, const AsyncArrival& arrival) const;
  // The commit's average: a plain buffer's sum n_i w(s_i) delta_i / sum n_i, folded exactly in
  // arrival order; or a cohort's, through the in-memory secure aggregation protocol (aborted:
  // result.aborted set, the average empty). Both fill result's training statistics.
  absl::StatusOr<std::vector<float>> AggregateBuffer(const BufferCommit& commit,
                                                     RoundResult& result);
  absl::StatusOr<std::vector<float>> AggregateCohort(const BufferCommit& commit,
                                                     RoundResult& result);

  const SimulationOptions options_;
  const FedBuffOptions fedbuff_;
  // What the clients train on: the given dataset, or client_evaluator_->dataset().
  const data::FederatedDataset* dataset_;
  std::unique_ptr<ClientEvaluator> client_evaluator_;  // with options.client_evaluation
  // With secure aggregation: the cohort's fixed-point encoding (sized for K clients).
  std::optional<secagg::FixedPointEncoding> encoding_;
  AsyncSchedule schedule_;
  std::vector<float> global_;
  std::map<int64_t, std::vector<float>> versions_;  // still trained from, by version
  std::unique_ptr<aggregation::ServerOptimizer> server_optimizer_;
  std::vector<std::unique_ptr<client::LocalTrainer>> trainers_;  // one per worker
  std::unique_ptr<WorkerPool> pool_;
  double last_commit_seconds_ = 0.0;
  std::optional<std::chrono::steady_clock::time_point> first_commit_start_;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_FEDBUFF_SIMULATOR_H_
