#include "simulation/client_evaluation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/sampling.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "models/evaluate.h"
#include "models/flat_params.h"

namespace fedkit::simulation {
namespace {

constexpr uint64_t kChosenClientsStream = 0x636c6576;  // "clev"
constexpr uint64_t kFinetuneStream = 0x66696e65;       // "fine"

// v[ceil(p / 100 * n)] of the ascending values (1-based), n >= 1. Computed in integers so that,
// e.g., p = 10 and n = 30 give exactly the 3rd value.
double NearestRank(const std::vector<double>& sorted, int p) {
  const int64_t n = static_cast<int64_t>(sorted.size());
  const int64_t rank = std::max<int64_t>(1, (p * n + 99) / 100);
  return sorted[static_cast<size_t>(rank - 1)];
}

// One client's outcome on a worker.
struct ClientOutcome {
  bool evaluated = false;  // false: the client holds no example out
  double accuracy = 0.0;
  double finetuned_accuracy = 0.0;
};

absl::Status NameClient(const absl::Status& status, int64_t client, const char* what) {
  return absl::Status(status.code(),
                      absl::StrCat("client ", client, " (", what, "): ", status.message()));
}

}  // namespace

absl::StatusOr<ClientAccuracySummary> SummarizeClientAccuracies(absl::Span<const double> values) {
  if (values.empty()) return absl::InvalidArgumentError("no client accuracies to summarize");
  std::vector<double> sorted(values.begin(), values.end());
  for (double v : sorted) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("client accuracy ", v, " is not finite"));
    }
  }
  std::sort(sorted.begin(), sorted.end());
  const int64_t n = static_cast<int64_t>(sorted.size());
  ClientAccuracySummary s;
  s.clients = n;
  double sum = 0.0;
  for (double v : sorted) sum += v;  // ascending order: the same sum whatever the input order
  s.mean = sum / static_cast<double>(n);
  s.p10 = NearestRank(sorted, 10);
  s.p50 = NearestRank(sorted, 50);
  s.p90 = NearestRank(sorted, 90);
  const int64_t decile = (n + 9) / 10;
  double worst = 0.0;
  for (int64_t i = 0; i < decile; ++i) worst += sorted[static_cast<size_t>(i)];
  s.worst10 = worst / static_cast<double>(decile);
  return s;
}

absl::StatusOr<std::unique_ptr<ClientEvaluator>> ClientEvaluator::Create(
    const ClientEvaluationOptions& options, const data::FederatedDataset* base,
    const client::TrainingPlan& plan, uint64_t seed) {
  if (base == nullptr) return absl::InvalidArgumentError("no dataset");
  if (!(options.local_eval_fraction > 0.0 && options.local_eval_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("`local_eval_fraction` must be in (0, 1), got ", options.local_eval_fraction));
  }
  if (base->info().num_classes < 2) {
    return absl::InvalidArgumentError(
        "per-client evaluation reports accuracies: it needs a classification dataset");
  }
  const int64_t population = base->num_clients();
  if (options.local_eval_clients < 0 || options.local_eval_clients > population) {
    return absl::InvalidArgumentError(
        absl::StrCat("`local_eval_clients` must be between 0 (all) and the population (",
                     population, "), got ", options.local_eval_clients));
  }
  if (options.finetune_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("`finetune_steps` must be >= 0, got ", options.finetune_steps));
  }
  std::unique_ptr<ClientEvaluator> evaluator(new ClientEvaluator(options, plan, seed));
  data::LocalEvalSplitOptions split;
  split.fraction = options.local_eval_fraction;
  split.seed = seed;
  FEDKIT_ASSIGN_OR_RETURN(evaluator->dataset_, data::LocalEvalDataset::Create(base, split));
  if (options.local_eval_clients == 0) {
    evaluator->chosen_.resize(static_cast<size_t>(population));
    for (int64_t c = 0; c < population; ++c) evaluator->chosen_[static_cast<size_t>(c)] = c;
  } else {
    evaluator->chosen_ = SampleIndices(population, options.local_eval_clients,
                                       DeriveSeed(seed, {kChosenClientsStream}));
  }
  return evaluator;
}

uint64_t ClientEvaluator::FinetuneSeed(uint64_t run_seed, int round, int64_t client) {
  return DeriveSeed(run_seed,
                    {kFinetuneStream, static_cast<uint64_t>(round), static_cast<uint64_t>(client)});
}

absl::StatusOr<ClientEvaluation> ClientEvaluator::Run(
    absl::Span<const float> global, int round, WorkerPool& pool,
    absl::Span<const std::unique_ptr<client::LocalTrainer>> trainers) const {
  if (trainers.size() < static_cast<size_t>(pool.size())) {
    return absl::InvalidArgumentError(absl::StrCat("ClientEvaluator::Run: ", trainers.size(),
                                                   " trainers for ", pool.size(), " workers"));
  }
  const int64_t steps = options_.finetune_steps;
  auto produce = [&](int worker, int64_t i) -> absl::StatusOr<ClientOutcome> {
    const int64_t client = chosen_[static_cast<size_t>(i)];
    ClientOutcome outcome;
    const data::Examples held_out = dataset_->ClientTestExamples(client);
    if (held_out.size() == 0) return outcome;
    client::LocalTrainer& trainer = *trainers[static_cast<size_t>(worker)];
    models::Model& model = trainer.model();
    if (absl::Status s = models::AssignParameters(global, model); !s.ok()) {
      return NameClient(s, client, "loading the global model");
    }
    absl::StatusOr<models::EvalSums> sums =
        models::EvaluateRange(model, held_out, 0, held_out.size());
    if (!sums.ok()) return NameClient(sums.status(), client, "evaluating");
    outcome.evaluated = true;
    outcome.accuracy = sums->accuracy();
    if (steps == 0) return outcome;

    const data::Examples train = dataset_->TrainExamples(client);
    if (train.size() == 0) {
      // Nothing to fine-tune on: the global model is the client's model.
      outcome.finetuned_accuracy = outcome.accuracy;
      return outcome;
    }
    client::TrainingPlan plan;
    plan.batch_size = plan_.batch_size;
    plan.learning_rate = plan_.learning_rate;
    plan.momentum = plan_.momentum;
    plan.max_steps = steps;
    const int64_t steps_per_epoch = (train.size() + plan.batch_size - 1) / plan.batch_size;
    plan.local_epochs = static_cast<int>((steps + steps_per_epoch - 1) / steps_per_epoch);
    absl::StatusOr<client::ClientUpdate> update =
        trainer.Train(global, train, plan, FinetuneSeed(seed_, round, client));
    if (!update.ok()) return NameClient(update.status(), client, "fine-tuning");
    std::vector<float> tuned(global.begin(), global.end());
    for (size_t j = 0; j < tuned.size(); ++j) tuned[j] += update->delta[j];
    if (absl::Status s = models::AssignParameters(tuned, model); !s.ok()) {
      return NameClient(s, client, "loading the fine-tuned model");
    }
    sums = models::EvaluateRange(model, held_out, 0, held_out.size());
    if (!sums.ok()) return NameClient(sums.status(), client, "evaluating after fine-tuning");
    outcome.finetuned_accuracy = sums->accuracy();
    return outcome;
  };

  ClientEvaluation result;
  const int64_t tasks = static_cast<int64_t>(chosen_.size());
  FEDKIT_RETURN_IF_ERROR(RunOrdered<ClientOutcome>(
      pool, tasks, 4 * static_cast<int64_t>(pool.size()), produce,
      [&](int64_t i, ClientOutcome outcome) -> absl::Status {
        if (!outcome.evaluated) return absl::OkStatus();
        result.clients.push_back(chosen_[static_cast<size_t>(i)]);
        result.accuracies.push_back(outcome.accuracy);
        if (steps > 0) result.finetuned_accuracies.push_back(outcome.finetuned_accuracy);
        return absl::OkStatus();
      }));
  if (result.clients.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("per-client evaluation: none of the ", tasks,
                     " chosen clients holds an example out (each needs two or more examples)"));
  }
  FEDKIT_ASSIGN_OR_RETURN(result.summary, SummarizeClientAccuracies(result.accuracies));
  if (steps > 0) {
    FEDKIT_ASSIGN_OR_RETURN(result.finetuned_summary,
                            SummarizeClientAccuracies(result.finetuned_accuracies));
  }
  return result;
}

}  // namespace fedkit::simulation
