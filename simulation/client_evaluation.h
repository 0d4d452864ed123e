// Per-client evaluation in the simulator: the global model's accuracy on each client's own held-out
// examples (data/local_eval_split.h), and optionally after a few steps of local fine-tuning from
// it (personalization), summarized by the spread over clients rather than one global number.
#ifndef FEDKIT_SIMULATION_CLIENT_EVALUATION_H_
#define FEDKIT_SIMULATION_CLIENT_EVALUATION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/local_trainer.h"
#include "data/federated_dataset.h"
#include "data/local_eval_split.h"
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

// The spread of per-client accuracies, each client counting once (not weighted by its examples).
// Percentiles are nearest-rank: with the n values sorted ascending v[1..n], the p-th percentile is
// v[ceil(p / 100 * n)] (p10 of 100 clients is the 10th lowest; p50 of 5 is the 3rd). worst10 is
// the mean of the ceil(n / 10) lowest values (the worst decile; the lowest value when n <= 10).
struct ClientAccuracySummary {
  int64_t clients = 0;  // n
  double mean = 0.0;
  double p10 = 0.0;
  double p50 = 0.0;
  double p90 = 0.0;
  double worst10 = 0.0;
};

// INVALID_ARGUMENT for no values or a value that is not finite. A pure function.
absl::StatusOr<ClientAccuracySummary> SummarizeClientAccuracies(absl::Span<const double> values);

// What to evaluate per client (SimulationOptions::client_evaluation).
struct ClientEvaluationOptions {
  // The held-out share of each client's examples, in (0, 1), when the dataset has no per-client
  // test examples of its own (data/local_eval_split.h); the clients then train on the rest only.
  double local_eval_fraction = 0.2;
  // Evaluate this many clients, drawn once per run from the seed (the same clients at every
  // evaluated round); 0 = the whole population (its cost grows with the population).
  int64_t local_eval_clients = 0;
  // > 0: also each client's accuracy after this many minibatch steps of plain local SGD (the
  // plan's learning rate, batch size and momentum; no proximal term, no clipping) from the global
  // model on its training examples (as many epochs as the steps need).
  int64_t finetune_steps = 0;
};

// One evaluation of the population.
struct ClientEvaluation {
  // The evaluated clients (dataset indices, ascending): the chosen ones with at least one held-out
  // example (a client with fewer than two examples holds none out when the data is split).
  std::vector<int64_t> clients;
  std::vector<double> accuracies;  // accuracies[i]: clients[i]'s, on its held-out examples
  ClientAccuracySummary summary;   // of accuracies
  // With finetune_steps > 0: clients[i]'s accuracy after fine-tuning, and their summary.
  std::vector<double> finetuned_accuracies;
  std::optional<ClientAccuracySummary> finetuned_summary;
};

// Evaluates the global model on each chosen client's held-out examples on a worker pool. Owns the
// split view of the dataset the clients must train on (dataset()); borrows the base dataset.
class ClientEvaluator {
 public:
  // INVALID_ARGUMENT naming the field: `local_eval_fraction` outside (0, 1), `local_eval_clients`
  // negative or above the population, `finetune_steps` negative. `base` must outlive the
  // evaluator; `plan` and `seed` are the run's.
  static absl::StatusOr<std::unique_ptr<ClientEvaluator>> Create(
      const ClientEvaluationOptions& options, const data::FederatedDataset* base,
      const client::TrainingPlan& plan, uint64_t seed);

  // What the clients train on: the base dataset without each client's held-out examples.
  const data::FederatedDataset& dataset() const { return *dataset_; }
  // The chosen clients (ascending), whether or not they hold examples out.
  const std::vector<int64_t>& chosen() const { return chosen_; }

  // Evaluates `global` (the model's flat parameters) for every chosen client, spread over `pool`:
  // worker w uses trainers[w] (whose model parameters it overwrites; trainers.size() >=
  // pool.size()). `round` seeds the fine-tuning. Deterministic in (global, round, the options,
  // the seed) for any number of workers. FAILED_PRECONDITION when no chosen client holds an
  // example out; evaluation and training errors name the client. One caller at a time (the pool
  // is not reentrant).
  absl::StatusOr<ClientEvaluation> Run(
      absl::Span<const float> global, int round, WorkerPool& pool,
      absl::Span<const std::unique_ptr<client::LocalTrainer>> trainers) const;

  // The minibatch shuffling seed of a client's fine-tuning in a round (unrelated to its training
  // seed in that round).
  static uint64_t FinetuneSeed(uint64_t run_seed, int round, int64_t client);

 private:
  ClientEvaluator(const ClientEvaluationOptions& options, const client::TrainingPlan& plan,
                  uint64_t seed)
      : options_(options), plan_(plan), seed_(seed) {}

  ClientEvaluationOptions options_;
  client::TrainingPlan plan_;
  uint64_t seed_;
  std::unique_ptr<data::LocalEvalDataset> dataset_;
  std::vector<int64_t> chosen_;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_CLIENT_EVALUATION_H_
