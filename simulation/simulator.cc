#include "simulation/simulator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "aggregation/aggregator.h"
#include "aggregation/robust.h"
#include "compression/download_codec.h"
#include "compression/secagg_compression.h"
#include "compression/secagg_quantization.h"
#include "compression/seeds.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "privacy/clipping.h"
#include "privacy/noise.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/in_memory_round.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/wire_sizes.h"
#include "server/client_sampler.h"
#include "server/round_coordinator.h"
#include "simulation/pool_evaluation.h"

namespace fedkit::simulation {
namespace {

// The run DP applies to (privacy::DpRoundShape), as far as it is known before the model is built.
privacy::DpRoundShape DpShape(const SimulationOptions& options, int64_t population) {
  privacy::DpRoundShape shape;
  shape.clients_per_round = options.clients_per_round;
  shape.population = population;
  // Over-selected clients may all be summed: the accountant's q counts them (as the coordinator's).
  shape.sampled_per_round =
      server::OverSelectedTarget(options.clients_per_round, options.system.over_select);
  shape.clip_norm = options.plan.clip_norm;
  shape.expected_dropout_rate = options.dropout.rate;
  if (options.secure_aggregation.has_value()) {
    shape.secure_aggregation_modulus_bits = options.secure_aggregation->modulus_bits;
  }
  return shape;
}

// The DP settings (privacy::ValidateDpSettings, whose errors name the field) and what DP excludes
// here.
absl::Status ValidateDpOptions(const SimulationOptions& options, int64_t population) {
  FEDKIT_RETURN_IF_ERROR(privacy::ValidateDpSettings(options.dp, DpShape(options, population)));
  if (options.dp.mode != DpMode::kNone && options.max_client_weight.has_value()) {
    return absl::InvalidArgumentError(
        "`max_client_weight` does not apply with DP: every client has weight 1");
  }
  return absl::OkStatus();
}

// The aggregator and the attack: both need plain rounds (every update in the clear, no DP).
absl::Status ValidateAggregatorAndAttack(const SimulationOptions& options,
                                         const data::DatasetInfo& info) {
  const bool plain = !options.secure_aggregation.has_value() && options.dp.mode == DpMode::kNone;
  const aggregation::AggregatorSpec& spec = options.aggregator;
  const std::string name = aggregation::FormatAggregatorSpec(spec);
  // MakeAggregator's checks of the spec (the dimension and bounds here are placeholders).
  if (absl::Status valid = aggregation::MakeAggregator(spec, 1, 1.0, 1).status(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("`aggregator`: ", valid.message()));
  }
  if (spec.kind != aggregation::AggregatorKind::kMean && !plain) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`aggregator` ", name,
        " needs every update in the clear: it cannot run with secure aggregation or DP (their "
        "rounds aggregate by mean)"));
  }
  if ((spec.kind == aggregation::AggregatorKind::kKrum ||
       spec.kind == aggregation::AggregatorKind::kMultiKrum) &&
      options.clients_per_round < 2 * spec.attackers + 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("`aggregator` ", name, " needs at least 2F + 3 = ", 2 * spec.attackers + 3,
                     " updates per round: `clients_per_round` is ", options.clients_per_round));
  }
  if (absl::Status valid = ValidateAttackSpec(options.attack); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("`attack`: ", valid.message()));
  }
  if (!(options.attack_fraction >= 0.0 && options.attack_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("`attack_fraction` must be in [0, 1), got ", options.attack_fraction));
  }
  if (options.attack.kind == AttackKind::kNone) {
    if (options.attack_fraction > 0) {
      return absl::InvalidArgumentError(
          "`attack_fraction` is set but `attack` is none: say what the attackers do");
    }
    return absl::OkStatus();
  }
  if (!plain) {
    return absl::InvalidArgumentError(
        absl::StrCat("`attack` ", FormatAttackSpec(options.attack),
                     " is simulated in plain rounds only: not with secure aggregation or DP"));
  }
  if (options.attack.kind == AttackKind::kLabelFlip && info.num_classes < 2) {
    return absl::InvalidArgumentError(
        "`attack` label-flip needs a classification dataset (this one has no classes)");
  }
  return absl::OkStatus();
}

}  // namespace

SecureAggregationRoundStats SummarizeSecureRound(const secagg::ProtocolConfig& config,
                                                 const secagg::InMemoryRoundResult& outcome,
                                                 int n) {
  SecureAggregationRoundStats stats;
  stats.survivors = static_cast<int64_t>(outcome.included.size());
  stats.degree = config.degree;
  stats.threshold = config.threshold;
  double client_seconds = 0.0;
  for (double s : outcome.stats.client_seconds_total) client_seconds += s;
  stats.client_seconds_mean = client_seconds / n;
  stats.server_seconds = outcome.stats.server_seconds;
  stats.client_bytes_sent_mean = outcome.stats.client_bytes_sent_mean;
  return stats;
}

absl::StatusOr<secagg::ProtocolConfig> SimulatedProtocolConfig(const SimulationOptions& options,
                                                               int round, int64_t num_clients,
                                                               int64_t length) {
  FEDKIT_ASSIGN_OR_RETURN(secagg::ProtocolConfig config,
                          secagg::MakeProtocolConfig(*options.secure_aggregation,
                                                     static_cast<int>(num_clients), length));
  // The graph seed is public randomness; deriving it from the run seed makes a simulation
  // (including which rounds abort under heavy dropout) reproducible. Session ids stay random:
  // they change the masks, never the sum.
  config.graph_seed = DeriveSeed(options.seed, {static_cast<uint64_t>(round), 0x6772617068});
  return config;
}

int64_t SecureAggregationMaxWeight(const SimulationOptions& options,
                                   const data::FederatedDataset& dataset) {
  int64_t max_weight = 0;
  if (options.max_client_weight.has_value()) {
    max_weight = static_cast<int64_t>(std::ceil(*options.max_client_weight));
  } else {
    for (int64_t c = 0; c < dataset.num_clients(); ++c) {
      max_weight = std::max(max_weight, dataset.NumTrainExamples(c));
    }
  }
  return std::max<int64_t>(max_weight, 1);
}

absl::Status ValidateRunOptions(const SimulationOptions& options) {
  if (options.rounds < 1) return absl::InvalidArgumentError("rounds must be >= 1");
  if (options.threads < 1) return absl::InvalidArgumentError("threads must be >= 1");
  if (options.eval_every < 0) return absl::InvalidArgumentError("eval_every must be >= 0");
  if (options.max_client_weight && !(*options.max_client_weight > 0)) {
    return absl::InvalidArgumentError("max client weight must be > 0");
  }
  return client::ValidateTrainingPlan(options.plan);
}

int64_t ClientWeightCap(const SimulationOptions& options) {
  return options.max_client_weight.has_value()
             ? static_cast<int64_t>(std::ceil(*options.max_client_weight))
             : aggregation::kDefaultMaxWeight;
}

absl::StatusOr<std::optional<DeviceSpeeds>> MakeDeviceSpeeds(const SimulationOptions& options) {
  if (options.system.device_speeds.empty()) return std::nullopt;
  absl::StatusOr<DeviceSpeeds> speeds =
      DeviceSpeeds::Create(options.system.device_speeds, options.seed);
  if (!speeds.ok()) {
    return absl::Status(speeds.status().code(),
                        absl::StrCat("--device-speeds: ", speeds.status().message()));
  }
  return std::optional<DeviceSpeeds>(*std::move(speeds));
}

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Create(const SimulationOptions& options,
                                                             const data::FederatedDataset* dataset,
                                                             Collective* collective) {
  if (dataset == nullptr) return absl::InvalidArgumentError("no dataset");
  if (collective != nullptr && collective->size() > 1 && options.secure_aggregation.has_value()) {
    return absl::InvalidArgumentError(
        "--secagg runs in one process: secure aggregation is not spread over MPI ranks yet");
  }
  if (options.clients_per_round < 1 || options.clients_per_round > dataset->num_clients()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clients per round (", options.clients_per_round,
        ") must be between 1 and the number of clients (", dataset->num_clients(), ")"));
  }
  FEDKIT_RETURN_IF_ERROR(ValidateRunOptions(options));
  if (!(options.dropout.rate >= 0.0 && options.dropout.rate < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout rate must be in [0, 1), got ", options.dropout.rate));
  }

  FEDKIT_RETURN_IF_ERROR(ValidateDpOptions(options, dataset->num_clients()));
  FEDKIT_RETURN_IF_ERROR(ValidateAggregatorAndAttack(options, dataset->info()));
  FEDKIT_RETURN_IF_ERROR(
      ValidateAlgorithm(options, collective != nullptr ? collective->size() : 1));
  if (options.client_batching < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("`client_batching` must be >= 0 (0 = off), got ", options.client_batching));
  }
  if (options.client_batching > 0) {
    if (options.secure_aggregation.has_value()) {
      return absl::InvalidArgumentError(
          "`client_batching` batches plain rounds: not with `secure_aggregation`");
    }
    if (options.algorithm.algorithm != Algorithm::kFedAvg) {
      return absl::InvalidArgumentError(
          absl::StrCat("`client_batching` batches fedavg's local training: not `algorithm` ",
                       AlgorithmName(options.algorithm.algorithm)));
    }
    if (options.plan.max_seconds > 0) {
      return absl::InvalidArgumentError(
          "`client_batching` cannot keep a wall-clock budget per client: not with "
          "`plan.max_seconds`");
    }
  }
  if (!(options.system.over_select >= 0 && options.system.over_select <= 10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--over-select must be in [0, 10], got ", options.system.over_select));
  }
  if (options.system.deadline_seconds.has_value() &&
      !(*options.system.deadline_seconds > 0 && std::isfinite(*options.system.deadline_seconds))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--round-deadline must be positive, got ", *options.system.deadline_seconds));
  }

  std::unique_ptr<Simulator> sim(new Simulator(options, dataset));
  if (options.client_evaluation.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(
        sim->client_evaluator_,
        ClientEvaluator::Create(*options.client_evaluation, dataset, options.plan, options.seed));
    sim->dataset_ = &sim->client_evaluator_->dataset();
  }
  if (collective != nullptr) sim->collective_ = collective;
  FEDKIT_RETURN_IF_ERROR(sim->IndexClientIds());
  if (options.attack.kind != AttackKind::kNone) {
    FEDKIT_ASSIGN_OR_RETURN(
        sim->attackers_,
        ChooseAttackers(dataset->num_clients(), options.attack_fraction, options.seed));
  }
  FEDKIT_ASSIGN_OR_RETURN(sim->device_speeds_, MakeDeviceSpeeds(options));
  if (options.secure_aggregation.has_value() && options.dp.mode == DpMode::kNone) {
    FEDKIT_ASSIGN_OR_RETURN(sim->encoding_, sim->ChooseSecureAggregationEncoding());
  }
  FEDKIT_RETURN_IF_ERROR(CheckCompressionUnderSecureAggregation(options));
  const uint64_t init_seed = server::InitialModelSeed(options.seed);
  FEDKIT_ASSIGN_OR_RETURN(auto global_model,
                          models::CreateModel(options.model, dataset->info(), init_seed));
  sim->global_ = models::FlattenParameters(*global_model);
  sim->layout_proto_ = LayoutToProto(models::LayoutOf(*global_model));
  sim->download_bytes_ =
      proto::ModelStreamBytes(/*round=*/1, static_cast<int64_t>(sim->global_.size()),
                              proto::kDefaultModelChunkFloats, sim->layout_proto_);
  if (options.dp.mode != DpMode::kNone) FEDKIT_RETURN_IF_ERROR(sim->SetUpPrivacy());
  FEDKIT_ASSIGN_OR_RETURN(sim->round_algorithm_,
                          MakeRoundAlgorithm(options, static_cast<int64_t>(sim->global_.size()),
                                             dataset->num_clients()));
  FEDKIT_ASSIGN_OR_RETURN(sim->server_optimizer_,
                          aggregation::MakeServerOptimizer(
                              options.server_optimizer, static_cast<int64_t>(sim->global_.size())));
  FEDKIT_ASSIGN_OR_RETURN(sim->trainers_, MakeWorkerTrainers(options.model, dataset->info(),
                                                             init_seed, options.threads));
  if (options.client_batching > 0) {
    for (int t = 0; t < options.threads; ++t) {
      absl::StatusOr<std::unique_ptr<BatchedTrainer>> batched =
          BatchedTrainer::Create(options.model, dataset->info());
      if (!batched.ok()) {
        return absl::Status(batched.status().code(),
                            absl::StrCat("`client_batching`: ", batched.status().message()));
      }
      sim->batched_trainers_.push_back(*std::move(batched));
    }
  }
  sim->pool_ = std::make_unique<WorkerPool>(options.threads,
                                            [](int) { models::UseSingleThreadedCompute(); });
  return sim;
}

Simulator::Simulator(const SimulationOptions& options, const data::FederatedDataset* dataset)
    : options_(options), dataset_(dataset) {}

absl::Status Simulator::IndexClientIds() {
  const std::vector<std::string>& ids = options_.client_ids;
  const int64_t n = dataset_->num_clients();
  if (ids.empty() && options_.replay.empty()) return absl::OkStatus();
  if (!ids.empty() && static_cast<int64_t>(ids.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("`client_ids`: %d ids for %d clients", ids.size(), n));
  }
  for (int64_t i = 0; i < n; ++i) {
    std::string id = ids.empty() ? absl::StrFormat("client-%06d", i) : ids[i];
    if (absl::Status valid = server::ValidateClientId(id); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("`client_ids`: client ", i, ": ", valid.message()));
    }
    auto [it, inserted] = client_of_id_.emplace(std::move(id), i);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("`client_ids`: '", it->first, "' names clients ", it->second, " and ", i));
    }
  }
  for (const auto& [id, client] : client_of_id_) clients_by_id_.push_back(client);
  if (options_.replay.empty()) {
    client_of_id_.clear();
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(options_.replay.size()) < options_.rounds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "`replay`: %d rounds, fewer than the %d to run", options_.replay.size(), options_.rounds));
  }
  if (options_.dropout.rate > 0 || !options_.dropout.forced.empty() ||
      !options_.system.device_speeds.empty() || options_.system.deadline_seconds.has_value()) {
    return absl::InvalidArgumentError(
        "`replay` decides who reports: it excludes injected dropouts, device speeds and "
        "deadlines");
  }
  for (const server::RoundParticipation& record : options_.replay) {
    for (const std::string& id : record.pool) {
      if (!client_of_id_.contains(id)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("`replay` round %d: device '%s' is not one of the %d `client_ids`",
                            record.round, id, n));
      }
    }
  }
  return absl::OkStatus();
}

int64_t Simulator::Assigned() const {
  return server::OverSelectedTarget(options_.clients_per_round, options_.system.over_select);
}

absl::StatusOr<std::vector<int64_t>> Simulator::SampleRound(int round) const {
  FEDKIT_ASSIGN_OR_RETURN(
      std::vector<int64_t> chosen,
      server::SampleClients(dataset_->num_clients(), std::min(dataset_->num_clients(), Assigned()),
                            server::SamplingSeed(options_.seed, round)));
  if (!clients_by_id_.empty()) {
    for (int64_t& c : chosen) c = clients_by_id_[c];
  }
  return chosen;
}

absl::StatusOr<std::vector<int64_t>> Simulator::ReplayRound(
    int round, std::vector<std::optional<secagg::ClientPhase>>& drop_at) const {
  const server::RoundParticipation& record = options_.replay[round - 1];
  const int64_t pool = static_cast<int64_t>(record.pool.size());
  const int64_t count = std::min(pool, Assigned());
  if (count < 1) {
    return absl::FailedPreconditionError(
        absl::StrFormat("replayed round %d: the pool is empty", round));
  }
  FEDKIT_ASSIGN_OR_RETURN(std::vector<int64_t> chosen,
                          server::SampleClients(pool, count,
                                                record.sampling_seed.value_or(server::SamplingSeed(
                                                    options_.seed, round, record.attempt))));
  std::vector<std::string> sampled;
  for (int64_t i : chosen) sampled.push_back(record.pool[i]);
  if (sampled != record.assigned) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "replayed round %d: sampling %d of the %d devices in the pool gives [%s], but the "
        "coordinator assigned [%s]: its seed, clients per round or over-selection differ",
        round, count, pool, absl::StrJoin(sampled, ", "), absl::StrJoin(record.assigned, ", ")));
  }
  std::vector<int64_t> participants;
  drop_at.assign(sampled.size(), std::nullopt);
  for (size_t i = 0; i < sampled.size(); ++i) {
    participants.push_back(client_of_id_.at(sampled[i]));
    if (!std::binary_search(record.aggregated.begin(), record.aggregated.end(), sampled[i])) {
      drop_at[i] = secagg::ClientPhase::kMaskedInput;
    }
  }
  return participants;
}

Simulator::~Simulator() = default;

absl::Status Simulator::SetUpPrivacy() {
  const DpOptions& dp = options_.dp;
  privacy::DpRoundShape shape = DpShape(options_, dataset_->num_clients());
  shape.dim = static_cast<int64_t>(global_.size());
  absl::StatusOr<privacy::DpSetup> setup = privacy::SetUpDp(dp, shape);
  if (!setup.ok()) {
    // Create validated the settings: what is left is the encoding not fitting the modulus.
    return absl::InvalidArgumentError(shape.secure_aggregation_modulus_bits.has_value()
                                          ? absl::StrCat("`mode` ", DpModeName(dp.mode),
                                                         " with `secure_aggregation_modulus_bits` ",
                                                         options_.secure_aggregation->modulus_bits,
                                                         ": ", setup.status().message())
                                          : std::string(setup.status().message()));
  }
  if (setup->adaptive_clipping.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(adaptive_clipping_,
                            privacy::AdaptiveClipping::Create(*setup->adaptive_clipping));
  }
  if (setup->encoding.has_value()) {
    FEDKIT_RETURN_IF_ERROR(CheckProtocolSizes(setup->encoding->length()));
  }
  if (setup->accounting_noise_multiplier > 0) accountant_.emplace();
  privacy_setup_ = *std::move(setup);
  return absl::OkStatus();
}

std::optional<double> Simulator::epsilon() const {
  if (!privacy_setup_.has_value()) return std::nullopt;
  if (!accountant_.has_value()) return std::numeric_limits<double>::infinity();
  absl::StatusOr<privacy::EpsilonAtDelta> spent = accountant_->Epsilon(options_.dp.delta);
  if (!spent.ok()) return std::numeric_limits<double>::infinity();
  return spent->epsilon;
}

absl::StatusOr<double> Simulator::EpsilonAfter(int64_t steps) const {
  FEDKIT_ASSIGN_OR_RETURN(privacy::EpsilonAtDelta after,
                          accountant_->EpsilonAfter(privacy_setup_->sampling_rate,
                                                    privacy_setup_->accounting_noise_multiplier,
                                                    steps, options_.dp.delta));
  return after.epsilon;
}

absl::StatusOr<secagg::ProtocolConfig> Simulator::RoundProtocolConfig(int round,
                                                                      int64_t num_clients,
                                                                      int64_t length) const {
  return SimulatedProtocolConfig(options_, round, num_clients, length);
}

absl::Status Simulator::CheckCompressionUnderSecureAggregation(const SimulationOptions& options) {
  FEDKIT_RETURN_IF_ERROR(compression::ValidateCompressionSpec(options.plan.compression));
  if (!options.secure_aggregation.has_value()) return absl::OkStatus();
  absl::Status status = compression::CheckSecAggCompression(options.plan.compression,
                                                            options.dp.mode != DpMode::kNone);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat("`plan.compression`: ", status.message()));
}

absl::StatusOr<secagg::FixedPointEncoding> Simulator::ChooseSecureAggregationEncoding() const {
  const secagg::SecureAggregationSettings& secure = *options_.secure_aggregation;
  if (!(options_.plan.clip_norm > 0)) {
    return absl::InvalidArgumentError(
        "secure aggregation needs a clip norm (--clip-norm > 0): the fixed-point range of the "
        "masked values is derived from it");
  }
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::FixedPointEncoding encoding,
      // Sized, as the coordinator sizes it, for every client a round assigns (over-selection).
      secagg::ChooseEncoding(secure.modulus_bits, Assigned(), options_.plan.clip_norm,
                             SecureAggregationMaxWeight(options_, *dataset_)));
  FEDKIT_RETURN_IF_ERROR(CheckProtocolSizes(static_cast<int64_t>(global_.size()) + 1));
  return encoding;
}

absl::Status Simulator::CheckProtocolSizes(int64_t length) const {
  // Every round assigns between clients per round and the over-selected target (fewer only when
  // a replayed pool is smaller).
  for (int64_t n : {options_.clients_per_round, std::min(dataset_->num_clients(), Assigned())}) {
    FEDKIT_RETURN_IF_ERROR(RoundProtocolConfig(0, n, length).status());
  }
  return absl::OkStatus();
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

void Simulator::ApplySystemSchedule(const std::vector<int64_t>& participants,
                                    std::vector<std::optional<secagg::ClientPhase>>& drop_at,
                                    RoundResult& result) const {
  const SystemOptions& system = options_.system;
  if (!device_speeds_.has_value() && !system.deadline_seconds.has_value() &&
      participants.size() <= static_cast<size_t>(options_.clients_per_round)) {
    return;
  }
  std::vector<std::optional<double>> finish(participants.size());
  for (size_t i = 0; i < participants.size(); ++i) {
    // A device silent before its upload never reports; one dropping at unmask already did.
    if (drop_at[i].has_value() && *drop_at[i] != secagg::ClientPhase::kUnmask) continue;
    finish[i] =
        device_speeds_.has_value()
            ? device_speeds_->RoundSeconds(
                  participants[i],
                  client::ExamplePasses(dataset_->NumTrainExamples(participants[i]), options_.plan),
                  1)
            : 0.0;
  }
  const RoundSchedule schedule =
      ScheduleRound(finish, options_.clients_per_round, system.deadline_seconds);
  for (size_t i = 0; i < participants.size(); ++i) {
    if (finish[i].has_value() && !schedule.kept[i]) drop_at[i] = secagg::ClientPhase::kMaskedInput;
  }
  result.virtual_seconds = schedule.virtual_seconds;
  result.stragglers = schedule.stragglers;
  result.not_needed = schedule.not_needed;
}

absl::StatusOr<Simulator::DownloadedModel> Simulator::Download() const {
  DownloadedModel downloaded;
  downloaded.bytes = download_bytes_;
  const compression::DownloadEncoding encoding = options_.download_encoding;
  if (encoding == compression::DownloadEncoding::kFloat32) return downloaded;
  absl::StatusOr<std::string> encoded = compression::EncodeDownload(encoding, global_);
  // A model the encoding cannot hold goes in float32, as the coordinator sends it
  // (server/encoded_model_cache.h).
  if (!encoded.ok()) return downloaded;
  const int64_t size = static_cast<int64_t>(global_.size());
  FEDKIT_ASSIGN_OR_RETURN(downloaded.decoded,
                          compression::DecodeDownload(encoding, *encoded, size));
  downloaded.bytes = proto::EncodedModelStreamBytes(
      /*round=*/1, size, proto::DownloadEncodingToProto(encoding),
      static_cast<int64_t>(encoded->size()), proto::kDefaultModelChunkBytes, layout_proto_);
  return downloaded;
}

absl::StatusOr<RoundResult> Simulator::RunRound() {
  const auto start = std::chrono::steady_clock::now();
  if (!first_round_start_.has_value()) first_round_start_ = start;
  const int round = rounds_done_ + 1;
  const bool dp = privacy_setup_.has_value();
  if (dp && options_.dp.target_epsilon.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(const double after, EpsilonAfter(1));
    if (after > *options_.dp.target_epsilon) {
      budget_exhausted_ = true;
      return absl::ResourceExhaustedError(absl::StrFormat(
          "stopping before round %d: epsilon would be %.6g > target %g; last round within "
          "budget %d (epsilon %.6g at delta %g)",
          round, after, *options_.dp.target_epsilon, rounds_done_, *epsilon(), options_.dp.delta));
    }
  }
  std::vector<int64_t> participants;
  std::vector<std::optional<secagg::ClientPhase>> drop_at;
  if (options_.replay.empty()) {
    FEDKIT_ASSIGN_OR_RETURN(participants, SampleRound(round));
    drop_at = DropoutSchedule(round, participants);
  } else {
    FEDKIT_ASSIGN_OR_RETURN(participants, ReplayRound(round, drop_at));
  }

  RoundResult result;
  result.round = round;
  result.participants = static_cast<int64_t>(participants.size());
  for (const auto& d : drop_at) result.dropped += d.has_value() ? 1 : 0;
  if (options_.replay.empty()) ApplySystemSchedule(participants, drop_at, result);
  if (result.virtual_seconds.has_value()) {
    virtual_elapsed_seconds_ += *result.virtual_seconds;
    result.virtual_elapsed_seconds = virtual_elapsed_seconds_;
  }
  // With adaptive clipping the clients clip to this round's estimate.
  client::TrainingPlan plan = options_.plan;
  if (adaptive_clipping_.has_value()) plan.clip_norm = adaptive_clipping_->clip_norm();
  if (dp) {
    result.clip_norm = plan.clip_norm;
    result.delta = options_.dp.delta;
  }
  // The model the clients download and train from: with an encoded download
  // (options_.download_encoding) what a device decodes, as the coordinator serves it.
  FEDKIT_ASSIGN_OR_RETURN(const DownloadedModel downloaded, Download());
  const std::vector<float>& from = downloaded.decoded.empty() ? global_ : downloaded.decoded;
  std::optional<std::vector<float>> average;
  double upload_bytes = 0.0;  // summed over the clients that uploaded (plain rounds)
  int64_t trained = 0;
  double weighted_loss = 0.0;
  double norm_sum = 0.0;
  auto train = [&](int worker, int64_t i) -> absl::StatusOr<client::ClientUpdate> {
    const int64_t client = participants[i];
    std::vector<float> correction;  // SCAFFOLD's c - c_i
    if (round_algorithm_ != nullptr) {
      FEDKIT_ASSIGN_OR_RETURN(correction, round_algorithm_->Correction(client));
    }
    absl::StatusOr<client::ClientUpdate> update =
        IsAttacker(client) ? AttackerUpdate(*trainers_[worker], from, plan, round, client)
                           : trainers_[worker]->Train(
                                 from, dataset_->TrainExamples(client), plan,
                                 ClientTrainingSeed(options_.seed, round, client), {}, correction);
    if (!update.ok()) {
      return absl::Status(update.status().code(),
                          absl::StrCat("client ", client, ": ", update.status().message()));
    }
    return update;
  };

  if (dp && options_.secure_aggregation.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(
        std::optional<DpSum> dp_sum,
        RunDpSecureAggregation(round, plan.clip_norm, participants, drop_at, train, result, trained,
                               weighted_loss, norm_sum));
    if (dp_sum.has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(average, ReleaseDpAverage(round, plan.clip_norm, *dp_sum, result));
    }
  } else if (encoding_.has_value()) {
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
    // The coordinator's aggregators, with the coordinator's bounds (aggregation/aggregator.h):
    // the sum is exact, so it equals the coordinator's whatever order updates arrive in.
    const double bound = aggregation::UpdateValueBound(plan.clip_norm);
    const int64_t weight_cap = ClientWeightCap(options_);
    std::unique_ptr<aggregation::Aggregator> aggregate;
    if (dp) {
      // Noise is added at the release (ReleaseDpAverage), from the simulator's seeded sources.
      FEDKIT_ASSIGN_OR_RETURN(aggregate,
                              aggregation::UnitWeightDpAggregator::Create(
                                  static_cast<int64_t>(global_.size()), bound, 0.0, 1.0, nullptr));
    } else {
      // mean is WeightedFedAvgAggregator; the robust ones buffer the round's updates.
      FEDKIT_ASSIGN_OR_RETURN(
          aggregate,
          aggregation::MakeAggregator(options_.aggregator, static_cast<int64_t>(global_.size()),
                                      bound, weight_cap));
    }
    DpSum dp_sum;
    int64_t attackers = 0;  // attackers among the contributors
    // Over several processes, this one trains every size()-th contributor.
    std::vector<int64_t> mine;
    for (int64_t k = collective_->rank(); k < static_cast<int64_t>(contributors.size());
         k += collective_->size()) {
      mine.push_back(contributors[k]);
    }
    // Each worker trains whole clients; the window keeps a few finished deltas per worker waiting
    // for their turn (the metrics below are summed in a fixed order).
    const int64_t window = 4 * static_cast<int64_t>(options_.threads);
    auto consume = [&](int64_t k, client::ClientUpdate update) -> absl::Status {
      if (dp) {
        // DP-FedAvg: weight 1.
        ++dp_sum.reports;
        dp_sum.unclipped +=
            privacy::AdaptiveClipping::UnclippedBit(update.delta_norm, plan.clip_norm);
      }
      const int64_t weight = std::min(update.num_examples, weight_cap);
      const int64_t client = participants[mine[k]];
      if (IsAttacker(client)) {
        // The coordinator checks an attacker's upload as anyone's (honest clients clip, so
        // theirs always pass): one it refuses, or that its device could not even encode,
        // does not count.
        absl::StatusOr<int64_t> sent = CompressAsUploaded(round, client, plan, weight,
                                                          /*clip_on_device=*/false, update);
        if (!sent.ok() || !PassesUploadChecks(update.delta, plan.clip_norm) ||
            !aggregate->Accumulate(update.delta, weight).ok()) {
          ++result.refused;
          return absl::OkStatus();
        }
        ++attackers;
        upload_bytes += static_cast<double>(*sent);
      } else {
        FEDKIT_ASSIGN_OR_RETURN(const int64_t sent,
                                CompressAsUploaded(round, client, plan, weight,
                                                   /*clip_on_device=*/true, update));
        upload_bytes += static_cast<double>(sent);
        if (round_algorithm_ != nullptr) {
          FEDKIT_ASSIGN_OR_RETURN(const int64_t extra,
                                  round_algorithm_->OnUpload(client, weight, update));
          upload_bytes += static_cast<double>(extra);
        }
        if (absl::Status folded = aggregate->Accumulate(update.delta, weight); !folded.ok()) {
          return absl::Status(folded.code(),
                              absl::StrCat("client ", client, ": ", folded.message(),
                                           weight_cap == aggregation::kDefaultMaxWeight && !dp
                                               ? " (--max-client-weight caps example counts)"
                                               : ""));
        }
      }
      result.examples += update.num_examples;
      weighted_loss += update.train_loss * static_cast<double>(update.num_examples);
      norm_sum += update.delta_norm;
      ++trained;
      return absl::OkStatus();
    };
    if (batched_trainers_.empty()) {
      FEDKIT_RETURN_IF_ERROR(RunOrdered<client::ClientUpdate>(
          *pool_, static_cast<int64_t>(mine.size()), window,
          [&](int worker, int64_t k) { return train(worker, mine[k]); }, consume));
    } else {
      // --client-batching: each worker trains groups of consecutive clients of `mine` together;
      // their updates are then folded one by one, in the same order as without batching.
      const int64_t size = options_.client_batching;
      const int64_t count = static_cast<int64_t>(mine.size());
      FEDKIT_RETURN_IF_ERROR(RunOrdered<std::vector<client::ClientUpdate>>(
          *pool_, (count + size - 1) / size, 2 * static_cast<int64_t>(options_.threads),
          [&](int worker, int64_t group) {
            const int64_t begin = group * size;
            return TrainGroup(*batched_trainers_[worker], from, plan, round,
                              absl::MakeConstSpan(mine).subspan(begin, size), participants,
                              [&](int64_t i) { return train(worker, i); });
          },
          [&](int64_t group, std::vector<client::ClientUpdate> updates) -> absl::Status {
            for (size_t j = 0; j < updates.size(); ++j) {
              FEDKIT_RETURN_IF_ERROR(
                  consume(group * size + static_cast<int64_t>(j), std::move(updates[j])));
            }
            return absl::OkStatus();
          }));
    }
    if (collective_->size() > 1) {
      FEDKIT_RETURN_IF_ERROR(MergeAcrossProcesses(aggregate, dp_sum, result.examples, trained,
                                                  weighted_loss, norm_sum, attackers,
                                                  result.refused));
    }
    if (options_.attack.kind != AttackKind::kNone) result.attackers = attackers;
    if (contributors.empty()) {
      result.aborted = "every sampled client dropped out";
    } else if (dp) {
      dp_sum.exact = aggregate->sum();  // the exact sum; noised and divided at the release
      FEDKIT_ASSIGN_OR_RETURN(average, ReleaseDpAverage(round, plan.clip_norm, dp_sum, result));
    } else if (aggregate->num_inputs() == 0) {
      result.aborted = "the coordinator refused every upload";  // attackers' only
    } else if (!aggregate->CanReport()) {
      // Krum with fewer than 2F + 3 updates: the round fails as one without enough clients would
      // (Report's error says how many there were and how many it needs).
      absl::Status why = aggregate->Report().status();
      result.aborted =
          absl::StrCat("aggregator ", aggregation::FormatAggregatorSpec(options_.aggregator), ": ",
                       why.message());
    } else {
      FEDKIT_ASSIGN_OR_RETURN(aggregation::AggregateReport report, aggregate->Report());
      average = std::move(report.average);
    }
  }
  if (round_algorithm_ != nullptr) FEDKIT_RETURN_IF_ERROR(round_algorithm_->EndRound(average));
  if (average.has_value()) {
    FEDKIT_RETURN_IF_ERROR(server_optimizer_->Apply(*average, absl::MakeSpan(global_)));
  }
  rounds_done_ = round;

  // Every round that ran is accounted, also one that aborted without a release: conservative.
  bool last_within_budget = false;
  if (dp) {
    if (accountant_.has_value()) {
      FEDKIT_RETURN_IF_ERROR(accountant_->Compose(privacy_setup_->sampling_rate,
                                                  privacy_setup_->accounting_noise_multiplier));
      if (options_.dp.target_epsilon.has_value()) {
        FEDKIT_ASSIGN_OR_RETURN(const double next, EpsilonAfter(1));
        last_within_budget = next > *options_.dp.target_epsilon;
      }
    }
    result.epsilon = epsilon();
  }

  result.train_loss =
      result.examples > 0 ? weighted_loss / static_cast<double>(result.examples) : 0.0;
  // Every participant downloads the model; uploads are averaged over participants too, as the
  // coordinator does (a client that dropped out sent nothing).
  if (result.participants > 0) {
    const double participants = static_cast<double>(result.participants);
    result.download_bytes = static_cast<double>(downloaded.bytes);
    result.upload_bytes =
        result.secure_aggregation.has_value()
            ? result.secure_aggregation->client_bytes_sent_mean  // over clients that sent
            : upload_bytes / participants;
  }
  result.mean_delta_norm = trained > 0 ? norm_sum / static_cast<double>(trained) : 0.0;
  result.contributors = trained;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const bool last = round == options_.rounds || last_within_budget;
  if (collective_->rank() == 0 &&
      (last || (options_.eval_every > 0 && round % options_.eval_every == 0))) {
    const auto eval_start = std::chrono::steady_clock::now();
    FEDKIT_ASSIGN_OR_RETURN(result.eval, Evaluate());
    if (client_evaluator_ != nullptr) {
      FEDKIT_ASSIGN_OR_RETURN(result.client_eval,
                              client_evaluator_->Run(global_, round, *pool_, trainers_));
    }
    result.eval_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  }
  result.elapsed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - *first_round_start_).count();
  return result;
}

bool Simulator::IsAttacker(int64_t client) const {
  return std::binary_search(attackers_.begin(), attackers_.end(), client);
}

absl::StatusOr<std::vector<client::ClientUpdate>> Simulator::TrainGroup(
    BatchedTrainer& trainer, absl::Span<const float> from, const client::TrainingPlan& plan,
    int round, absl::Span<const int64_t> indices, const std::vector<int64_t>& participants,
    const std::function<absl::StatusOr<client::ClientUpdate>(int64_t)>& alone) const {
  std::vector<client::ClientUpdate> updates(indices.size());
  std::vector<data::Examples> examples;
  examples.reserve(indices.size());
  std::vector<uint64_t> seeds;
  std::vector<size_t> batched;  // positions in `indices` of the clients trained together
  for (size_t j = 0; j < indices.size(); ++j) {
    const int64_t client = participants[indices[j]];
    if (IsAttacker(client)) {
      FEDKIT_ASSIGN_OR_RETURN(updates[j], alone(indices[j]));
      continue;
    }
    examples.push_back(dataset_->TrainExamples(client));
    seeds.push_back(ClientTrainingSeed(options_.seed, round, client));
    batched.push_back(j);
  }
  if (batched.empty()) return updates;
  std::vector<const data::Examples*> group;
  for (const data::Examples& e : examples) group.push_back(&e);
  absl::StatusOr<std::vector<client::ClientUpdate>> trained =
      trainer.Train(from, group, plan, seeds);
  if (!trained.ok()) {
    std::vector<int64_t> clients;
    for (size_t j : batched) clients.push_back(participants[indices[j]]);
    return absl::Status(trained.status().code(),
                        absl::StrCat("clients ", absl::StrJoin(clients, ", "),
                                     " (trained together): ", trained.status().message()));
  }
  for (size_t k = 0; k < batched.size(); ++k) updates[batched[k]] = std::move((*trained)[k]);
  return updates;
}

absl::StatusOr<client::ClientUpdate> Simulator::AttackerUpdate(client::LocalTrainer& trainer,
                                                               absl::Span<const float> from,
                                                               const client::TrainingPlan& plan,
                                                               int round, int64_t client) const {
  const AttackSpec& attack = options_.attack;
  client::ClientUpdate update;
  if (AttackTrains(attack)) {
    data::Examples examples = dataset_->TrainExamples(client);
    if (attack.kind == AttackKind::kLabelFlip) {
      FEDKIT_RETURN_IF_ERROR(FlipLabels(dataset_->info().num_classes, examples));
    }
    client::TrainingPlan unclipped = plan;
    unclipped.clip_norm = 0;  // an attacker does not clip on its device
    FEDKIT_ASSIGN_OR_RETURN(
        update,
        trainer.Train(from, examples, unclipped, ClientTrainingSeed(options_.seed, round, client)));
  } else {
    // Noise instead of training, with the real example count (and no training loss).
    update.delta.assign(from.size(), 0.0f);
    update.num_examples = dataset_->NumTrainExamples(client);
  }
  FEDKIT_RETURN_IF_ERROR(
      ApplyAttack(attack, AttackNoiseSeed(options_.seed, round, client), update.delta));
  update.delta_norm = privacy::L2Norm(update.delta);  // of what it uploads
  return update;
}

bool Simulator::PassesUploadChecks(absl::Span<const float> delta, double clip_norm) {
  for (float v : delta) {
    if (!std::isfinite(v)) return false;
  }
  return !(clip_norm > 0) ||
         privacy::L2Norm(delta) <= clip_norm * (1.0 + aggregation::kDefaultClipTolerance);
}

absl::StatusOr<int64_t> Simulator::CompressAsUploaded(int round, int64_t client,
                                                      const client::TrainingPlan& plan,
                                                      int64_t weight, bool clip_on_device,
                                                      client::ClientUpdate& update) {
  v1::UpdateHeader header;  // as a device fills it (ids as fedkit-client's defaults)
  header.set_client_id(absl::StrFormat("client-%06d", client));
  header.set_assignment_id(std::string(32, 'a'));
  header.set_round(round);
  header.set_num_examples(weight);
  header.set_total_size(static_cast<int64_t>(update.delta.size()));
  header.set_train_loss(update.train_loss);
  if (plan.compression.method == compression::CompressionMethod::kNone) {
    return proto::UploadStreamBytes(header, proto::UploadPayload::kFloats,
                                    static_cast<int64_t>(update.delta.size()));
  }
  // The device's encoder (with its error feedback), then the coordinator's decoding and clip.
  auto it = encoders_.find(client);
  if (it == encoders_.end()) {
    FEDKIT_ASSIGN_OR_RETURN(compression::UpdateEncoder encoder,
                            compression::UpdateEncoder::Create(
                                plan.compression, static_cast<int64_t>(update.delta.size())));
    it = encoders_.emplace(client, std::move(encoder)).first;
  }
  FEDKIT_ASSIGN_OR_RETURN(
      const std::string encoded,
      it->second.Encode(update.delta, clip_on_device ? plan.clip_norm : 0.0,
                        compression::UpdateCompressionSeed(options_.seed, round, client)));
  FEDKIT_ASSIGN_OR_RETURN(update.delta,
                          compression::DecodeUpdate(plan.compression, encoded,
                                                    static_cast<int64_t>(update.delta.size())));
  if (plan.clip_norm > 0) privacy::ClipL2InPlace(absl::MakeSpan(update.delta), plan.clip_norm);
  header.set_compressed_size(static_cast<int64_t>(encoded.size()));
  return proto::UploadStreamBytes(header, proto::UploadPayload::kCompressedBytes,
                                  static_cast<int64_t>(encoded.size()));
}

absl::StatusOr<std::vector<float>> Simulator::ReleaseDpAverage(int round, double clip_norm,
                                                               const DpSum& dp_sum,
                                                               RoundResult& result) {
  const double denominator = static_cast<double>(options_.clients_per_round);
  // The simulator's noise is seeded so that runs are reproducible; a production server must draw
  // it from privacy::SecureRandomSource (anyone who knows the seed can subtract it).
  privacy::SeededRandomSource value_noise(privacy::ValueNoiseSeed(options_.seed, round));
  privacy::SeededRandomSource count_noise(privacy::CountNoiseSeed(options_.seed, round));
  // Distributed: the clients already noised the sum.
  const double stddev = options_.dp.mode == DpMode::kCentral
                            ? privacy_setup_->value_noise_multiplier * clip_norm
                            : 0.0;
  // The coordinator's releases: the discrete Gaussian on the exact sum's grid
  // (aggregation::CentralDpRelease), or on the unmasked sum's (RunDpSecureAggregation noised it).
  FEDKIT_ASSIGN_OR_RETURN(
      std::vector<float> average,
      dp_sum.exact.has_value()
          ? aggregation::CentralDpRelease(*dp_sum.exact, aggregation::UpdateValueBound(clip_norm),
                                          stddev, denominator, value_noise)
          : privacy::CentralDpAverage(dp_sum.sum, 0.0, denominator, value_noise));
  if (adaptive_clipping_.has_value()) {
    privacy::AdaptiveClippingStep step;
    if (options_.dp.mode == DpMode::kDistributed) {
      FEDKIT_ASSIGN_OR_RETURN(
          step, adaptive_clipping_->UpdateFromNoisedCenteredSum(*dp_sum.noised_centered_count));
    } else {
      FEDKIT_ASSIGN_OR_RETURN(
          step, adaptive_clipping_->Update(static_cast<double>(dp_sum.unclipped),
                                           static_cast<double>(dp_sum.reports), count_noise));
    }
    result.unclipped_fraction = step.unclipped_fraction;
  }
  return average;
}

absl::StatusOr<secagg::InMemoryRoundResult> RunSecureRoundOnPool(
    WorkerPool& pool, const secagg::ProtocolConfig& config,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at,
    const SecureRoundTrainFunction& train, const SecureRoundEncodeFunction& encode,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum) {
  const int n = config.num_clients;
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
    return encode(update, i);
  };
  secagg::ParallelFor parallel = [&pool](int64_t count, const secagg::ParallelBody& body) {
    pool.ParallelFor(count, body);
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
  result.secure_aggregation = SummarizeSecureRound(config, outcome, n);
  if (!outcome.status.ok()) result.aborted = std::string(outcome.status.message());
  return outcome;
}

absl::StatusOr<std::optional<Simulator::DpSum>> Simulator::RunDpSecureAggregation(
    int round, double clip_norm, const std::vector<int64_t>& participants,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum) {
  const privacy::DistributedDpEncoding& encoding = *privacy_setup_->encoding;
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::ProtocolConfig config,
      RoundProtocolConfig(round, static_cast<int64_t>(participants.size()), encoding.length()));
  auto encode = [&](const client::ClientUpdate& update,
                    int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
    const int64_t client = participants[i];
    std::optional<bool> unclipped;
    if (encoding.with_count) {
      unclipped = privacy::AdaptiveClipping::UnclippedBit(update.delta_norm, clip_norm) == 1;
    }
    // Rounding and noise streams per (round, client): a real device draws its noise from
    // privacy::SecureRandomSource.
    privacy::SeededRandomSource rounding(
        secagg::StochasticRoundingSeed(options_.seed, round, client));
    privacy::SeededRandomSource noise(privacy::ClientNoiseSeed(options_.seed, round, client));
    return privacy::EncodeDistributedDpUpdate(encoding, update.delta, clip_norm, unclipped,
                                              rounding, noise);
  };
  FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                          RunSecureRoundOnPool(*pool_, config, drop_at, train, encode, result,
                                               trained, weighted_loss, norm_sum));
  if (!outcome.status.ok()) return std::optional<DpSum>();
  const int64_t survivors = static_cast<int64_t>(outcome.included.size());
  if (options_.dp.mode == DpMode::kDistributed && encoding.effective_noise_multiplier > 0 &&
      survivors < encoding.min_surviving_clients) {
    // A real server aborts here, before unmasking: fewer shares of noise than the privacy
    // guarantee needs.
    result.aborted = absl::StrCat("only ", survivors, " survivors, fewer than the ",
                                  encoding.min_surviving_clients,
                                  " the distributed noise is sized for (--dp-dropout-tolerance)");
    return std::optional<DpSum>();
  }
  // Central: the server's discrete Gaussian on the unmasked integer sum, as the coordinator adds it
  // (the same seeded stream ReleaseDpAverage would draw from).
  privacy::SeededRandomSource value_noise(privacy::ValueNoiseSeed(options_.seed, round));
  FEDKIT_ASSIGN_OR_RETURN(privacy::DistributedDpSum decoded,
                          options_.dp.mode == DpMode::kCentral
                              ? privacy::DecodeDistributedDpSumWithCentralNoise(
                                    encoding, outcome.sum, clip_norm,
                                    privacy_setup_->value_noise_multiplier, value_noise)
                              : privacy::DecodeDistributedDpSum(encoding, outcome.sum, clip_norm));
  DpSum dp_sum;
  dp_sum.sum = std::move(decoded.sum);
  dp_sum.reports = survivors;
  if (decoded.noised_centered_count.has_value()) {
    if (options_.dp.mode == DpMode::kDistributed) {
      dp_sum.noised_centered_count = decoded.noised_centered_count;
    } else {
      // Central: the count is exact (count - survivors / 2); the server noises it.
      dp_sum.unclipped =
          std::llround(*decoded.noised_centered_count + 0.5 * static_cast<double>(survivors));
    }
  }
  return std::optional<DpSum>(std::move(dp_sum));
}

absl::StatusOr<std::optional<std::vector<float>>> Simulator::RunSecureAggregation(
    int round, const std::vector<int64_t>& participants,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum) {
  const compression::CompressionSpec& spec = options_.plan.compression;
  if (spec.method != compression::CompressionMethod::kNone) {
    return RunCompressedSecureAggregation(round, participants, drop_at, train, result, trained,
                                          weighted_loss, norm_sum);
  }
  FEDKIT_ASSIGN_OR_RETURN(secagg::ProtocolConfig config,
                          RoundProtocolConfig(round, static_cast<int64_t>(participants.size()),
                                              static_cast<int64_t>(global_.size()) + 1));
  auto encode = [&](const client::ClientUpdate& update,
                    int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
    const int64_t weight = std::min(update.num_examples, encoding_->max_weight);
    return secagg::EncodeWeightedUpdate(
        *encoding_, update.delta, weight,
        secagg::StochasticRoundingSeed(options_.seed, round, participants[i]));
  };
  FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                          RunSecureRoundOnPool(*pool_, config, drop_at, train, encode, result,
                                               trained, weighted_loss, norm_sum));
  if (!outcome.status.ok()) return std::optional<std::vector<float>>();
  FEDKIT_ASSIGN_OR_RETURN(secagg::DecodedSum decoded, secagg::DecodeSum(*encoding_, outcome.sum));
  if (decoded.total_weight <= 0) {
    result.aborted = "secure aggregation summed zero weight";
    return std::optional<std::vector<float>>();
  }
  return std::optional<std::vector<float>>(decoded.Average());
}

absl::StatusOr<std::optional<std::vector<float>>> Simulator::RunCompressedSecureAggregation(
    int round, const std::vector<int64_t>& participants,
    const std::vector<std::optional<secagg::ClientPhase>>& drop_at, const TrainFunction& train,
    RoundResult& result, int64_t& trained, double& weighted_loss, double& norm_sum) {
  const compression::CompressionSpec& spec = options_.plan.compression;
  const int64_t dim = static_cast<int64_t>(global_.size());
  const uint64_t shared_seed = compression::SharedCompressionSeed(options_.seed, round);
  const int64_t max_weight = encoding_->max_weight;
  auto weight_of = [&](const client::ClientUpdate& update) {
    return std::min(update.num_examples, max_weight);
  };
  if (spec.method == compression::CompressionMethod::kRandK) {
    // The round's clients keep the same k coordinates; each sends their values (after its error
    // feedback) in the usual fixed point, so the masked vector has k + 1 entries.
    const int64_t k = compression::KeptCoordinates(spec, dim);
    const std::vector<int64_t> kept = compression::RandomKIndices(shared_seed, dim, k);
    for (int64_t client : participants) {  // made here: the pool's workers only look them up
      if (!encoders_.contains(client)) {
        FEDKIT_ASSIGN_OR_RETURN(compression::UpdateEncoder encoder,
                                compression::UpdateEncoder::Create(spec, dim));
        encoders_.emplace(client, std::move(encoder));
      }
    }
    FEDKIT_ASSIGN_OR_RETURN(
        secagg::ProtocolConfig config,
        RoundProtocolConfig(round, static_cast<int64_t>(participants.size()), k + 1));
    auto encode = [&](const client::ClientUpdate& update,
                      int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
      FEDKIT_ASSIGN_OR_RETURN(std::vector<float> values,
                              compression::RandomKValuesForSecureAggregation(
                                  encoders_.at(participants[i]), update.delta,
                                  options_.plan.clip_norm, shared_seed, kept));
      return secagg::EncodeWeightedUpdate(
          *encoding_, values, weight_of(update),
          secagg::StochasticRoundingSeed(options_.seed, round, participants[i]));
    };
    FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                            RunSecureRoundOnPool(*pool_, config, drop_at, train, encode, result,
                                                 trained, weighted_loss, norm_sum));
    if (!outcome.status.ok()) return std::optional<std::vector<float>>();
    FEDKIT_ASSIGN_OR_RETURN(secagg::DecodedSum decoded, secagg::DecodeSum(*encoding_, outcome.sum));
    if (decoded.total_weight <= 0) {
      result.aborted = "secure aggregation summed zero weight";
      return std::optional<std::vector<float>>();
    }
    std::vector<float> average(dim, 0.0f);
    const std::vector<float> kept_average = decoded.Average();
    for (int64_t j = 0; j < k; ++j) average[kept[j]] = kept_average[j];
    return std::optional<std::vector<float>>(std::move(average));
  }
  // quantize / quantize-rotate: the shared rotation and scale of compression/secagg_quantization.h,
  // with a modulus of bits + ceil(log2(clients)) bits.
  FEDKIT_ASSIGN_OR_RETURN(
      const compression::SecAggQuantization q,
      compression::ChooseSecAggQuantization(spec, dim, options_.plan.clip_norm, max_weight,
                                            encoding_->max_clients, shared_seed));
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::ProtocolConfig config,
      RoundProtocolConfig(round, static_cast<int64_t>(participants.size()), dim + 1));
  config.modulus_bits = q.modulus_bits;
  auto encode = [&](const client::ClientUpdate& update,
                    int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
    return compression::EncodeForSecAgg(
        q, update.delta, weight_of(update),
        secagg::StochasticRoundingSeed(options_.seed, round, participants[i]));
  };
  FEDKIT_ASSIGN_OR_RETURN(secagg::InMemoryRoundResult outcome,
                          RunSecureRoundOnPool(*pool_, config, drop_at, train, encode, result,
                                               trained, weighted_loss, norm_sum));
  if (!outcome.status.ok()) return std::optional<std::vector<float>>();
  FEDKIT_ASSIGN_OR_RETURN(compression::SecAggQuantizedSum decoded,
                          compression::DecodeSecAggSum(q, outcome.sum));
  if (!(decoded.total_weight > 0)) {
    result.aborted = "secure aggregation summed zero weight";
    return std::optional<std::vector<float>>();
  }
  return std::optional<std::vector<float>>(decoded.Average());
}

uint64_t Simulator::ClientTrainingSeed(uint64_t run_seed, int round, int64_t client) {
  return client::LocalTrainingSeed(run_seed, round, client);
}

namespace {

// One process's share of a round, for MergeAcrossProcesses.
struct PartialTotals {
  int64_t examples = 0;
  int64_t trained = 0;
  int64_t reports = 0;
  int64_t unclipped = 0;
  int64_t attackers = 0;
  int64_t refused = 0;
  double weighted_loss = 0;
  double norm_sum = 0;
};

}  // namespace

absl::Status Simulator::MergeAcrossProcesses(std::unique_ptr<aggregation::Aggregator>& aggregate,
                                             DpSum& dp_sum, int64_t& examples, int64_t& trained,
                                             double& weighted_loss, double& norm_sum,
                                             int64_t& attackers, int64_t& refused) {
  const PartialTotals mine{examples,  trained, dp_sum.reports, dp_sum.unclipped,
                           attackers, refused, weighted_loss,  norm_sum};
  std::string bytes(sizeof(mine), '\0');
  std::memcpy(bytes.data(), &mine, sizeof(mine));
  bytes += aggregate->Serialize();
  FEDKIT_ASSIGN_OR_RETURN(std::vector<std::string> all, collective_->AllGather(bytes));
  std::unique_ptr<aggregation::Aggregator> merged = aggregate->CloneEmpty();
  PartialTotals sum;
  for (const std::string& part : all) {  // in rank order: the metrics' sums are deterministic
    if (part.size() < sizeof(PartialTotals)) {
      return absl::InternalError("a rank sent a partial result shorter than its header");
    }
    PartialTotals t;
    std::memcpy(&t, part.data(), sizeof(t));
    FEDKIT_RETURN_IF_ERROR(
        merged->MergeSerialized(absl::string_view(part).substr(sizeof(PartialTotals))));
    sum.examples += t.examples;
    sum.trained += t.trained;
    sum.reports += t.reports;
    sum.unclipped += t.unclipped;
    sum.attackers += t.attackers;
    sum.refused += t.refused;
    sum.weighted_loss += t.weighted_loss;
    sum.norm_sum += t.norm_sum;
  }
  aggregate = std::move(merged);
  examples = sum.examples;
  trained = sum.trained;
  dp_sum.reports = sum.reports;
  dp_sum.unclipped = sum.unclipped;
  attackers = sum.attackers;
  refused = sum.refused;
  weighted_loss = sum.weighted_loss;
  norm_sum = sum.norm_sum;
  return absl::OkStatus();
}

absl::StatusOr<models::EvalSums> Simulator::Evaluate() {
  return EvaluateOnPool(*pool_, trainers_, global_, dataset_->EvalExamples());
}

absl::StatusOr<std::shared_ptr<models::Model>> Simulator::GlobalModel() const {
  FEDKIT_ASSIGN_OR_RETURN(auto model, models::CreateModel(options_.model, dataset_->info(), 0));
  FEDKIT_RETURN_IF_ERROR(models::AssignParameters(global_, *model));
  return model;
}

}  // namespace fedkit::simulation
