#include "simulation/simulator.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/fedavg.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "server/client_sampler.h"

namespace fedkit::simulation {
namespace {

// Evaluation is cut into chunks of this many examples, spread over the workers.
constexpr int64_t kEvalChunk = 1000;

}  // namespace

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Create(
    const SimulationOptions& options, const data::FederatedDataset* dataset) {
  if (dataset == nullptr) return absl::InvalidArgumentError("no dataset");
  if (options.clients_per_round < 1 || options.clients_per_round > dataset->num_clients()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clients per round (", options.clients_per_round,
        ") must be between 1 and the number of clients (", dataset->num_clients(), ")"));
  }
  if (options.rounds < 1) return absl::InvalidArgumentError("rounds must be >= 1");
  if (options.threads < 1) return absl::InvalidArgumentError("threads must be >= 1");
  if (options.eval_every < 0) return absl::InvalidArgumentError("eval_every must be >= 0");
  if (options.max_client_weight && !(*options.max_client_weight > 0)) {
    return absl::InvalidArgumentError("max client weight must be > 0");
  }
  FEDKIT_RETURN_IF_ERROR(client::ValidateTrainingPlan(options.plan));

  std::unique_ptr<Simulator> sim(new Simulator(options, dataset));
  const uint64_t init_seed = server::InitialModelSeed(options.seed);
  FEDKIT_ASSIGN_OR_RETURN(auto global_model,
                          models::CreateModel(options.model, dataset->info(), init_seed));
  sim->global_ = models::FlattenParameters(*global_model);
  FEDKIT_ASSIGN_OR_RETURN(sim->server_optimizer_,
                          aggregation::MakeServerOptimizer(
                              options.server_optimizer, static_cast<int64_t>(sim->global_.size())));
  for (int w = 0; w < options.threads; ++w) {
    FEDKIT_ASSIGN_OR_RETURN(auto model,
                            models::CreateModel(options.model, dataset->info(), init_seed));
    sim->trainers_.push_back(std::make_unique<client::LocalTrainer>(std::move(model)));
  }
  sim->pool_ = std::make_unique<WorkerPool>(options.threads,
                                            [](int) { models::UseSingleThreadedCompute(); });
  return sim;
}

Simulator::Simulator(const SimulationOptions& options, const data::FederatedDataset* dataset)
    : options_(options), dataset_(dataset) {}

Simulator::~Simulator() = default;

absl::StatusOr<RoundResult> Simulator::RunRound() {
  const auto start = std::chrono::steady_clock::now();
  const int round = rounds_done_ + 1;
  FEDKIT_ASSIGN_OR_RETURN(
      std::vector<int64_t> participants,
      server::SampleClients(dataset_->num_clients(), options_.clients_per_round,
                            server::SamplingSeed(options_.seed, round)));

  aggregation::WeightedFedAvg fedavg(static_cast<int64_t>(global_.size()),
                                     options_.max_client_weight);
  RoundResult result;
  result.round = round;
  double weighted_loss = 0.0;
  double norm_sum = 0.0;

  // Each worker trains whole clients; the window keeps a few finished deltas per worker waiting for
  // their turn in the fixed summation order.
  const int64_t window = 4 * static_cast<int64_t>(options_.threads);
  FEDKIT_RETURN_IF_ERROR(RunOrdered<client::ClientUpdate>(
      *pool_, static_cast<int64_t>(participants.size()), window,
      [&](int worker, int64_t i) -> absl::StatusOr<client::ClientUpdate> {
        const int64_t client = participants[i];
        const data::Examples examples = dataset_->TrainExamples(client);
        absl::StatusOr<client::ClientUpdate> update = trainers_[worker]->Train(
            global_, examples, options_.plan, ClientTrainingSeed(options_.seed, round, client));
        if (!update.ok()) {
          return absl::Status(update.status().code(),
                              absl::StrCat("client ", client, ": ", update.status().message()));
        }
        return update;
      },
      [&](int64_t, client::ClientUpdate update) -> absl::Status {
        FEDKIT_RETURN_IF_ERROR(fedavg.Add(update.delta, update.num_examples));
        result.examples += update.num_examples;
        weighted_loss += update.train_loss * static_cast<double>(update.num_examples);
        norm_sum += update.delta_norm;
        return absl::OkStatus();
      }));

  FEDKIT_ASSIGN_OR_RETURN(std::vector<float> average, fedavg.Average());
  FEDKIT_RETURN_IF_ERROR(server_optimizer_->Apply(average, absl::MakeSpan(global_)));
  rounds_done_ = round;

  result.participants = static_cast<int64_t>(participants.size());
  result.train_loss = weighted_loss / static_cast<double>(result.examples);
  result.mean_delta_norm = norm_sum / static_cast<double>(participants.size());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const bool last = round == options_.rounds;
  if (last || (options_.eval_every > 0 && round % options_.eval_every == 0)) {
    const auto eval_start = std::chrono::steady_clock::now();
    FEDKIT_ASSIGN_OR_RETURN(result.eval, Evaluate());
    result.eval_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  }
  return result;
}

uint64_t Simulator::ClientTrainingSeed(uint64_t run_seed, int round, int64_t client) {
  return client::LocalTrainingSeed(run_seed, round, client);
}

absl::StatusOr<models::EvalSums> Simulator::Evaluate() {
  const data::Examples& eval = dataset_->EvalExamples();
  const int64_t chunks = (eval.size() + kEvalChunk - 1) / kEvalChunk;
  models::EvalSums total;
  FEDKIT_RETURN_IF_ERROR(RunOrdered<models::EvalSums>(
      *pool_, chunks, chunks,
      [&](int worker, int64_t chunk) -> absl::StatusOr<models::EvalSums> {
        models::Model& model = trainers_[worker]->model();
        FEDKIT_RETURN_IF_ERROR(models::AssignParameters(global_, model));
        return models::EvaluateRange(model, eval, chunk * kEvalChunk,
                                     std::min(eval.size(), (chunk + 1) * kEvalChunk));
      },
      [&](int64_t, models::EvalSums sums) -> absl::Status {
        total.Add(sums);
        return absl::OkStatus();
      }));
  return total;
}

absl::StatusOr<std::shared_ptr<models::Model>> Simulator::GlobalModel() const {
  FEDKIT_ASSIGN_OR_RETURN(auto model, models::CreateModel(options_.model, dataset_->info(), 0));
  FEDKIT_RETURN_IF_ERROR(models::AssignParameters(global_, *model));
  return model;
}

}  // namespace fedkit::simulation
