// Federated training of many virtual clients in one process.
#ifndef FEDKIT_SIMULATION_SIMULATOR_H_
#define FEDKIT_SIMULATION_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/server_optimizer.h"
#include "client/local_trainer.h"
#include "data/federated_dataset.h"
#include "models/evaluate.h"
#include "models/model.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/in_memory_round.h"
#include "privacy/secagg/protocol.h"
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

// Secure aggregation in the simulator: the same client and server state machines as the
// coordinator and device library, with messages passed in memory.
struct SecureAggregationOptions {
  std::optional<secagg::Variant> variant;  // nullopt = plain FedAvg
  int modulus_bits = 32;
  // Design parameters of SecAgg+'s graph (Bell et al.): the dropout rate the round must survive
  // and the fraction of clients that may collude with the server.
  double design_dropout_rate = 0.1;
  double corrupt_fraction = 0.05;
};

// Injected client failures, to measure robustness: each sampled client independently goes silent
// with probability `rate`, in `phase` (nullopt = a phase drawn uniformly per client). Without
// secure aggregation only the upload matters: a client dropping before or at upload contributes
// nothing; one dropping at "unmask" already contributed.
struct DropoutOptions {
  double rate = 0.0;
  std::optional<secagg::ClientPhase> phase;
  // Fault injection by client index: these clients always go silent in the given phase when
  // sampled (e.g. to replay a networked run in which those devices were killed).
  std::map<int64_t, secagg::ClientPhase> forced;
};

struct SimulationOptions {
  std::string model = "mlp";
  int64_t clients_per_round = 10;
  int rounds = 10;
  client::TrainingPlan plan;
  aggregation::ServerOptimizerOptions server_optimizer;
  // Caps a client's FedAvg weight (its example count); nullopt = uncapped.
  std::optional<double> max_client_weight;
  uint64_t seed = 0;
  int threads = 1;
  // Evaluate the global model every this many rounds (and after the last); 0 = only after the last.
  int eval_every = 1;
  SecureAggregationOptions secure_aggregation;  // requires plan.clip_norm > 0
  DropoutOptions dropout;
};

// What secure aggregation cost in a round.
struct SecureAggregationRoundStats {
  int64_t survivors = 0;  // clients whose input is in the sum (U3)
  int degree = 0;         // neighbours per client
  int threshold = 0;
  double client_seconds_mean = 0.0;  // per client, all phases, excluding training
  double server_seconds = 0.0;
  double client_bytes_sent_mean = 0.0;
};

struct RoundResult {
  int round = 0;                         // 1-based
  int64_t participants = 0;              // sampled clients
  int64_t dropped = 0;                   // of which went silent (injected dropouts)
  int64_t examples = 0;                  // examples trained on this round
  double train_loss = 0.0;               // example-weighted mean of the clients' training losses
  double mean_delta_norm = 0.0;          // mean L2 norm of the deltas before clipping
  double seconds = 0.0;                  // wall time of training + aggregation (not evaluation)
  std::optional<models::EvalSums> eval;  // when the round was evaluated
  double eval_seconds = 0.0;
  // Secure aggregation: cost, or why the round aborted (then the global model is unchanged).
  std::optional<SecureAggregationRoundStats> secure_aggregation;
  std::string aborted;  // empty unless the round aborted
};

// Runs rounds of: sample clients uniformly (server::SampleClients), train each with a LocalTrainer
// on a worker, average the deltas by weighted FedAvg in sampled order, apply the server optimizer.
// With secure aggregation, each client's clipped delta is encoded in fixed point (weight times
// delta, plus the weight) and the round runs the SecAgg/SecAgg+ protocol in memory; the server
// optimizer gets the decoded weighted average of the survivors.
// A virtual client is only its index into the dataset; memory grows with --threads, not with the
// population. Results are identical for any number of threads: client seeds derive from
// (seed, round, client) and deltas are summed in a fixed order.
class Simulator {
 public:
  // Validates options against the dataset (e.g. clients_per_round <= population). The dataset must
  // outlive the simulator.
  static absl::StatusOr<std::unique_ptr<Simulator>> Create(const SimulationOptions& options,
                                                           const data::FederatedDataset* dataset);
  ~Simulator();

  // Runs the next round. Evaluates when eval_every says so or when it is the last round.
  absl::StatusOr<RoundResult> RunRound();

  // Evaluates the current global model on the dataset's eval set, split across the workers.
  absl::StatusOr<models::EvalSums> Evaluate();

  // The seed a client's local training uses in a round (exposed so tests can replay a client).
  static uint64_t ClientTrainingSeed(uint64_t run_seed, int round, int64_t client);

  int rounds_done() const { return rounds_done_; }
  const std::vector<float>& global_parameters() const { return global_; }
  // A module holding the current global parameters (e.g. to save with models::SaveModule).
  absl::StatusOr<std::shared_ptr<models::Model>> GlobalModel() const;

 private:
  Simulator(const SimulationOptions& options, const data::FederatedDataset* dataset);

  SimulationOptions options_;
  const data::FederatedDataset* dataset_;
  std::vector<float> global_;
  std::unique_ptr<aggregation::ServerOptimizer> server_optimizer_;
  std::vector<std::unique_ptr<client::LocalTrainer>> trainers_;  // one per worker
  std::unique_ptr<WorkerPool> pool_;
  int rounds_done_ = 0;
  std::optional<secagg::FixedPointEncoding> encoding_;  // with secure aggregation

  using TrainFunction =
      std::function<absl::StatusOr<client::ClientUpdate>(int worker, int64_t participant)>;
  absl::StatusOr<secagg::FixedPointEncoding> ChooseSecureAggregationEncoding() const;
  // The injected dropout schedule of a round (one entry per sampled client).
  std::vector<std::optional<secagg::ClientPhase>> DropoutSchedule(
      int round, const std::vector<int64_t>& participants) const;
  // Trains and aggregates the round's clients under secure aggregation. Returns the survivors'
  // weighted average, or nullopt (with result.aborted set) when the protocol aborted.
  absl::StatusOr<std::optional<std::vector<float>>> RunSecureAggregation(
      int round, const std::vector<int64_t>& participants,
      const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
      RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum);
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_SIMULATOR_H_
