// Federated training of many virtual clients in one process.
#ifndef FEDKIT_SIMULATION_SIMULATOR_H_
#define FEDKIT_SIMULATION_SIMULATOR_H_

#include <cstdint>
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
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

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
};

struct RoundResult {
  int round = 0;  // 1-based
  int64_t participants = 0;
  int64_t examples = 0;                  // examples trained on this round
  double train_loss = 0.0;               // example-weighted mean of the clients' training losses
  double mean_delta_norm = 0.0;          // mean L2 norm of the deltas before clipping
  double seconds = 0.0;                  // wall time of training + aggregation (not evaluation)
  std::optional<models::EvalSums> eval;  // when the round was evaluated
  double eval_seconds = 0.0;
};

// Runs rounds of: sample clients uniformly (server::SampleClients), train each with a LocalTrainer
// on a worker, average the deltas by weighted FedAvg in sampled order, apply the server optimizer.
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
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_SIMULATOR_H_
