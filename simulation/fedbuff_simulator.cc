#include "simulation/fedbuff_simulator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/aggregator.h"
#include "core/status_macros.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/in_memory_round.h"
#include "server/client_sampler.h"
#include "simulation/algorithm.h"
#include "simulation/pool_evaluation.h"

namespace fedkit::simulation {
namespace {

// What FedBuff does not combine with yet: the first such field that is set, by its name.
absl::Status CheckSupported(const SimulationOptions& options) {
  const char* field = nullptr;
  if (options.dp.mode != privacy::DpMode::kNone) {
    field = "mode";  // DP's
  } else if (options.plan.compression.method != compression::CompressionMethod::kNone) {
    field = "plan.compression";
  } else if (options.download_encoding != compression::DownloadEncoding::kFloat32) {
    field = "download_encoding";
  } else if (options.aggregator.kind != aggregation::AggregatorKind::kMean) {
    field = "aggregator";
  } else if (options.attack.kind != AttackKind::kNone) {
    field = "attack";
  } else if (options.dropout.rate > 0 || options.dropout.phase.has_value() ||
             !options.dropout.forced.empty()) {
    field = "dropout";
  } else if (!options.replay.empty()) {
    field = "replay";
  } else if (!options.algorithm.control_variates_dir.empty()) {
    field = "control_variates_dir";
  } else if (!options.client_ids.empty()) {
    field = "client_ids";
  } else if (options.system.deadline_seconds.has_value()) {
    field = "deadline_seconds";
  } else if (options.system.over_select > 0 && !options.secure_aggregation.has_value()) {
    field = "over_select";  // (under secure aggregation it over-selects each cohort)
  } else if (options.client_batching != 0) {
    field = "client_batching";
  }
  if (field == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("`", field,
                   "` is not supported with `algorithm` fedbuff (plain or securely aggregated "
                   "updates only)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<FedBuffSimulator>> FedBuffSimulator::Create(
    const SimulationOptions& options, const FedBuffOptions& fedbuff,
    const data::FederatedDataset* dataset) {
  if (dataset == nullptr) return absl::InvalidArgumentError("no dataset");
  if (options.algorithm.algorithm != Algorithm::kFedBuff) {
    return absl::InvalidArgumentError(
        absl::StrCat("FedBuffSimulator runs `algorithm` fedbuff, not ",
                     AlgorithmName(options.algorithm.algorithm)));
  }
  FEDKIT_RETURN_IF_ERROR(CheckSupported(options));
  FEDKIT_RETURN_IF_ERROR(ValidateRunOptions(options));
  if (!(fedbuff.staleness.exponent >= 0 && std::isfinite(fedbuff.staleness.exponent))) {
    return absl::InvalidArgumentError("the staleness exponent must be finite and >= 0");
  }

  std::unique_ptr<ClientEvaluator> client_evaluator;
  if (options.client_evaluation.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(
        client_evaluator,
        ClientEvaluator::Create(*options.client_evaluation, dataset, options.plan, options.seed));
    dataset = &client_evaluator->dataset();  // the clients train on the rest of their examples
  }
  FEDKIT_ASSIGN_OR_RETURN(const std::optional<DeviceSpeeds> speeds, MakeDeviceSpeeds(options));
  const int epochs = options.plan.local_epochs;
  AsyncSchedule::Duration duration = [speeds, dataset, epochs](int64_t client) {
    return speeds.has_value()
               ? speeds->RoundSeconds(client, dataset->NumTrainExamples(client), epochs)
               : 0.0;
  };
  const bool secure = options.secure_aggregation.has_value();
  if (secure && !(options.plan.clip_norm > 0)) {
    return absl::InvalidArgumentError(
        "secure aggregation needs a clip norm (--clip-norm > 0): the fixed-point range of the "
        "masked values is derived from it");
  }
  // Under secure aggregation: cohorts of K' = ceil(K (1 + over_select)).
  const int64_t cohort_size =
      secure ? server::OverSelectedTarget(fedbuff.buffer_size, options.system.over_select) : 0;
  FEDKIT_ASSIGN_OR_RETURN(AsyncSchedule schedule,
                          AsyncSchedule::Create({.population = dataset->num_clients(),
                                                 .concurrency = fedbuff.concurrency,
                                                 .buffer_size = fedbuff.buffer_size,
                                                 .seed = options.seed,
                                                 .cohorts = secure,
                                                 .cohort_size = cohort_size},
                                                std::move(duration)));

  std::unique_ptr<FedBuffSimulator> sim(new FedBuffSimulator(
      options, fedbuff, dataset, std::move(client_evaluator), std::move(schedule)));
  // The same initial model as a synchronous run (and the coordinator) with this seed.
  const uint64_t init_seed = server::InitialModelSeed(options.seed);
  FEDKIT_ASSIGN_OR_RETURN(auto global_model,
                          models::CreateModel(options.model, dataset->info(), init_seed));
  sim->global_ = models::FlattenParameters(*global_model);
  sim->versions_[0] = sim->global_;
  if (secure) {
    // Sized, as the coordinator sizes it, for a cohort of K'.
    FEDKIT_ASSIGN_OR_RETURN(sim->encoding_,
                            secagg::ChooseEncoding(options.secure_aggregation->modulus_bits,
                                                   cohort_size, options.plan.clip_norm,
                                                   SecureAggregationMaxWeight(options, *dataset)));
    FEDKIT_RETURN_IF_ERROR(SimulatedProtocolConfig(options, 0, cohort_size,
                                                   static_cast<int64_t>(sim->global_.size()) + 1)
                               .status());
  }
  FEDKIT_ASSIGN_OR_RETURN(sim->server_optimizer_,
                          aggregation::MakeServerOptimizer(
                              options.server_optimizer, static_cast<int64_t>(sim->global_.size())));
  FEDKIT_ASSIGN_OR_RETURN(sim->trainers_, MakeWorkerTrainers(options.model, dataset->info(),
                                                             init_seed, options.threads));
  sim->pool_ = std::make_unique<WorkerPool>(options.threads,
                                            [](int) { models::UseSingleThreadedCompute(); });
  return sim;
}

FedBuffSimulator::FedBuffSimulator(const SimulationOptions& options, const FedBuffOptions& fedbuff,
                                   const data::FederatedDataset* dataset,
                                   std::unique_ptr<ClientEvaluator> client_evaluator,
                                   AsyncSchedule schedule)
    : options_(options),
      fedbuff_(fedbuff),
      dataset_(dataset),
      client_evaluator_(std::move(client_evaluator)),
      schedule_(std::move(schedule)) {}

absl::StatusOr<RoundResult> FedBuffSimulator::RunRound() {
  const auto start = std::chrono::steady_clock::now();
  if (!first_commit_start_.has_value()) first_commit_start_ = start;
  FEDKIT_ASSIGN_OR_RETURN(const BufferCommit commit, schedule_.Next());
  const int64_t k = static_cast<int64_t>(commit.arrivals.size());

  RoundResult result;
  result.round = static_cast<int>(commit.version);
  result.participants = k;
  result.virtual_seconds = commit.seconds - last_commit_seconds_;
  result.virtual_elapsed_seconds = commit.seconds;
  last_commit_seconds_ = commit.seconds;

  std::vector<float> average;
  if (encoding_.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(average, AggregateCohort(commit, result));
  } else {
    FEDKIT_ASSIGN_OR_RETURN(average, AggregateBuffer(commit, result));
  }
  if (result.aborted.empty()) {
    FEDKIT_RETURN_IF_ERROR(server_optimizer_->Apply(average, absl::MakeSpan(global_)));
  }

  // Keep the new version for the clients that download it; forget the ones nobody trains from.
  versions_[commit.version] = global_;
  versions_.erase(versions_.begin(), versions_.lower_bound(schedule_.OldestVersionInFlight()));

  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool last = result.round == options_.rounds;
  if (last || (options_.eval_every > 0 && result.round % options_.eval_every == 0)) {
    const auto eval_start = std::chrono::steady_clock::now();
    FEDKIT_ASSIGN_OR_RETURN(result.eval,
                            EvaluateOnPool(*pool_, trainers_, global_, dataset_->EvalExamples()));
    if (client_evaluator_ != nullptr) {
      FEDKIT_ASSIGN_OR_RETURN(result.client_eval,
                              client_evaluator_->Run(global_, result.round, *pool_, trainers_));
    }
    result.eval_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  }
  result.elapsed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - *first_commit_start_)
          .count();
  return result;
}

absl::StatusOr<client::ClientUpdate> FedBuffSimulator::Train(int worker,
                                                             const AsyncArrival& a) const {
  // Each dispatch has a seed of its own: a client sampled again trains on a new shuffle.
  absl::StatusOr<client::ClientUpdate> update = trainers_[worker]->Train(
      versions_.at(a.start_version), dataset_->TrainExamples(a.client), options_.plan,
      Simulator::ClientTrainingSeed(options_.seed, static_cast<int>(a.dispatch + 1), a.client));
  if (!update.ok()) {
    return absl::Status(update.status().code(),
                        absl::StrCat("client ", a.client, ": ", update.status().message()));
  }
  return update;
}

absl::StatusOr<std::vector<float>> FedBuffSimulator::AggregateCohort(const BufferCommit& commit,
                                                                     RoundResult& result) {
  // The members: the K that arrived, then those stopped (over-selection), who drop out at the
  // masked upload and are not trained.
  std::vector<AsyncArrival> members = commit.arrivals;
  members.insert(members.end(), commit.stopped.begin(), commit.stopped.end());
  const int64_t k = static_cast<int64_t>(commit.arrivals.size());
  const int64_t n = static_cast<int64_t>(members.size());
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::ProtocolConfig config,
      SimulatedProtocolConfig(options_, result.round, n, static_cast<int64_t>(global_.size()) + 1));
  std::vector<std::optional<secagg::ClientPhase>> drop_at(n);
  for (int64_t i = k; i < n; ++i) drop_at[i] = secagg::ClientPhase::kMaskedInput;
  result.participants = n;
  result.not_needed = n - k;
  auto train = [&](int worker, int64_t i) { return Train(worker, members[i]); };
  auto encode = [&](const client::ClientUpdate& update,
                    int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
    return secagg::EncodeWeightedUpdate(
        *encoding_, update.delta, std::min(update.num_examples, encoding_->max_weight),
        secagg::StochasticRoundingSeed(options_.seed, result.round, members[i].client));
  };
  int64_t trained = 0;
  double weighted_loss = 0.0, norm_sum = 0.0;
  FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                          RunSecureRoundOnPool(*pool_, config, drop_at, train, encode, result,
                                               trained, weighted_loss, norm_sum));
  result.train_loss =
      result.examples > 0 ? weighted_loss / static_cast<double>(result.examples) : 0.0;
  result.mean_delta_norm = norm_sum / static_cast<double>(k);
  // One cohort, one staleness: every member trained from the same version.
  const int64_t staleness = commit.arrivals.front().staleness;
  result.staleness_mean = static_cast<double>(staleness);
  result.staleness_max = staleness;
  if (!outcome.status.ok()) return std::vector<float>();  // result.aborted: the model stays
  result.contributors = static_cast<int64_t>(outcome.included.size());
  FEDKIT_ASSIGN_OR_RETURN(secagg::DecodedSum decoded, secagg::DecodeSum(*encoding_, outcome.sum));
  if (decoded.total_weight <= 0) {
    result.aborted = "secure aggregation summed zero weight";
    return std::vector<float>();
  }
  // sum_i n_i w(s) delta_i / sum_i n_i, as a plain buffer of this cohort would commit.
  std::vector<float> average = decoded.Average();
  aggregation::WeighByStaleness(fedbuff_.staleness, staleness, absl::MakeSpan(average));
  return average;
}

absl::StatusOr<std::vector<float>> FedBuffSimulator::AggregateBuffer(const BufferCommit& commit,
                                                                     RoundResult& result) {
  const int64_t k = static_cast<int64_t>(commit.arrivals.size());
  const client::TrainingPlan& plan = options_.plan;
  const int64_t weight_cap = ClientWeightCap(options_);
  FEDKIT_ASSIGN_OR_RETURN(std::unique_ptr<aggregation::WeightedFedAvgAggregator> aggregate,
                          aggregation::WeightedFedAvgAggregator::Create(
                              static_cast<int64_t>(global_.size()),
                              aggregation::UpdateValueBound(plan.clip_norm), weight_cap));
  double weighted_loss = 0.0, norm_sum = 0.0, staleness_sum = 0.0;
  FEDKIT_RETURN_IF_ERROR(RunOrdered<client::ClientUpdate>(
      *pool_, k, 4 * static_cast<int64_t>(options_.threads),
      [&](int worker, int64_t i) -> absl::StatusOr<client::ClientUpdate> {
        return Train(worker, commit.arrivals[i]);
      },
      [&](int64_t i, client::ClientUpdate update) -> absl::Status {
        const AsyncArrival& a = commit.arrivals[i];
        aggregation::WeighByStaleness(fedbuff_.staleness, a.staleness,
                                      absl::MakeSpan(update.delta));
        const int64_t weight = std::min(update.num_examples, weight_cap);
        if (absl::Status folded = aggregate->Accumulate(update.delta, weight); !folded.ok()) {
          return absl::Status(folded.code(),
                              absl::StrCat("client ", a.client, ": ", folded.message(),
                                           weight_cap == aggregation::kDefaultMaxWeight
                                               ? " (`max_client_weight` caps example counts)"
                                               : ""));
        }
        result.examples += update.num_examples;
        weighted_loss += update.train_loss * static_cast<double>(update.num_examples);
        norm_sum += update.delta_norm;
        staleness_sum += static_cast<double>(a.staleness);
        result.staleness_max = std::max(result.staleness_max, a.staleness);
        return absl::OkStatus();
      }));
  FEDKIT_ASSIGN_OR_RETURN(aggregation::AggregateReport report, aggregate->Report());
  result.contributors = k;
  result.train_loss =
      result.examples > 0 ? weighted_loss / static_cast<double>(result.examples) : 0.0;
  result.mean_delta_norm = norm_sum / static_cast<double>(k);
  result.staleness_mean = staleness_sum / static_cast<double>(k);
  return std::move(report.average);
}

absl::StatusOr<std::shared_ptr<models::Model>> FedBuffSimulator::GlobalModel() const {
  FEDKIT_ASSIGN_OR_RETURN(auto model, models::CreateModel(options_.model, dataset_->info(), 0));
  FEDKIT_RETURN_IF_ERROR(models::AssignParameters(global_, *model));
  return model;
}

}  // namespace fedkit::simulation
