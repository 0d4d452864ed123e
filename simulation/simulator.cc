#include "simulation/simulator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/fedavg.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/in_memory_round.h"
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
  if (!(options.dropout.rate >= 0.0 && options.dropout.rate < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout rate must be in [0, 1), got ", options.dropout.rate));
  }

  std::unique_ptr<Simulator> sim(new Simulator(options, dataset));
  if (options.secure_aggregation.variant.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(sim->encoding_, sim->ChooseSecureAggregationEncoding());
  }
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

absl::StatusOr<secagg::FixedPointEncoding> Simulator::ChooseSecureAggregationEncoding() const {
  const SecureAggregationOptions& secure = options_.secure_aggregation;
  if (!(options_.plan.clip_norm > 0)) {
    return absl::InvalidArgumentError(
        "secure aggregation needs a clip norm (--clip-norm > 0): the fixed-point range of the "
        "masked values is derived from it");
  }
  int64_t max_weight = 0;
  if (options_.max_client_weight.has_value()) {
    max_weight = static_cast<int64_t>(std::ceil(*options_.max_client_weight));
  } else {
    for (int64_t c = 0; c < dataset_->num_clients(); ++c) {
      max_weight = std::max(max_weight, dataset_->NumTrainExamples(c));
    }
  }
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::FixedPointEncoding encoding,
      secagg::ChooseEncoding(secure.modulus_bits, options_.clients_per_round,
                             options_.plan.clip_norm, std::max<int64_t>(max_weight, 1)));
  // Refuse now, not in round 1, if the protocol cannot run with this many clients.
  FEDKIT_RETURN_IF_ERROR(
      secagg::MakeProtocolConfig(*secure.variant, static_cast<int>(options_.clients_per_round),
                                 static_cast<int64_t>(global_.size()) + 1, secure.modulus_bits,
                                 secure.design_dropout_rate, secure.corrupt_fraction)
          .status());
  return encoding;
}

std::vector<std::optional<secagg::ClientPhase>> Simulator::DropoutSchedule(
    int round, const std::vector<int64_t>& participants) const {
  const int64_t n = static_cast<int64_t>(participants.size());
  std::vector<std::optional<secagg::ClientPhase>> drop_at(n);
  for (int64_t i = 0; i < n; ++i) {
    auto forced = options_.dropout.forced.find(participants[i]);
    if (forced != options_.dropout.forced.end()) drop_at[i] = forced->second;
  }
  if (options_.dropout.rate <= 0.0) return drop_at;
  // Own generator and arithmetic (not std:: distributions) so schedules match across platforms.
  std::mt19937_64 rng(DeriveSeed(options_.seed, {static_cast<uint64_t>(round), 0x64726f70}));
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const uint64_t phase_draw = rng();
    if (u >= options_.dropout.rate || drop_at[i].has_value()) continue;
    drop_at[i] = options_.dropout.phase.has_value()
                     ? *options_.dropout.phase
                     : static_cast<secagg::ClientPhase>(phase_draw % secagg::kNumClientPhases);
  }
  return drop_at;
}

absl::StatusOr<RoundResult> Simulator::RunRound() {
  const auto start = std::chrono::steady_clock::now();
  const int round = rounds_done_ + 1;
  FEDKIT_ASSIGN_OR_RETURN(std::vector<int64_t> participants,
                          server::SampleClients(dataset_->num_clients(), options_.clients_per_round,
                                                server::SamplingSeed(options_.seed, round)));
  const std::vector<std::optional<secagg::ClientPhase>> drop_at =
      DropoutSchedule(round, participants);

  RoundResult result;
  result.round = round;
  result.participants = static_cast<int64_t>(participants.size());
  for (const auto& d : drop_at) result.dropped += d.has_value() ? 1 : 0;
  std::optional<std::vector<float>> average;
  int64_t trained = 0;
  double weighted_loss = 0.0;
  double norm_sum = 0.0;
  auto train = [&](int worker, int64_t i) -> absl::StatusOr<client::ClientUpdate> {
    const int64_t client = participants[i];
    const data::Examples examples = dataset_->TrainExamples(client);
    absl::StatusOr<client::ClientUpdate> update = trainers_[worker]->Train(
        global_, examples, options_.plan, ClientTrainingSeed(options_.seed, round, client));
    if (!update.ok()) {
      return absl::Status(update.status().code(),
                          absl::StrCat("client ", client, ": ", update.status().message()));
    }
    return update;
  };

  if (encoding_.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(
        average, RunSecureAggregation(round, participants, drop_at, train, result, trained,
                                      weighted_loss, norm_sum));
  } else {
    // Clients that go silent before their upload contribute nothing (and need not train).
    std::vector<int64_t> contributors;
    for (int64_t i = 0; i < static_cast<int64_t>(participants.size()); ++i) {
      if (!drop_at[i].has_value() || *drop_at[i] == secagg::ClientPhase::kUnmask) {
        contributors.push_back(i);
      }
    }
    aggregation::WeightedFedAvg fedavg(static_cast<int64_t>(global_.size()),
                                       options_.max_client_weight);
    // Each worker trains whole clients; the window keeps a few finished deltas per worker waiting
    // for their turn in the fixed summation order.
    const int64_t window = 4 * static_cast<int64_t>(options_.threads);
    FEDKIT_RETURN_IF_ERROR(RunOrdered<client::ClientUpdate>(
        *pool_, static_cast<int64_t>(contributors.size()), window,
        [&](int worker, int64_t k) { return train(worker, contributors[k]); },
        [&](int64_t, client::ClientUpdate update) -> absl::Status {
          FEDKIT_RETURN_IF_ERROR(fedavg.Add(update.delta, update.num_examples));
          result.examples += update.num_examples;
          weighted_loss += update.train_loss * static_cast<double>(update.num_examples);
          norm_sum += update.delta_norm;
          ++trained;
          return absl::OkStatus();
        }));
    if (contributors.empty()) {
      result.aborted = "every sampled client dropped out";
    } else {
      FEDKIT_ASSIGN_OR_RETURN(average, fedavg.Average());
    }
  }
  if (average.has_value()) {
    FEDKIT_RETURN_IF_ERROR(server_optimizer_->Apply(*average, absl::MakeSpan(global_)));
  }
  rounds_done_ = round;

  result.train_loss =
      result.examples > 0 ? weighted_loss / static_cast<double>(result.examples) : 0.0;
  result.mean_delta_norm = trained > 0 ? norm_sum / static_cast<double>(trained) : 0.0;
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

absl::StatusOr<std::optional<std::vector<float>>> Simulator::RunSecureAggregation(
    int round, const std::vector<int64_t>& participants,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum) {
  const SecureAggregationOptions& secure = options_.secure_aggregation;
  const int n = static_cast<int>(participants.size());
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::ProtocolConfig config,
      secagg::MakeProtocolConfig(*secure.variant, n, static_cast<int64_t>(global_.size()) + 1,
                                 secure.modulus_bits, secure.design_dropout_rate,
                                 secure.corrupt_fraction));
  // The graph seed is public randomness; deriving it from the run seed makes a simulation
  // (including which rounds abort under heavy dropout) reproducible. Session ids stay random:
  // they change the masks, never the sum.
  config.graph_seed = DeriveSeed(options_.seed, {static_cast<uint64_t>(round), 0x6772617068});
  // Per-client training outcomes, written by the worker that trained the client.
  struct Trained {
    bool done = false;
    int64_t examples = 0;
    double loss = 0.0;
    double norm = 0.0;
  };
  std::vector<Trained> outcomes(n);
  auto input = [&](int worker, int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
    FEDKIT_ASSIGN_OR_RETURN(client::ClientUpdate update, train(worker, i));
    outcomes[i] = Trained{true, update.num_examples, update.train_loss, update.delta_norm};
    const int64_t weight = std::min(update.num_examples, encoding_->max_weight);
    return secagg::EncodeWeightedUpdate(
        *encoding_, update.delta, weight,
        secagg::StochasticRoundingSeed(options_.seed, round, participants[i]));
  };
  secagg::ParallelFor parallel = [this](int64_t count, const secagg::ParallelBody& body) {
    std::atomic<int64_t> next{0};
    pool_->RunOnEachWorker([&](int worker) {
      for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(worker, i);
    });
  };
  FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                          secagg::RunInMemoryRound(config, input, drop_at, parallel));
  for (const Trained& t : outcomes) {
    if (!t.done) continue;
    ++trained;
    result.examples += t.examples;
    weighted_loss += t.loss * static_cast<double>(t.examples);
    norm_sum += t.norm;
  }
  SecureAggregationRoundStats stats;
  stats.survivors = static_cast<int64_t>(outcome.included.size());
  stats.degree = config.degree;
  stats.threshold = config.threshold;
  double client_seconds = 0.0;
  for (double s : outcome.stats.client_seconds_total) client_seconds += s;
  stats.client_seconds_mean = client_seconds / n;
  stats.server_seconds = outcome.stats.server_seconds;
  stats.client_bytes_sent_mean = outcome.stats.client_bytes_sent_mean;
  result.secure_aggregation = stats;
  if (!outcome.status.ok()) {
    result.aborted = std::string(outcome.status.message());
    return std::optional<std::vector<float>>();
  }
  FEDKIT_ASSIGN_OR_RETURN(secagg::DecodedSum decoded, secagg::DecodeSum(*encoding_, outcome.sum));
  if (decoded.total_weight <= 0) {
    result.aborted = "secure aggregation summed zero weight";
    return std::optional<std::vector<float>>();
  }
  return std::optional<std::vector<float>>(decoded.Average());
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
