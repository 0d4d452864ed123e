#include "server/round_coordinator.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "aggregation/aggregator.h"
#include "aggregation/robust.h"
#include "compression/secagg_compression.h"
#include "compression/secagg_quantization.h"
#include "compression/seeds.h"
#include "compression/update_codec.h"
#include "core/retry_after.h"
#include "core/sampling.h"
#include "core/status_macros.h"
#include "privacy/clipping.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/wire_sizes.h"
#include "server/client_sampler.h"

namespace fedkit::server {
namespace {

constexpr int kCheckpointFormatVersion = 1;

// SHA-256 of the example count and the delta's bytes: how a retried upload is recognised without
// keeping the delta. Hashes the delta in place (no copy), then the digest with the count.
artifacts::Sha256Digest UpdateDigest(int64_t num_examples, absl::Span<const float> delta) {
  const artifacts::Sha256Digest of_delta = artifacts::Sha256(absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(delta.data()), delta.size() * sizeof(float)));
  std::array<uint8_t, 32 + sizeof(int64_t)> message;
  std::copy(of_delta.begin(), of_delta.end(), message.begin());
  for (size_t i = 0; i < sizeof(int64_t); ++i) {
    message[32 + i] = static_cast<uint8_t>(static_cast<uint64_t>(num_examples) >> (8 * i));
  }
  return artifacts::Sha256(absl::MakeConstSpan(message));
}

// A fresh assignment id: 128 bits from the CSPRNG, as 32 hex digits. It is a capability (the
// download, upload and secure aggregation of the assignment name it), so it must not be guessable.
absl::StatusOr<std::string> NewAssignmentId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("the CSPRNG (OpenSSL RAND_bytes) failed to make an assignment id");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

bool IsClientIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::vector<std::string> SingleClientInfluenceWarnings(const CoordinatorOptions& options) {
  std::vector<std::string> warnings;
  if (options.dp.has_value()) return warnings;  // DP clips every delta and weighs each client 1
  // The updates one average is made of: a round's, or a FedBuff buffer's.
  const int64_t k =
      options.fedbuff.has_value() ? options.fedbuff->buffer_size : options.clients_per_round;
  const double cap = static_cast<double>(options.max_examples_per_client);
  // One client claiming the cap against K - 1 claiming one example each.
  const double share = cap / (cap + static_cast<double>(k - 1));
  if (!(options.plan.clip_norm() > 0)) {
    warnings.push_back(absl::StrFormat(
        "`clip_norm` is 0: one client's delta is bounded only by `max_update_value` (%g per "
        "coordinate), and with a weight of up to `max_examples_per_client` = %d against %d "
        "clients of one example each it holds %.4f%% of the round's average: one client can move "
        "every coordinate of the model by up to about %g times the server learning rate",
        options.max_update_value, options.max_examples_per_client, k - 1, 100 * share,
        options.max_update_value * share));
  }
  if (options.max_examples_per_client >= kLargeWeightCap) {
    warnings.push_back(absl::StrFormat(
        "`max_examples_per_client` = %d: one client's weight can be up to %d times another's; "
        "against %d clients of one example each it holds %.4f%% of the round's average",
        options.max_examples_per_client, options.max_examples_per_client, k - 1, 100 * share));
  }
  return warnings;
}

absl::Status ValidateClientId(absl::string_view client_id) {
  if (client_id.empty() || client_id.size() > 128 ||
      !std::all_of(client_id.begin(), client_id.end(), IsClientIdChar)) {
    return absl::InvalidArgumentError(
        "client_id must be 1 to 128 characters of letters, digits, '.', '_' or '-'");
  }
  return absl::OkStatus();
}

namespace {

// How long a device that cannot hold the model is told to wait: the model does not shrink.
constexpr absl::Duration kModelTooLargeRetry = absl::Minutes(10);

// The most model bytes a device says it holds: the smaller of its positive limits; 0 = no limit.
int64_t DeviceModelLimit(const v1::ClientCapabilities& capabilities) {
  int64_t limit = 0;
  for (int64_t l : {capabilities.max_model_bytes(), capabilities.memory_bytes()}) {
    if (l > 0) limit = limit == 0 ? l : std::min(limit, l);
  }
  return limit;
}

// What a device must hold: 4 bytes per parameter, or the artifact's size if larger (the device
// library's client::ModelBytes is the same rule).
int64_t ModelBytesOf(int64_t model_size, const std::optional<v1::ModelArtifact>& artifact) {
  const int64_t parameter_bytes = model_size > std::numeric_limits<int64_t>::max() / 4
                                      ? std::numeric_limits<int64_t>::max()
                                      : 4 * model_size;
  return std::max(parameter_bytes, artifact.has_value() ? artifact->size_bytes() : int64_t{0});
}

}  // namespace

absl::Status ValidateDpPopulation(int64_t population, int64_t clients_per_round,
                                  double over_select) {
  const int64_t target = OverSelectedTarget(clients_per_round, over_select);
  if (population >= target) return absl::OkStatus();
  // q = assigned / pool must stay <= 1 and at most what the accountant assumes: a DP round waits
  // for `population` devices, of which it assigns the over-selected target.
  absl::Status status = absl::InvalidArgumentError(absl::StrCat(
      "`population` (", population,
      ") must be at least the devices a DP round assigns, ceil(`clients_per_round` x (1 + "
      "`over_select`)) = ",
      target, ": a DP round samples them only from at least `population` waiting devices"));
  status.SetPayload(privacy::kDpFieldPayload, absl::Cord("population"));
  return status;
}

absl::StatusOr<std::unique_ptr<RoundCoordinator>> RoundCoordinator::Create(
    const CoordinatorOptions& options, ParameterLayout layout,
    std::vector<float> initial_parameters, CoordinatorHooks hooks) {
  if (options.rounds < 1) return absl::InvalidArgumentError("rounds must be >= 1");
  if (options.clients_per_round < 1) {
    return absl::InvalidArgumentError("clients per round must be >= 1");
  }
  if (options.min_clients < 1 || options.min_clients > options.clients_per_round) {
    return absl::InvalidArgumentError(absl::StrCat("min clients (", options.min_clients,
                                                   ") must be between 1 and clients per round (",
                                                   options.clients_per_round, ")"));
  }
  if (options.min_available < 0) {
    return absl::InvalidArgumentError("min available must be >= 0");
  }
  if (options.plan.max_steps() < 0) {
    return absl::InvalidArgumentError("the plan's max_steps must be >= 0");
  }
  if (!(options.plan.max_seconds() >= 0) || std::isinf(options.plan.max_seconds())) {
    return absl::InvalidArgumentError("the plan's max_seconds must be finite and >= 0");
  }
  if (!(options.over_select >= 0) || options.over_select > 10) {
    return absl::InvalidArgumentError("over-select must be a fraction in [0, 10]");
  }
  if (options.round_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("round timeout must be positive");
  }
  absl::StatusOr<compression::CompressionSpec> compression =
      proto::CompressionFromProto(options.plan.compression());
  if (!compression.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan compression: ", compression.status().message()));
  }
  if (options.secure_aggregation.has_value()) {
    FEDKIT_RETURN_IF_ERROR(
        compression::CheckSecAggCompression(*compression, options.dp.has_value()));
  }
  if (options.aggregator.kind != aggregation::AggregatorKind::kMean) {
    const std::string name = aggregation::FormatAggregatorSpec(options.aggregator);
    if (options.secure_aggregation.has_value() || options.dp.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`aggregator` ", name,
          " needs every update in the clear: it cannot run with secure aggregation or DP (their "
          "rounds aggregate by mean)"));
    }
    // A round commits with at most clients_per_round updates.
    const int64_t needed = 2 * options.aggregator.attackers + 3;
    if ((options.aggregator.kind == aggregation::AggregatorKind::kKrum ||
         options.aggregator.kind == aggregation::AggregatorKind::kMultiKrum) &&
        options.clients_per_round < needed) {
      return absl::InvalidArgumentError(
          absl::StrCat("`aggregator` ", name, " needs at least 2F + 3 = ", needed,
                       " updates per round: `clients_per_round` is ", options.clients_per_round));
    }
  }
  if (options.fedbuff.has_value()) {
    FEDKIT_RETURN_IF_ERROR(aggregation::ValidateFedBuffSettings(*options.fedbuff));
    // Each refusal names the field: a FedBuff buffer is a weighted mean of updates that arrive
    // one at a time (or, under secure aggregation, of one cohort's).
    const std::pair<bool, const char*> unsupported[] = {
        {options.dp.has_value(), "dp"},
        {options.aggregator.kind != aggregation::AggregatorKind::kMean, "aggregator"},
        // Under secure aggregation it over-selects each cohort.
        {options.over_select != 0 && !options.secure_aggregation.has_value(), "over_select"},
    };
    for (const auto& [set, field] : unsupported) {
      if (set) {
        return absl::InvalidArgumentError(
            absl::StrCat("`fedbuff` does not run with `", field,
                         "`: its buffers aggregate updates by weighted mean, each as it "
                         "arrives or one cohort's, and assign devices as slots free up"));
      }
    }
    const int64_t cohort = OverSelectedTarget(options.fedbuff->buffer_size, options.over_select);
    if (options.secure_aggregation.has_value() && options.fedbuff->concurrency < cohort) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`concurrency` (", options.fedbuff->concurrency, ") is below ",
          cohort == options.fedbuff->buffer_size
              ? absl::StrCat("`buffer_size` (", cohort, ")")
              : absl::StrCat("the cohort of `buffer_size` over-selected by `over_select` (", cohort,
                             ")"),
          ": with `secure_aggregation`, `fedbuff` runs each buffer as a cohort of devices "
          "training at once"));
    }
  }
  if (options.max_examples_per_client < 1 ||
      options.max_examples_per_client > aggregation::kMaxWeightLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max examples per client must be in [1, 2^29], not ", options.max_examples_per_client));
  }
  if (!std::isfinite(options.max_update_value) || options.max_update_value <= 0) {
    return absl::InvalidArgumentError("max update value must be finite and positive");
  }
  if (static_cast<int64_t>(initial_parameters.size()) != layout.size() || layout.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("initial parameters have ",
                                                   initial_parameters.size(),
                                                   " values, the layout ", layout.size()));
  }
  FEDKIT_ASSIGN_OR_RETURN(
      auto optimizer, aggregation::MakeServerOptimizer(options.server_optimizer, layout.size()));
  std::optional<secagg::FixedPointEncoding> encoding;
  std::optional<privacy::DpSetup> dp_setup;
  std::optional<privacy::DistributedDpEncodingOptions> dp_encoding_options;
  // The most devices one aggregate sums (FedBuff: a buffer's, or a secure cohort's).
  const int64_t target = OverSelectedTarget(
      options.fedbuff.has_value() ? options.fedbuff->buffer_size : options.clients_per_round,
      options.over_select);
  if (options.dp.has_value()) {
    const privacy::DpSettings& dp = *options.dp;
    if (dp.mode == privacy::DpMode::kNone) {
      return absl::InvalidArgumentError("DP settings given with mode none");
    }
    // A deployment always accounts: z = 0 (allowed in simulations) would release without
    // privacy. Everything else is privacy::ValidateDpSettings', through SetUpDp below.
    if (!(dp.noise_multiplier > 0) || !std::isfinite(dp.noise_multiplier)) {
      absl::Status status = absl::InvalidArgumentError(absl::StrCat(
          "the coordinator needs `noise_multiplier` > 0 under DP, got ", dp.noise_multiplier));
      status.SetPayload(privacy::kDpFieldPayload, absl::Cord("noise_multiplier"));
      return status;
    }
    FEDKIT_RETURN_IF_ERROR(
        ValidateDpPopulation(options.population, options.clients_per_round, options.over_select));
    privacy::DpRoundShape shape;
    shape.clients_per_round = options.clients_per_round;
    shape.population = options.population;
    shape.sampled_per_round = target;
    shape.dim = layout.size();
    shape.clip_norm = options.plan.clip_norm();
    if (options.secure_aggregation.has_value()) {
      shape.secure_aggregation_modulus_bits = options.secure_aggregation->modulus_bits;
      shape.expected_dropout_rate = options.secure_aggregation->design_dropout_rate;
    }
    FEDKIT_ASSIGN_OR_RETURN(dp_setup, privacy::SetUpDp(dp, shape));
    if (dp_setup->encoding.has_value()) {
      dp_encoding_options = privacy::EncodingOptions(dp, shape, dp_setup->clipped_count_stddev);
    }
  }
  if (options.secure_aggregation.has_value()) {
    const SecureAggregationSettings& secure = *options.secure_aggregation;
    if (!(options.plan.clip_norm() > 0)) {
      return absl::InvalidArgumentError(
          "secure aggregation needs a clip norm > 0 (the fixed-point range is derived from it)");
    }
    if (secure.phase_timeout <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("secure aggregation phase timeout must be positive");
    }
    // Refuse at configuration time anything the round could not run with.
    if (!dp_setup.has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(
          encoding, secagg::ChooseEncoding(secure.modulus_bits, target, options.plan.clip_norm(),
                                           options.max_examples_per_client));
    }
    const int64_t vector_length =
        dp_setup.has_value() ? dp_setup->encoding->length() : layout.size() + 1;
    // Every round size the coordinator may start: min_clients (the selection window ended with
    // that many waiting) to the over-selected target; FedBuff's cohorts are of buffer_size.
    const std::vector<int64_t> sizes =
        options.fedbuff.has_value()
            ? std::vector<int64_t>{target}
            : std::vector<int64_t>{options.min_clients, options.clients_per_round, target};
    for (int64_t n : sizes) {
      FEDKIT_RETURN_IF_ERROR(
          secagg::MakeProtocolConfig(secure, static_cast<int>(n), vector_length).status());
    }
  } else if (options.dp.has_value() && options.dp->mode == privacy::DpMode::kDistributed) {
    return absl::InvalidArgumentError("distributed DP needs secure aggregation");
  }
  auto coordinator = std::unique_ptr<RoundCoordinator>(
      new RoundCoordinator(options, std::move(layout), std::move(initial_parameters),
                           std::move(hooks), std::move(optimizer)));
  coordinator->secagg_encoding_ = encoding;
  coordinator->compression_ = *compression;
  if (encoding.has_value() &&
      (compression->method == compression::CompressionMethod::kQuantize ||
       compression->method == compression::CompressionMethod::kQuantizeRotate)) {
    // The round's rotation seed is set when it starts (SharedCompressionSeed).
    FEDKIT_ASSIGN_OR_RETURN(coordinator->secagg_quantization_,
                            compression::ChooseSecAggQuantization(
                                *compression, coordinator->layout_.size(), encoding->clip_norm,
                                encoding->max_weight, encoding->max_clients, /*rotation_seed=*/0));
  }
  coordinator->dp_setup_ = dp_setup;
  coordinator->dp_encoding_options_ = dp_encoding_options;
  {
    absl::MutexLock lock(&coordinator->mu_);
    coordinator->round_clip_ = options.plan.clip_norm();
    if (dp_setup.has_value() && dp_setup->adaptive_clipping.has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(coordinator->adaptive_clipping_,
                              privacy::AdaptiveClipping::Create(*dp_setup->adaptive_clipping));
    }
    if (dp_setup.has_value() && !options.dp_noise_seed.has_value()) {
      FEDKIT_ASSIGN_OR_RETURN(coordinator->value_noise_, privacy::SecureRandomSource::Create());
      FEDKIT_ASSIGN_OR_RETURN(coordinator->count_noise_, privacy::SecureRandomSource::Create());
      FEDKIT_ASSIGN_OR_RETURN(coordinator->sampling_random_, privacy::SecureRandomSource::Create());
    } else if (dp_setup.has_value()) {
      // Seeded: StartRoundLocked reseeds both per round; this one lets the check below build an
      // aggregate.
      coordinator->value_noise_ = std::make_unique<privacy::SeededRandomSource>(
          privacy::ValueNoiseSeed(*options.dp_noise_seed, 1));
    }
    // Refuse now an aggregate no round could build (e.g. a range the fixed point cannot hold).
    if (!options.secure_aggregation.has_value()) {
      FEDKIT_RETURN_IF_ERROR(coordinator->NewAggregateLocked().status());
    }
  }
  return coordinator;
}

RoundCoordinator::RoundCoordinator(const CoordinatorOptions& options, ParameterLayout layout,
                                   std::vector<float> initial_parameters, CoordinatorHooks hooks,
                                   std::unique_ptr<aggregation::ServerOptimizer> optimizer)
    : options_(options),
      layout_(std::move(layout)),
      layout_proto_(LayoutToProto(layout_)),
      hooks_(std::move(hooks)),
      target_assignments_(OverSelectedTarget(options.clients_per_round, options.over_select)),
      start_at_(std::max({target_assignments_, options.min_available,
                          options.dp.has_value() ? options.population : int64_t{0}})),
      model_bytes_(ModelBytesOf(static_cast<int64_t>(layout_.size()), options.artifact)),
      global_(std::make_shared<const std::vector<float>>(std::move(initial_parameters))),
      optimizer_(std::move(optimizer)),
      encoded_models_(options.download_encoding) {}

absl::Status RoundCoordinator::Restore(const v1::Checkpoint& checkpoint) {
  absl::MutexLock lock(&mu_);
  if (checkpoint.format_version() != kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint format version ",
                                                      checkpoint.format_version(), " is not ",
                                                      kCheckpointFormatVersion));
  }
  if (checkpoint.model_name() != options_.model_name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint is of model '", checkpoint.model_name(), "', not '", options_.model_name, "'"));
  }
  if (checkpoint.global_parameters_size() != layout_.size() ||
      checkpoint.layout().SerializeAsString() != LayoutToProto(layout_).SerializeAsString()) {
    return absl::FailedPreconditionError("checkpoint's parameter layout differs from the model's");
  }
  if (checkpoint.server_optimizer() !=
      aggregation::ServerOptimizerKindName(options_.server_optimizer.kind)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint was written with server optimizer '", checkpoint.server_optimizer(), "'"));
  }
  if (checkpoint.rounds_completed() < 0 || checkpoint.rounds_completed() > options_.rounds) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint has ", checkpoint.rounds_completed(),
                     " rounds completed; this run has ", options_.rounds));
  }
  if (checkpoint.run_seed() != options_.plan.run_seed()) {
    return absl::FailedPreconditionError("checkpoint was written with another --seed");
  }
  // The CRC only says the file is as written; a model that is not finite would be sent to every
  // device and poison every later round (found by fuzz/checkpoint_fuzz.cc).
  for (int i = 0; i < checkpoint.global_parameters_size(); ++i) {
    if (!std::isfinite(checkpoint.global_parameters(i))) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint's global parameter ", i,
                                                     " is not finite (",
                                                     checkpoint.global_parameters(i), ")"));
    }
  }
  const auto& state = checkpoint.server_optimizer_state();
  FEDKIT_RETURN_IF_ERROR(optimizer_->RestoreState(absl::MakeConstSpan(state.data(), state.size())));
  global_ = std::make_shared<const std::vector<float>>(checkpoint.global_parameters().begin(),
                                                       checkpoint.global_parameters().end());
  rounds_completed_ = checkpoint.rounds_completed();
  history_.clear();
  for (const auto& r : checkpoint.history()) {
    RoundOutcome outcome;
    outcome.round = r.round();
    outcome.participants = r.participants();
    outcome.assigned = r.assigned();
    outcome.examples = r.examples();
    outcome.train_loss = r.train_loss();
    outcome.upload_bytes = r.upload_bytes();
    outcome.download_bytes = r.download_bytes();
    outcome.seconds = r.seconds();
    if (r.accuracy() >= 0) {
      outcome.accuracy = r.accuracy();
      outcome.loss = r.loss();
    }
    if (r.dp_sampling_rate() > 0) {
      outcome.sampling_rate = r.dp_sampling_rate();
      outcome.sampling_seed = r.dp_sampling_seed();
    }
    if (r.has_device_telemetry()) outcome.device_telemetry = r.device_telemetry();
    history_.push_back(outcome);
  }
  if (options_.dp.has_value()) {
    if (checkpoint.dp_rdp_size() == 0 && rounds_completed_ > 0) {
      return absl::FailedPreconditionError(
          "checkpoint has no privacy accountant state: it was written without DP");
    }
    if (adaptive_clipping_.has_value() && rounds_completed_ > 0) {
      if (!(checkpoint.dp_clip_norm() > 0)) {
        return absl::FailedPreconditionError(
            "checkpoint has no adaptive clipping state: it was written with a fixed clip");
      }
      FEDKIT_RETURN_IF_ERROR(adaptive_clipping_->Restore(
          {.clip_norm = checkpoint.dp_clip_norm(), .rounds = checkpoint.dp_clip_rounds()}));
    }
    if (checkpoint.dp_rdp_size() > 0) {
      FEDKIT_RETURN_IF_ERROR(accountant_.Restore(
          absl::MakeConstSpan(checkpoint.dp_rdp().data(), checkpoint.dp_rdp_size())));
    }
    for (int i = 0; i < checkpoint.history_size() && i < static_cast<int>(history_.size()); ++i) {
      history_[i].epsilon = checkpoint.history(i).epsilon();
    }
  } else if (checkpoint.dp_rdp_size() > 0) {
    return absl::FailedPreconditionError(
        "checkpoint was written with DP; resume with the same --dp settings");
  }
  phase_ = rounds_completed_ >= options_.rounds ? Phase::kFinished : Phase::kWaiting;
  if (phase_ == Phase::kWaiting) BudgetExhaustedLocked();
  return absl::OkStatus();
}

absl::Status RoundCoordinator::ResumePrivacyLedger(absl::Span<const PrivacyLedgerRecord> released,
                                                   bool allow_privacy_rollback) {
  absl::MutexLock lock(&mu_);
  if (!options_.dp.has_value()) {
    return absl::FailedPreconditionError("a privacy ledger needs DP");
  }
  int64_t max_round = 0;
  for (const PrivacyLedgerRecord& record : released) max_round = std::max(max_round, record.round);
  if (max_round > rounds_completed_ && !allow_privacy_rollback) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the privacy ledger records round %d as released, but the checkpoint resumes after round "
        "%d: re-running rounds %d-%d would release them again with their privacy unaccounted (the "
        "newest checkpoint was lost or damaged?). Restore the newest checkpoint, or set "
        "`allow_privacy_rollback` to re-run them, charging them again on top of the ledger's "
        "spent privacy",
        max_round, rounds_completed_, rounds_completed_ + 1, max_round));
  }
  privacy::RdpAccountant ledger;
  for (const PrivacyLedgerRecord& record : released) {
    FEDKIT_RETURN_IF_ERROR(ledger.Compose(record.sampling_rate, record.noise_multiplier));
  }
  std::vector<double> rdp = accountant_.rdp();
  for (size_t i = 0; i < rdp.size(); ++i) rdp[i] = std::max(rdp[i], ledger.rdp()[i]);
  FEDKIT_RETURN_IF_ERROR(accountant_.Restore(rdp));
  if (phase_ == Phase::kWaiting) BudgetExhaustedLocked();
  return absl::OkStatus();
}

bool RoundCoordinator::BudgetExhaustedLocked() {
  if (!options_.dp.has_value() || !options_.dp->target_epsilon.has_value()) {
    return false;
  }
  const privacy::DpSettings& dp = *options_.dp;
  // The next round's rate is at most the over-selected target over the population.
  absl::StatusOr<privacy::EpsilonAtDelta> next = accountant_.EpsilonAfter(
      dp_setup_->sampling_rate, dp_setup_->accounting_noise_multiplier, 1, dp.delta);
  if (next.ok() && next->epsilon <= *dp.target_epsilon) return false;
  const int64_t round = rounds_completed_ + 1;
  absl::StatusOr<privacy::EpsilonAtDelta> spent = accountant_.Epsilon(dp.delta);
  stop_reason_ = absl::StrFormat(
      "privacy budget: stopping before round %d, after which epsilon would be %.4f > target %.4g "
      "(delta %g); last round within budget: %d (epsilon %.4f)",
      round, next.ok() ? next->epsilon : -1.0, *dp.target_epsilon, dp.delta, round - 1,
      spent.ok() ? spent->epsilon : 0.0);
  phase_ = Phase::kFinished;
  return true;
}

absl::Status RoundCoordinator::UpdateClipLocked(int64_t unclipped, int64_t reports,
                                                std::optional<double> noised_centered_count,
                                                RoundOutcome& outcome) {
  if (!adaptive_clipping_.has_value()) return absl::OkStatus();
  outcome.clip_norm = round_clip_;
  absl::StatusOr<privacy::AdaptiveClippingStep> step =
      noised_centered_count.has_value()
          ? adaptive_clipping_->UpdateFromNoisedCenteredSum(*noised_centered_count)
          : adaptive_clipping_->Update(static_cast<double>(unclipped), static_cast<double>(reports),
                                       *count_noise_);
  if (!step.ok()) return step.status();
  outcome.unclipped_fraction = step->unclipped_fraction;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> RoundCoordinator::ReleaseDpSumLocked(
    absl::Span<const uint64_t> sum, int64_t inputs, RoundOutcome& outcome) {
  const privacy::DistributedDpEncoding& encoding = *dp_setup_->encoding;
  const bool central = options_.dp->mode == privacy::DpMode::kCentral;
  // Central: the discrete Gaussian on the unmasked integer sum. Distributed: the devices already
  // noised the sum (and the count).
  FEDKIT_ASSIGN_OR_RETURN(
      privacy::DistributedDpSum decoded,
      central ? privacy::DecodeDistributedDpSumWithCentralNoise(
                    encoding, sum, round_clip_, dp_setup_->value_noise_multiplier, *value_noise_)
              : privacy::DecodeDistributedDpSum(encoding, sum, round_clip_));
  FEDKIT_ASSIGN_OR_RETURN(
      std::vector<float> average,
      privacy::CentralDpAverage(decoded.sum, 0.0, static_cast<double>(options_.clients_per_round),
                                *value_noise_));
  if (decoded.noised_centered_count.has_value()) {
    if (central) {
      // The count is exact (sum of b - 1/2 over the inputs): noised by UpdateClipLocked.
      const int64_t unclipped =
          std::llround(*decoded.noised_centered_count + 0.5 * static_cast<double>(inputs));
      FEDKIT_RETURN_IF_ERROR(UpdateClipLocked(unclipped, inputs, std::nullopt, outcome));
    } else {
      FEDKIT_RETURN_IF_ERROR(UpdateClipLocked(0, inputs, decoded.noised_centered_count, outcome));
    }
  }
  return average;
}

absl::StatusOr<std::unique_ptr<aggregation::Aggregator>> RoundCoordinator::NewAggregateLocked() {
  const double bound = aggregation::UpdateValueBound(round_clip_, options_.clip_tolerance,
                                                     options_.max_update_value);
  if (options_.dp.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(
        auto aggregate, aggregation::UnitWeightDpAggregator::Create(
                            layout_.size(), bound, dp_setup_->value_noise_multiplier * round_clip_,
                            static_cast<double>(options_.clients_per_round), value_noise_.get()));
    return std::unique_ptr<aggregation::Aggregator>(std::move(aggregate));
  }
  // mean is WeightedFedAvgAggregator; the robust ones buffer the round's updates.
  return aggregation::MakeAggregator(options_.aggregator, layout_.size(), bound,
                                     options_.max_examples_per_client);
}

bool RoundCoordinator::ResetAggregateLocked() {
  absl::StatusOr<std::unique_ptr<aggregation::Aggregator>> aggregate = NewAggregateLocked();
  if (!aggregate.ok()) {
    fatal_error_ = aggregate.status();
    return false;
  }
  aggregate_ = *std::move(aggregate);
  return true;
}

void RoundCoordinator::ClearRoundTotalsLocked() {
  loss_sum_ = 0;
  traffic_ = Traffic();
  unclipped_ = 0;
  telemetry_.Clear();
}

void RoundCoordinator::ForgetOldDeclinesLocked() {
  for (auto it = declined_.begin(); it != declined_.end();) {
    if (recently_closed_.contains(*it)) {
      ++it;
    } else {
      declined_.erase(it++);
    }
  }
}

v1::CheckInResponse RoundCoordinator::RetryLocked(absl::Duration after,
                                                  absl::string_view reason) const {
  v1::CheckInResponse response;
  response.mutable_retry_later()->set_retry_after_seconds(absl::ToDoubleSeconds(after));
  response.mutable_retry_later()->set_reason(std::string(reason));
  return response;
}

absl::StatusOr<v1::CheckInResponse> RoundCoordinator::CheckIn(const v1::CheckInRequest& request,
                                                              absl::Time now,
                                                              absl::string_view identity) {
  absl::StatusOr<v1::CheckInResponse> response = HandleCheckIn(request, now, identity);
  FinishUnmasking(now);
  FinishCommit();
  return response;
}

absl::StatusOr<v1::CheckInResponse> RoundCoordinator::HandleCheckIn(
    const v1::CheckInRequest& request, absl::Time now, absl::string_view identity) {
  FEDKIT_RETURN_IF_ERROR(ValidateClientId(request.client_id()));
  if (request.api_version() != 0 && request.api_version() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("api_version ", request.api_version(), " is not supported; this is 1"));
  }
  absl::MutexLock lock(&mu_);
  if (!fatal_error_.ok()) {
    return absl::UnavailableError("coordinator stopped: " + std::string(fatal_error_.message()));
  }
  if (phase_ == Phase::kFinished) {
    v1::CheckInResponse response;
    response.mutable_finished()->set_rounds_completed(rounds_completed_);
    return response;
  }
  const std::string& id = request.client_id();
  // A device that cannot hold the model is never assigned it (nor waits in the pool).
  if (const int64_t limit = DeviceModelLimit(request.capabilities());
      limit > 0 && model_bytes_ > limit) {
    ++refusals_["model_too_large"];
    return RetryLocked(
        std::max(options_.retry_interval, kModelTooLargeRetry),
        absl::StrCat("the model needs ", model_bytes_, " bytes; this device holds at most ", limit,
                     " (its max_model_bytes / memory_bytes): not assigned"));
  }
  if (buffered()) return BufferedCheckInLocked(id, now, identity);
  if (phase_ == Phase::kTraining) {
    auto it = assignment_of_client_.find(id);
    if (it != assignment_of_client_.end()) {
      if (received_.contains(id)) {
        return RetryLocked(options_.retry_interval, "update received; round in progress");
      }
      if (declined_.contains(it->second)) {
        // It dropped out of this round (e.g. no longer eligible): it waits for the next one.
        ExpirePoolLocked(now);
        FEDKIT_RETURN_IF_ERROR(JoinPoolLocked(id, now, identity));
        return RetryLocked(options_.retry_interval,
                           "declined this round's assignment; waiting for the next round");
      }
      if (SecureCohort* cohort = RoundCohortLocked(); cohort != nullptr) {
        if (cohort->unmasking != Unmasking::kNone) {
          return RetryLocked(options_.retry_interval, "secure aggregation: unmasking");
        }
        AdvanceCohortLocked(cohorts_.begin()->first, now);
        if (phase_ != Phase::kTraining) return RetryLocked(options_.retry_interval, "round ended");
        if (cohort->protocol->Joined(id)) {
          return RetryLocked(options_.retry_interval, "secure aggregation in progress");
        }
      }
      // Assigned (possibly by another client's check-in, or the response was lost): hand it out.
      v1::CheckInResponse response;
      *response.mutable_assignment() = MakeAssignmentLocked(it->second, now);
      return response;
    }
    ExpirePoolLocked(now);
    FEDKIT_RETURN_IF_ERROR(JoinPoolLocked(id, now, identity));  // waits for the next round
    return RetryLocked(options_.retry_interval, "round in progress");
  }

  ExpirePoolLocked(now);
  FEDKIT_RETURN_IF_ERROR(JoinPoolLocked(id, now, identity));
  MaybeStartRoundLocked(now);
  if (phase_ == Phase::kTraining) {
    auto it = assignment_of_client_.find(id);
    if (it != assignment_of_client_.end()) {
      v1::CheckInResponse response;
      *response.mutable_assignment() = MakeAssignmentLocked(it->second, now);
      return response;
    }
    return RetryLocked(options_.retry_interval, "not selected this round");
  }
  return RetryLocked(options_.retry_interval, WaitingForLocked(now));
}

absl::StatusOr<v1::CheckInResponse> RoundCoordinator::BufferedCheckInLocked(
    const std::string& client_id, absl::Time now, absl::string_view identity) {
  ExpireAssignmentsLocked(now);
  ExpirePoolLocked(now);
  if (auto it = assignment_of_client_.find(client_id); it != assignment_of_client_.end()) {
    if (received_.contains(client_id)) {
      // One update per device per buffer: it is assigned again after the commit.
      return RetryLocked(options_.retry_interval,
                         absl::StrCat("update received into round ", rounds_completed_ + 1,
                                      "'s buffer; waiting for it to commit"));
    }
    if (const int64_t cohort_id = assignments_.at(it->second).cohort; cohort_id != 0) {
      SecureCohort& cohort = cohorts_.at(cohort_id);
      if (cohort.unmasking != Unmasking::kNone) {
        return RetryLocked(options_.retry_interval, "secure aggregation: unmasking");
      }
      if (cohort.protocol->Joined(client_id)) {
        return RetryLocked(options_.retry_interval, "secure aggregation in progress");
      }
    }
    // Assigned earlier (the response may have been lost): hand it out again.
    v1::CheckInResponse response;
    *response.mutable_assignment() = MakeAssignmentLocked(it->second, now);
    return response;
  }
  FEDKIT_RETURN_IF_ERROR(JoinPoolLocked(client_id, now, identity));
  if (options_.secure_aggregation.has_value()) {
    MaybeFormCohortLocked(now);
    if (auto it = assignment_of_client_.find(client_id); it != assignment_of_client_.end()) {
      v1::CheckInResponse response;
      *response.mutable_assignment() = MakeAssignmentLocked(it->second, now);
      return response;
    }
    return RetryLocked(options_.retry_interval, WaitingForLocked(now));
  }
  // No device sees a model before its checkpoint is durable (FinishCommit), nor after the last
  // round or while draining.
  if (pending_commit_.has_value() || draining_ || !fatal_error_.ok() ||
      rounds_completed_ >= options_.rounds || InFlightLocked() >= options_.fedbuff->concurrency) {
    return RetryLocked(options_.retry_interval, WaitingForLocked(now));
  }
  if (phase_ == Phase::kWaiting && static_cast<int64_t>(pool_.size()) < options_.min_available) {
    return RetryLocked(
        options_.retry_interval,
        absl::StrFormat("clients: %d waiting; FedBuff starts with %d (min available)", pool_.size(),
                        options_.min_available));
  }
  if (aggregate_ == nullptr && !ResetAggregateLocked()) {
    return absl::UnavailableError("coordinator stopped: " + std::string(fatal_error_.message()));
  }
  absl::StatusOr<std::string> assignment_id = NewAssignmentId();
  if (!assignment_id.ok()) {
    fatal_error_ = assignment_id.status();
    return absl::UnavailableError("coordinator stopped: " + std::string(fatal_error_.message()));
  }
  if (phase_ == Phase::kWaiting) {
    phase_ = Phase::kTraining;
    round_started_ = now;
    round_deadline_ = absl::InfiniteFuture();  // each assignment has its own
  }
  assignments_[*assignment_id] =
      Assignment{client_id, rounds_completed_ + 1, global_, now + options_.round_timeout};
  assignment_of_client_[client_id] = *assignment_id;
  LeavePoolLocked(client_id);
  ++buffer_assigned_;
  if (hooks_.round_participation) {
    if (!participation_.has_value()) {
      participation_.emplace();
      participation_->round = rounds_completed_ + 1;
      participation_->attempt = attempt_;
    }
    participation_->assigned.push_back(client_id);
  }
  v1::CheckInResponse response;
  *response.mutable_assignment() = MakeAssignmentLocked(*assignment_id, now);
  return response;
}

int64_t RoundCoordinator::InFlightLocked() const {
  return static_cast<int64_t>(assignments_.size()) - static_cast<int64_t>(received_.size());
}

void RoundCoordinator::EndAssignmentLocked(const std::string& assignment_id) {
  auto it = assignments_.find(assignment_id);
  if (it == assignments_.end()) return;
  recently_closed_.emplace(assignment_id, it->second.client_id);
  assignment_of_client_.erase(it->second.client_id);
  assignments_.erase(it);
}

void RoundCoordinator::ExpireAssignmentsLocked(absl::Time now) {
  std::vector<std::string> expired;
  for (const auto& [assignment_id, assignment] : assignments_) {
    if (now >= assignment.deadline && !received_.contains(assignment.client_id)) {
      expired.push_back(assignment_id);
    }
  }
  for (const std::string& assignment_id : expired) EndAssignmentLocked(assignment_id);
}

void RoundCoordinator::StartNextBufferLocked(absl::Time now) {
  // Ids closed before the previous commit are forgotten (a later upload is "unassigned" rather
  // than "late"): memory stays bounded by what one buffer's time closes.
  recently_closed_.clear();
  std::vector<std::string> done;
  for (const auto& [client_id, digest] : received_) {
    if (auto it = assignment_of_client_.find(client_id); it != assignment_of_client_.end()) {
      done.push_back(it->second);
    }
  }
  received_.clear();
  for (const std::string& assignment_id : done) EndAssignmentLocked(assignment_id);
  ForgetOldDeclinesLocked();
  // Under secure aggregation the cohorts' protocols sum: no plain aggregate.
  if (!options_.secure_aggregation.has_value() && !ResetAggregateLocked()) return;
  ClearRoundTotalsLocked();
  buffer_assigned_ = 0;
  staleness_sum_ = 0;
  staleness_max_ = 0;
  participation_.reset();
  round_started_ = now;
}

std::string RoundCoordinator::WaitingForLocked(absl::Time now) const {
  if (buffered() && phase_ == Phase::kWaiting && !pending_commit_.has_value() &&
      static_cast<int64_t>(pool_.size()) < options_.min_available) {
    return absl::StrFormat("clients: %d waiting; FedBuff starts with %d (min available)",
                           pool_.size(), options_.min_available);
  }
  if (buffered() && phase_ != Phase::kFinished && options_.secure_aggregation.has_value()) {
    const int64_t cohort = OverSelectedTarget(options_.fedbuff->buffer_size, options_.over_select);
    std::vector<std::string> phases;
    for (const auto& [id, cohort] : cohorts_) phases.push_back(CohortPhase(cohort));
    return absl::StrFormat(
        "round %d (FedBuff, secure): %d cohorts of %d in secure aggregation (%s), %d unmasked "
        "waiting to commit, %d of %d devices in flight; a cohort forms when %d devices wait (%d "
        "do)%s",
        rounds_completed_ + 1, cohorts_.size(), cohort,
        phases.empty() ? "none" : absl::StrJoin(phases, ", "), unmasked_.size(), InFlightLocked(),
        options_.fedbuff->concurrency, cohort, pool_.size(),
        pending_commit_.has_value() ? absl::StrCat("; round ", pending_commit_->outcome.round,
                                                   "'s evaluation and checkpoint first (committed)")
                                    : "");
  }
  if (buffered() && phase_ != Phase::kFinished) {
    return absl::StrFormat(
        "round %d (FedBuff): %d of %d updates in the buffer, %d of %d devices training%s",
        rounds_completed_ + 1, received_.size(), options_.fedbuff->buffer_size, InFlightLocked(),
        options_.fedbuff->concurrency,
        pending_commit_.has_value() ? absl::StrCat("; round ", pending_commit_->outcome.round,
                                                   "'s evaluation and checkpoint first (committed)")
                                    : "");
  }
  switch (phase_) {
    case Phase::kFinished:
      return "nothing: the run is finished";
    case Phase::kTraining:
      if (const SecureCohort* cohort = RoundCohortLocked(); cohort != nullptr) {
        return absl::StrFormat("round %d: secure aggregation phase %s", rounds_completed_ + 1,
                               CohortPhase(*cohort));
      }
      return absl::StrFormat(
          "round %d: updates (%d of %d received from %d assigned, %d declined; the round closes "
          "at %d, or at its deadline in %.0f s with at least %d)",
          rounds_completed_ + 1, received_.size(), options_.clients_per_round, assignments_.size(),
          declined_this_round_,
          std::min<int64_t>(options_.clients_per_round,
                            static_cast<int64_t>(assignments_.size()) - declined_this_round_),
          std::max(0.0, absl::ToDoubleSeconds(round_deadline_ - now)), options_.min_clients);
    case Phase::kWaiting:
      break;
  }
  if (pending_commit_.has_value()) {
    return absl::StrFormat("round %d: its evaluation and checkpoint (committed)",
                           pending_commit_->outcome.round);
  }
  const int64_t waiting = static_cast<int64_t>(pool_.size());
  if (waiting < options_.min_clients) {
    return absl::StrFormat(
        "clients: %d waiting; round %d starts with %d (%d per round%s), or after the selection "
        "window once at least %d (min clients) are waiting",
        waiting, rounds_completed_ + 1, start_at_, options_.clients_per_round,
        target_assignments_ > options_.clients_per_round ? ", over-selected" : "",
        options_.min_clients);
  }
  const absl::Duration left =
      enough_clients_since_.has_value()
          ? std::max(absl::ZeroDuration(),
                     *enough_clients_since_ + options_.selection_timeout - now)
          : options_.selection_timeout;
  return absl::StrFormat(
      "clients: %d waiting; round %d starts with %d, or with those waiting when the selection "
      "window ends in %.0f s",
      waiting, rounds_completed_ + 1, start_at_, absl::ToDoubleSeconds(left));
}

int64_t RoundCoordinator::masked_input_length() const {
  if (!options_.secure_aggregation.has_value()) return 0;
  return dp_setup_.has_value() ? dp_setup_->encoding->length()
                               : compression::SecAggVectorLength(compression_, model_size());
}

std::string RoundCoordinator::WaitingFor(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return WaitingForLocked(now);
}

void RoundCoordinator::ExpirePoolLocked(absl::Time now) {
  const absl::Duration ttl = 3 * options_.retry_interval + absl::Seconds(10);
  while (!pool_by_time_.empty() && now - pool_by_time_.begin()->first > ttl) {
    pool_.erase(pool_by_time_.begin()->second);
    pool_by_time_.erase(pool_by_time_.begin());
  }
}

absl::Status RoundCoordinator::JoinPoolLocked(const std::string& client_id, absl::Time now,
                                              absl::string_view identity) {
  auto it = pool_.find(client_id);
  if (it != pool_.end()) {
    pool_by_time_.erase({it->second.seen, client_id});
    it->second.seen = now;
    it->second.identity = std::string(identity);
    pool_by_time_.emplace(now, client_id);
    return absl::OkStatus();
  }
  if (options_.max_waiting > 0 && static_cast<int64_t>(pool_.size()) >= options_.max_waiting) {
    return RefuseLocked(ResourceExhaustedRetryAfter(
                            absl::StrCat("the waiting pool is full (", pool_.size(), " devices)"),
                            3 * options_.retry_interval),
                        "pool_full");
  }
  pool_.emplace(client_id, Waiting{now, std::string(identity)});
  pool_by_time_.emplace(now, client_id);
  return absl::OkStatus();
}

std::pair<std::vector<std::string>, std::vector<std::string>> RoundCoordinator::PoolSnapshotLocked()
    const {
  std::pair<std::vector<std::string>, std::vector<std::string>> snapshot;
  snapshot.first.reserve(pool_.size());
  snapshot.second.reserve(pool_.size());
  for (const auto& [client_id, entry] : pool_) {
    snapshot.first.push_back(client_id);
    snapshot.second.push_back(entry.identity);
  }
  return snapshot;
}

void RoundCoordinator::LeavePoolLocked(const std::string& client_id) {
  auto it = pool_.find(client_id);
  if (it == pool_.end()) return;
  pool_by_time_.erase({it->second.seen, client_id});
  pool_.erase(it);
}

void RoundCoordinator::MaybeStartRoundLocked(absl::Time now) {
  // The next round waits until the last one's checkpoint is written (FinishCommit): a crash then
  // loses no round whose model devices have seen.
  if (phase_ != Phase::kWaiting || pending_commit_.has_value() || draining_) return;
  const int64_t waiting = static_cast<int64_t>(pool_.size());
  // With the full over-selected target a round starts at once; with at least min_clients it
  // starts when the selection window (from when min_clients were first waiting) ends.
  if (waiting < options_.min_clients) {
    enough_clients_since_.reset();
    return;
  }
  if (!enough_clients_since_) enough_clients_since_ = now;
  // Under DP only a full population starts a round: sampling from fewer would raise q above
  // what the accountant assumes.
  if (waiting >= start_at_ ||
      (!options_.dp.has_value() && now - *enough_clients_since_ >= options_.selection_timeout)) {
    StartRoundLocked(now);
  }
}

void RoundCoordinator::StartRoundLocked(absl::Time now) {
  // A stopped run (e.g. the privacy ledger or the checkpoint could not be written) hands out no
  // model: the last one's release may not be on record.
  if (!fatal_error_.ok()) return;
  if (BudgetExhaustedLocked()) return;
  const int64_t round = rounds_completed_ + 1;
  // Sorted ids (pool_ is ordered), so the sample depends only on who is waiting.
  const auto [waiting, identities] = PoolSnapshotLocked();
  const int64_t count = std::min<int64_t>(target_assignments_, waiting.size());
  uint64_t seed = SamplingSeed(options_.plan.run_seed(), round, attempt_);
  if (dp_setup_.has_value()) {
    // Not from run_seed, which every device holds: from the CSPRNG (see CoordinatorOptions::dp).
    seed = options_.dp_noise_seed.has_value()
               ? privacy::DpSamplingSeed(*options_.dp_noise_seed, round, attempt_)
               : sampling_random_->NextUint64();
    round_sampling_seed_ = seed;
    round_sampling_rate_ = static_cast<double>(count) / static_cast<double>(waiting.size());
  }
  std::vector<int64_t> chosen = SampleIndices(static_cast<int64_t>(waiting.size()), count, seed);
  // An identity's fair share outside DP (under DP the accountant assumes uniform sampling over
  // devices, so the sample stays uniform; see the README on identities under DP).
  if (!dp_setup_.has_value()) chosen = CapPerIdentity(std::move(chosen), identities, seed);
  assignments_.clear();
  assignment_of_client_.clear();
  received_.clear();
  declined_this_round_ = 0;
  participation_.reset();
  if (hooks_.round_participation) {
    participation_.emplace();
    participation_->round = round;
    participation_->attempt = attempt_;
    participation_->pool = waiting;
    if (dp_setup_.has_value()) participation_->sampling_seed = seed;
    for (int64_t index : chosen) participation_->assigned.push_back(waiting[index]);
  }
  ClearRoundTotalsLocked();
  round_clip_ =
      adaptive_clipping_.has_value() ? adaptive_clipping_->clip_norm() : options_.plan.clip_norm();
  if (dp_setup_.has_value() && options_.dp_noise_seed.has_value()) {
    value_noise_ = std::make_unique<privacy::SeededRandomSource>(
        privacy::ValueNoiseSeed(*options_.dp_noise_seed, round));
    count_noise_ = std::make_unique<privacy::SeededRandomSource>(
        privacy::CountNoiseSeed(*options_.dp_noise_seed, round));
  }
  if (!options_.secure_aggregation.has_value() && !ResetAggregateLocked()) return;
  for (int64_t index : chosen) {
    const std::string& id = waiting[index];
    absl::StatusOr<std::string> assignment_id = NewAssignmentId();
    if (!assignment_id.ok()) {
      fatal_error_ = assignment_id.status();
      return;
    }
    assignments_[*assignment_id] = Assignment{
        .client_id = id, .round = round, .cohort = options_.secure_aggregation ? next_cohort_ : 0};
    assignment_of_client_[id] = *std::move(assignment_id);
    LeavePoolLocked(id);
  }
  phase_ = Phase::kTraining;
  enough_clients_since_.reset();
  round_started_ = now;
  round_deadline_ = now + options_.round_timeout;
  if (options_.secure_aggregation.has_value()) {
    std::vector<std::string> clients;
    std::vector<std::string> assignment_ids;
    for (const auto& [id, assignment_id] : assignment_of_client_) {
      clients.push_back(id);
      assignment_ids.push_back(assignment_id);
    }
    absl::StatusOr<std::unique_ptr<SecureAggregationRound>> protocol =
        StartProtocolLocked(std::move(clients), now);
    if (!protocol.ok()) {
      fatal_error_ = protocol.status();
      return;
    }
    cohorts_.clear();
    cohorts_.emplace(next_cohort_++, SecureCohort{.round = round,
                                                  .protocol = *std::move(protocol),
                                                  .started = now,
                                                  .assignment_ids = std::move(assignment_ids)});
    // The protocol's phases (with their own deadlines) decide when the round ends.
    round_deadline_ = absl::InfiniteFuture();
  }
}

absl::StatusOr<std::unique_ptr<SecureAggregationRound>> RoundCoordinator::StartProtocolLocked(
    std::vector<std::string> clients, absl::Time now) {
  {
    SecAggInputEncoding encoding;
    const int64_t vector_length = masked_input_length();
    // K masked inputs close the masked-input phase (over-selected clients beyond them drop).
    SecAggRoundLimits limits{.max_inputs = buffered() ? options_.fedbuff->buffer_size
                                                      : options_.clients_per_round};
    if (dp_setup_.has_value()) {
      encoding.fixed_point.modulus_bits = options_.secure_aggregation->modulus_bits;
      encoding.fixed_point.clip_norm = round_clip_;
      encoding.dp_options = dp_encoding_options_;
      if (options_.dp->mode == privacy::DpMode::kDistributed) {
        limits.min_inputs = dp_setup_->encoding->min_surviving_clients;
      }
    } else {
      encoding.fixed_point = *secagg_encoding_;
    }
    SecureAggregationSettings settings = *options_.secure_aggregation;
    if (secagg_quantization_.has_value()) {
      // Quantized inputs need only bits + ceil(log2 n) bits.
      settings.modulus_bits = secagg_quantization_->modulus_bits;
      encoding.fixed_point.modulus_bits = secagg_quantization_->modulus_bits;
    }
    return SecureAggregationRound::Start(settings, encoding, vector_length, std::move(clients), now,
                                         options_.round_timeout, limits);
  }
}

void RoundCoordinator::MaybeFormCohortLocked(absl::Time now) {
  // K devices, over-selected: the first K masked inputs close the upload phase.
  const int64_t k = OverSelectedTarget(options_.fedbuff->buffer_size, options_.over_select);
  // No device sees a model before its checkpoint is durable (FinishCommit), nor after the last
  // round or while draining; no more cohorts run than rounds remain.
  if (pending_commit_.has_value() || draining_ || !fatal_error_.ok() ||
      rounds_completed_ + static_cast<int64_t>(cohorts_.size() + unmasked_.size()) >=
          options_.rounds ||
      InFlightLocked() + k > options_.fedbuff->concurrency) {
    return;
  }
  const int64_t needed =
      phase_ == Phase::kWaiting ? std::max<int64_t>(k, options_.min_available) : k;
  if (static_cast<int64_t>(pool_.size()) < needed) return;
  const int64_t round = rounds_completed_ + 1;
  const int64_t id = next_cohort_;
  // Sorted ids (pool_ is ordered): the sample depends only on who waits, the round and the
  // cohort, and is capped per identity as a synchronous round's.
  const auto [waiting, identities] = PoolSnapshotLocked();
  const uint64_t seed = SamplingSeed(options_.plan.run_seed(), round, id);
  const std::vector<int64_t> chosen = CapPerIdentity(
      SampleIndices(static_cast<int64_t>(waiting.size()), k, seed), identities, seed);
  std::vector<std::string> clients;
  for (int64_t index : chosen) clients.push_back(waiting[index]);
  absl::StatusOr<std::unique_ptr<SecureAggregationRound>> protocol =
      StartProtocolLocked(clients, now);
  if (!protocol.ok()) {
    fatal_error_ = protocol.status();
    return;
  }
  SecureCohort cohort{.round = round, .protocol = *std::move(protocol), .started = now};
  // Every id first: a failure leaves no assignment without its cohort.
  for (size_t i = 0; i < clients.size(); ++i) {
    absl::StatusOr<std::string> assignment_id = NewAssignmentId();
    if (!assignment_id.ok()) {
      fatal_error_ = assignment_id.status();
      return;
    }
    cohort.assignment_ids.push_back(*std::move(assignment_id));
  }
  for (size_t i = 0; i < clients.size(); ++i) {
    // The cohort's protocol sets its deadlines: the assignment has none of its own.
    assignments_[cohort.assignment_ids[i]] =
        Assignment{.client_id = clients[i], .round = round, .model = global_, .cohort = id};
    assignment_of_client_[clients[i]] = cohort.assignment_ids[i];
    LeavePoolLocked(clients[i]);
    ++buffer_assigned_;
  }
  if (phase_ == Phase::kWaiting) {
    phase_ = Phase::kTraining;
    round_started_ = now;
    round_deadline_ = absl::InfiniteFuture();
  }
  ++next_cohort_;
  cohorts_.emplace(id, std::move(cohort));
}

v1::RoundAssignment RoundCoordinator::MakeAssignmentLocked(const std::string& assignment_id,
                                                           absl::Time now) const {
  v1::RoundAssignment a;
  auto assignment = assignments_.find(assignment_id);
  // Synchronous assignments are all of the current round; FedBuff's of the version they were given.
  a.set_round(assignment != assignments_.end() ? assignment->second.round : rounds_completed_ + 1);
  a.set_assignment_id(assignment_id);
  a.set_model_name(options_.model_name);
  if (options_.artifact.has_value()) *a.mutable_artifact() = *options_.artifact;
  *a.mutable_plan() = options_.plan;
  a.mutable_plan()->set_clip_norm(round_clip_);
  a.set_report_unclipped(adaptive_clipping_.has_value() && !options_.secure_aggregation);
  a.set_model_size(layout_.size());
  *a.mutable_layout() = LayoutToProto(layout_);
  a.set_max_examples(options_.max_examples_per_client);
  const auto cohort =
      assignment == assignments_.end() ? cohorts_.end() : cohorts_.find(assignment->second.cohort);
  if (cohort != cohorts_.end()) {
    std::optional<v1::SecureAggregationParams> params =
        cohort->second.protocol->ParamsFor(assignment->second.client_id);
    if (params.has_value()) *a.mutable_secure_aggregation() = *std::move(params);
    a.set_seconds_to_deadline(
        std::max(0.0, absl::ToDoubleSeconds(cohort->second.started + options_.round_timeout +
                                            2 * options_.secure_aggregation->phase_timeout - now)));
  } else {
    const absl::Time deadline = buffered() && assignment != assignments_.end()
                                    ? assignment->second.deadline
                                    : round_deadline_;
    a.set_seconds_to_deadline(std::max(0.0, absl::ToDoubleSeconds(deadline - now)));
  }
  return a;
}

absl::Status RoundCoordinator::CheckModelRequestLocked(const v1::GetModelRequest& request) const {
  auto it = assignments_.find(request.assignment_id());
  if (phase_ != Phase::kTraining || it == assignments_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("assignment '", request.assignment_id(), "' is not part of a running round"));
  }
  if (it->second.client_id != request.client_id()) {
    return absl::FailedPreconditionError("assignment belongs to another client");
  }
  if (request.round() != 0 && request.round() != it->second.round) {
    return absl::FailedPreconditionError(
        absl::StrCat("round ", request.round(), " is not the current round ", it->second.round));
  }
  return absl::OkStatus();
}

absl::StatusOr<RoundCoordinator::ModelSnapshot> RoundCoordinator::GetModel(
    const v1::GetModelRequest& request, absl::Time now) {
  ModelSnapshot snapshot;
  {
    absl::MutexLock lock(&mu_);
    FEDKIT_RETURN_IF_ERROR(CheckModelRequestLocked(request));
    const Assignment& assignment = assignments_.find(request.assignment_id())->second;
    snapshot.round = assignment.round;
    // FedBuff: the version the device was assigned (the model may have moved on since).
    snapshot.parameters = buffered() ? assignment.model : global_;
  }
  // Outside the lock: the round's first download encodes the model (one pass over it), the
  // others share its bytes (float32: nothing to do).
  EncodedModelCache::Entry encoded = encoded_models_.Get(snapshot.parameters);
  snapshot.encoding = encoded.encoding;
  snapshot.encoded = encoded.bytes;
  absl::MutexLock lock(&mu_);
  if (encoded.first && !encoded.fallback.ok()) {
    LogLocked(absl::StrCat("round ", snapshot.round, ": the model is sent in float32, not ",
                           compression::FormatDownloadEncoding(encoded_models_.encoding()), ": ",
                           encoded.fallback.message()));
  }
  // Counted in the round it was asked for (a round that ended meanwhile does not count it).
  if (CheckModelRequestLocked(request).ok()) {
    traffic_.received +=
        snapshot.encoded == nullptr
            ? proto::ModelStreamBytes(snapshot.round, layout_.size(),
                                      proto::kDefaultModelChunkFloats, layout_proto_)
            : proto::EncodedModelStreamBytes(snapshot.round, layout_.size(),
                                             proto::DownloadEncodingToProto(snapshot.encoding),
                                             static_cast<int64_t>(snapshot.encoded->size()),
                                             proto::kDefaultModelChunkBytes, layout_proto_);
    ++traffic_.downloads;
  }
  return snapshot;
}

absl::Status RoundCoordinator::RefuseLocked(absl::Status status, absl::string_view reason) {
  ++refusals_[std::string(reason)];
  return status;
}

absl::Status RoundCoordinator::RefuseClientLocked(const std::string& client_id, absl::Status status,
                                                  absl::string_view reason) {
  LogLocked(absl::StrCat("round ", rounds_completed_ + 1, ": update of client ", client_id,
                         " refused (", reason, "): ", status.message()));
  return RefuseLocked(std::move(status), reason);
}

void RoundCoordinator::CountRefusal(absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  ++refusals_[std::string(reason)];
}

absl::StatusOr<v1::UploadResponse> RoundCoordinator::SubmitUpdate(const v1::UpdateHeader& header,
                                                                  absl::Span<const float> delta,
                                                                  absl::Time now) {
  absl::StatusOr<v1::UploadResponse> response = HandleUpdate(header, delta, now);
  FinishCommit();
  return response;
}

absl::Status RoundCoordinator::CheckUpdateAssignmentLocked(const v1::UpdateHeader& header) {
  if (phase_ == Phase::kFinished) {
    return RefuseLocked(absl::FailedPreconditionError("the run is finished; update is late"),
                        "late");
  }
  auto it = assignments_.find(header.assignment_id());
  if (it == assignments_.end()) {
    // Either assigned in a round that has since closed, or never assigned.
    if (recently_closed_.contains(header.assignment_id())) {
      return RefuseLocked(absl::FailedPreconditionError(
                              absl::StrCat("assignment '", header.assignment_id(),
                                           "' belongs to a closed round; update is late")),
                          "late");
    }
    return RefuseLocked(absl::FailedPreconditionError(absl::StrCat(
                            "no assignment '", header.assignment_id(), "' in the current round")),
                        "unassigned");
  }
  const Assignment& assignment = it->second;
  if (assignment.client_id != header.client_id()) {
    return RefuseLocked(absl::FailedPreconditionError("assignment belongs to another client"),
                        "unassigned");
  }
  if (header.round() != assignment.round) {
    return RefuseLocked(absl::FailedPreconditionError(
                            absl::StrCat("update is for round ", header.round(),
                                         ", the assignment is for round ", assignment.round)),
                        "wrong_round");
  }
  if (phase_ != Phase::kTraining || (buffered() && rounds_completed_ >= options_.rounds)) {
    return RefuseLocked(absl::FailedPreconditionError("round closed; update is late"), "late");
  }
  if (options_.secure_aggregation.has_value()) {
    return RefuseLocked(absl::FailedPreconditionError(
                            "this round uses secure aggregation: upload the masked input"),
                        "not_masked");
  }
  if (declined_.contains(header.assignment_id()) && !received_.contains(header.client_id())) {
    return RefuseLocked(absl::FailedPreconditionError(
                            "this assignment was declined; the round does not wait for it"),
                        "declined");
  }
  return absl::OkStatus();
}

absl::Status RoundCoordinator::CheckUploadHeader(const v1::UpdateHeader& header) {
  absl::MutexLock lock(&mu_);
  if (options_.secure_aggregation.has_value()) {
    return CheckAssignmentLocked(header.client_id(), header.assignment_id(), header.round());
  }
  return CheckUpdateAssignmentLocked(header);
}

absl::Status RoundCoordinator::CheckCompressedUploadHeader(const v1::UpdateHeader& header) {
  FEDKIT_RETURN_IF_ERROR(CheckUploadHeader(header));
  absl::MutexLock lock(&mu_);
  if (compression_.method == compression::CompressionMethod::kNone) {
    return RefuseLocked(absl::FailedPreconditionError(
                            "this run's plan does not compress updates: upload float values"),
                        "not_compressed");
  }
  if (header.total_size() != layout_.size() || header.compressed_size() <= 0) {
    return RefuseLocked(
        absl::InvalidArgumentError(absl::StrCat(
            "compressed update declares ", header.total_size(), " values in ",
            header.compressed_size(), " bytes; the model has ", layout_.size(), " values")),
        "wrong_shape");
  }
  const int64_t max_bytes = compression::MaxEncodedSize(compression_, layout_.size());
  if (header.compressed_size() > max_bytes) {
    return RefuseLocked(absl::ResourceExhaustedError(absl::StrCat(
                            "compressed update declares ", header.compressed_size(), " bytes; ",
                            compression::FormatCompressionSpec(compression_),
                            " of this model takes at most ", max_bytes)),
                        "oversized");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadResponse> RoundCoordinator::SubmitCompressedUpdate(
    const v1::UpdateHeader& header, const std::string& encoded, absl::Time now) {
  absl::StatusOr<std::vector<float>> delta =
      compression::DecodeUpdate(compression_, encoded, layout_.size());  // no lock
  if (!delta.ok()) {
    CountRefusal("malformed_compression");
    return absl::InvalidArgumentError(
        absl::StrCat("compressed update does not decode: ", delta.status().message()));
  }
  double clip = 0.0;
  {
    absl::MutexLock lock(&mu_);
    clip = round_clip_;
  }
  if (clip > 0) privacy::ClipL2InPlace(absl::MakeSpan(*delta), clip);
  return SubmitUpdate(header, *delta, now);
}

absl::StatusOr<v1::UploadResponse> RoundCoordinator::HandleUpdate(const v1::UpdateHeader& header,
                                                                  absl::Span<const float> delta,
                                                                  absl::Time now) {
  const artifacts::Sha256Digest digest = UpdateDigest(header.num_examples(), delta);  // no lock
  absl::MutexLock lock(&mu_);
  FEDKIT_RETURN_IF_ERROR(CheckUpdateAssignmentLocked(header));
  if (static_cast<int64_t>(delta.size()) != layout_.size() ||
      header.total_size() != layout_.size()) {
    return RefuseLocked(absl::InvalidArgumentError(
                            absl::StrCat("update has ", delta.size(), " values (header says ",
                                         header.total_size(), "); the model has ", layout_.size())),
                        "wrong_shape");
  }
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return RefuseClientLocked(
          header.client_id(),
          absl::InvalidArgumentError(absl::StrCat("update value ", i, " is not finite")),
          "not_finite");
    }
  }
  if (header.num_examples() < 1 || header.num_examples() > options_.max_examples_per_client) {
    return RefuseClientLocked(header.client_id(),
                              absl::InvalidArgumentError(absl::StrCat(
                                  "example count ", header.num_examples(), " is outside [1, ",
                                  options_.max_examples_per_client, "]")),
                              "bad_example_count");
  }
  const double clip = round_clip_;
  if (adaptive_clipping_.has_value() && !header.has_unclipped()) {
    return RefuseLocked(
        absl::InvalidArgumentError(
            "this round uses adaptive clipping: the header must say whether the delta was "
            "unclipped"),
        "missing_unclipped");
  }
  if (clip > 0) {
    const double norm = privacy::L2Norm(delta);
    if (norm > clip * (1.0 + options_.clip_tolerance)) {
      return RefuseClientLocked(
          header.client_id(),
          absl::InvalidArgumentError(
              absl::StrFormat("update norm %.6g exceeds the round's clip norm %.6g", norm, clip)),
          "over_norm");
    }
  }
  auto existing = received_.find(header.client_id());
  if (existing != received_.end()) {
    if (existing->second == digest) {
      v1::UploadResponse response;
      response.set_duplicate(true);  // a retry of an update already counted
      return response;
    }
    return RefuseLocked(absl::AlreadyExistsError(
                            "a different update from this client was already counted this round"),
                        "duplicate");
  }
  std::vector<float> weighted;  // FedBuff: n w(s) delta enters the buffer
  if (buffered()) {
    if (static_cast<int64_t>(received_.size()) >= options_.fedbuff->buffer_size) {
      CloseRoundIfCompleteLocked(now);  // commits the full buffer unless a commit is pending
    }
    if (static_cast<int64_t>(received_.size()) >= options_.fedbuff->buffer_size) {
      return RefuseLocked(
          WithRetryAfter(absl::UnavailableError(absl::StrCat(
                             "round ", rounds_completed_ + 1, "'s buffer is full while round ",
                             rounds_completed_, " is checkpointed; upload again shortly")),
                         options_.retry_interval),
          "buffer_full");
    }
    const int64_t staleness = rounds_completed_ + 1 - assignments_.at(header.assignment_id()).round;
    weighted.assign(delta.begin(), delta.end());
    aggregation::WeighByStaleness(options_.fedbuff->staleness, staleness, absl::MakeSpan(weighted));
    staleness_sum_ += staleness;
    staleness_max_ = std::max(staleness_max_, staleness);
  }
  if (absl::Status folded = aggregate_->Accumulate(
          buffered() ? absl::MakeConstSpan(weighted) : delta, header.num_examples());
      !folded.ok()) {
    // The checks above leave only the fixed point's range (no clip norm: --max-update-value).
    return RefuseClientLocked(header.client_id(), folded, "out_of_range");
  }
  received_[header.client_id()] = digest;
  traffic_.sent +=
      header.compressed_size() > 0
          ? proto::UploadStreamBytes(header, proto::UploadPayload::kCompressedBytes,
                                     header.compressed_size())
          : proto::UploadStreamBytes(header, proto::UploadPayload::kFloats, header.total_size());
  ++traffic_.uploads;
  if (header.unclipped()) ++unclipped_;
  if (header.has_telemetry() && !telemetry_.Add(header.telemetry())) ++telemetry_invalid_;
  loss_sum_ += header.train_loss() *
               (options_.dp.has_value() ? 1.0 : static_cast<double>(header.num_examples()));
  // K updates close the round; so does every assigned client's that did not decline, in a round
  // that started with fewer than K (the selection window ended with fewer waiting) or whose
  // devices dropped out.
  CloseRoundIfCompleteLocked(now);
  return v1::UploadResponse();
}

absl::Status RoundCoordinator::CheckAssignmentLocked(const std::string& client_id,
                                                     const std::string& assignment_id,
                                                     int64_t round) {
  if (phase_ == Phase::kFinished) {
    return RefuseLocked(absl::FailedPreconditionError("the run is finished; message is late"),
                        "late");
  }
  auto it = assignments_.find(assignment_id);
  if (it == assignments_.end()) {
    if (recently_closed_.contains(assignment_id)) {
      return RefuseLocked(absl::FailedPreconditionError(absl::StrCat(
                              "assignment '", assignment_id, "' belongs to a closed round")),
                          "late");
    }
    return RefuseLocked(absl::FailedPreconditionError(absl::StrCat("no assignment '", assignment_id,
                                                                   "' in the current round")),
                        "unassigned");
  }
  if (it->second.client_id != client_id) {
    return RefuseLocked(absl::FailedPreconditionError("assignment belongs to another client"),
                        "unassigned");
  }
  if (round != it->second.round) {
    return RefuseLocked(
        absl::FailedPreconditionError(absl::StrCat(
            "message is for round ", round, ", the assignment is for round ", it->second.round)),
        "wrong_round");
  }
  if (phase_ != Phase::kTraining) {
    return RefuseLocked(absl::FailedPreconditionError("round closed; message is late"), "late");
  }
  if (!cohorts_.contains(it->second.cohort)) {
    return RefuseLocked(absl::FailedPreconditionError("this round does not use secure aggregation"),
                        "not_secagg");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::DeclineResponse> RoundCoordinator::Decline(const v1::DeclineRequest& request,
                                                              absl::Time now) {
  FEDKIT_RETURN_IF_ERROR(ValidateClientId(request.client_id()));
  if (request.reason() == v1::DeclineRequest::REASON_UNSPECIFIED ||
      !v1::DeclineRequest::Reason_IsValid(request.reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown decline reason ", static_cast<int>(request.reason())));
  }
  absl::StatusOr<v1::DeclineResponse> response = CountDecline(request, now);
  FinishUnmasking(now);
  FinishCommit();
  if (response.ok() && !response->duplicate() && hooks_.assignment_declined) {
    hooks_.assignment_declined(request);
  }
  return response;
}

absl::StatusOr<v1::DeclineResponse> RoundCoordinator::CountDecline(
    const v1::DeclineRequest& request, absl::Time now) {
  absl::MutexLock lock(&mu_);
  const std::string& id = request.assignment_id();
  std::string owner;
  if (auto it = assignments_.find(id); it != assignments_.end()) {
    if (request.round() != it->second.round) {
      return absl::FailedPreconditionError(absl::StrCat("decline is for round ", request.round(),
                                                        ", the assignment is for round ",
                                                        it->second.round));
    }
    owner = it->second.client_id;
  } else if (auto closed = recently_closed_.find(id); closed != recently_closed_.end()) {
    owner = closed->second;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("no assignment '", id, "' in the current or the previous round"));
  }
  if (owner != request.client_id()) {
    return absl::FailedPreconditionError("assignment belongs to another client");
  }
  v1::DeclineResponse response;
  if (!declined_.insert(id).second) {
    response.set_duplicate(true);
    return response;
  }
  ++declines_[absl::AsciiStrToLower(v1::DeclineRequest::Reason_Name(request.reason()))];
  // A current assignment that declined is no longer waited for (unless its update is already in).
  if (buffered()) {
    // Its slot is free at once; under secure aggregation it leaves its cohort's protocol.
    if (SecureCohort* cohort = CohortOfLocked(id);
        cohort != nullptr && cohort->unmasking == Unmasking::kNone) {
      const int64_t cohort_id = assignments_.at(id).cohort;
      cohort->protocol->Withdraw(owner);
      EndAssignmentLocked(id);
      AdvanceCohortLocked(cohort_id, now);
    } else if (!received_.contains(owner) && !options_.secure_aggregation.has_value()) {
      EndAssignmentLocked(id);
    }
    return response;
  }
  if (phase_ == Phase::kTraining && assignments_.contains(id) && !received_.contains(owner)) {
    ++declined_this_round_;
    if (SecureCohort* cohort = RoundCohortLocked(); cohort != nullptr) {
      if (cohort->unmasking == Unmasking::kNone) {
        cohort->protocol->Withdraw(owner);
        AdvanceCohortLocked(cohorts_.begin()->first, now);
      }
    } else {
      CloseRoundIfCompleteLocked(now);
    }
  }
  return response;
}

void RoundCoordinator::CloseRoundIfCompleteLocked(absl::Time now) {
  if (buffered()) {
    if (options_.secure_aggregation.has_value()) {
      CommitUnmaskedCohortLocked(now);
      return;
    }
    // A full buffer commits, one commit at a time (the next waits for FinishCommit).
    if (phase_ == Phase::kTraining && !pending_commit_.has_value() &&
        rounds_completed_ < options_.rounds &&
        static_cast<int64_t>(received_.size()) >= options_.fedbuff->buffer_size) {
      CommitRoundLocked(now);
    }
    return;
  }
  if (phase_ != Phase::kTraining || !cohorts_.empty()) return;
  const int64_t received = static_cast<int64_t>(received_.size());
  if (received >= options_.clients_per_round) {
    CommitRoundLocked(now);
    return;
  }
  // Every assigned device has uploaded or declined (a round that started with fewer than K, or
  // devices that dropped out): nothing more can come.
  if (received + declined_this_round_ < static_cast<int64_t>(assignments_.size())) return;
  if (received >= options_.min_clients) {
    CommitRoundLocked(now);
    return;
  }
  LogLocked(absl::StrCat("round ", rounds_completed_ + 1, ": abandoned: ", received,
                         " updates (fewer than min clients ", options_.min_clients,
                         ") and every other assigned device declined"));
  AbandonRoundLocked();
}

absl::StatusOr<v1::SecAggResponse> RoundCoordinator::SecureAggregationStep(
    const v1::SecAggRequest& request, absl::Time now) {
  absl::StatusOr<v1::SecAggResponse> response = HandleSecureAggregationStep(request, now);
  FinishUnmasking(now);
  FinishCommit();
  return response;
}

absl::StatusOr<v1::SecAggResponse> RoundCoordinator::HandleSecureAggregationStep(
    const v1::SecAggRequest& request, absl::Time now) {
  absl::MutexLock lock(&mu_);
  FEDKIT_RETURN_IF_ERROR(
      CheckAssignmentLocked(request.client_id(), request.assignment_id(), request.round()));
  const int64_t cohort_id = assignments_.at(request.assignment_id()).cohort;
  SecureCohort& cohort = cohorts_.at(cohort_id);
  if (cohort.unmasking != Unmasking::kNone) {
    v1::SecAggResponse retry;
    retry.mutable_retry_later()->set_retry_after_seconds(
        absl::ToDoubleSeconds(options_.retry_interval));
    retry.mutable_retry_later()->set_reason("secure aggregation: unmasking");
    return retry;
  }
  absl::StatusOr<v1::SecAggResponse> response =
      cohort.protocol->Handle(request.client_id(), request, now);
  traffic_.sent += static_cast<int64_t>(request.ByteSizeLong());
  if (response.ok()) traffic_.received += static_cast<int64_t>(response->ByteSizeLong());
  if (!response.ok()) {
    ++refusals_[absl::StrCat("secagg_", absl::StatusCodeToString(response.status().code()))];
  }
  AdvanceCohortLocked(cohort_id, now);
  return response;
}

absl::StatusOr<v1::UploadResponse> RoundCoordinator::SubmitMaskedUpdate(
    const v1::UpdateHeader& header, const std::string& packed, absl::Time now) {
  absl::StatusOr<v1::UploadResponse> response = HandleMaskedUpdate(header, packed, now);
  FinishUnmasking(now);
  FinishCommit();
  return response;
}

absl::StatusOr<v1::UploadResponse> RoundCoordinator::HandleMaskedUpdate(
    const v1::UpdateHeader& header, const std::string& packed, absl::Time now) {
  absl::MutexLock lock(&mu_);
  FEDKIT_RETURN_IF_ERROR(
      CheckAssignmentLocked(header.client_id(), header.assignment_id(), header.round()));
  const int64_t cohort_id = assignments_.at(header.assignment_id()).cohort;
  SecureCohort& cohort = cohorts_.at(cohort_id);
  absl::StatusOr<v1::UploadResponse> response =
      cohort.unmasking != Unmasking::kNone
          ? absl::FailedPreconditionError("the masked input phase is over")
          : cohort.protocol->HandleMaskedInput(header.client_id(), packed, header.train_loss(),
                                               header.secagg_bad_share_senders());
  if (response.ok() && !response->duplicate()) {
    traffic_.sent += proto::UploadStreamBytes(header, proto::UploadPayload::kMaskedBytes,
                                              static_cast<int64_t>(packed.size()));
    ++traffic_.uploads;
  }
  if (!response.ok()) {
    ++refusals_[absl::StrCat("secagg_", absl::StatusCodeToString(response.status().code()))];
  } else if (!response->duplicate() && header.has_telemetry() &&
             !telemetry_.Add(header.telemetry())) {
    ++telemetry_invalid_;
  }
  AdvanceCohortLocked(cohort_id, now);
  return response;
}

void RoundCoordinator::LogLocked(std::string line) { pending_log_.push_back(std::move(line)); }

void RoundCoordinator::FlushLog() {
  std::vector<std::string> lines;
  std::vector<std::pair<int64_t, SecAggPhaseStats>> phases;
  {
    absl::MutexLock lock(&mu_);
    lines.swap(pending_log_);
    phases.swap(pending_phases_);
  }
  if (hooks_.log) {
    for (const std::string& line : lines) hooks_.log(line);
  }
  if (hooks_.secagg_phase_closed) {
    for (const auto& [round, stats] : phases) hooks_.secagg_phase_closed(round, stats);
  }
}

void RoundCoordinator::RefuseRoundLocked(absl::string_view reason, std::string line) {
  ++refusals_[std::string(reason)];
  if (buffered() && options_.secure_aggregation.has_value()) {
    // Only the committing cohort's average is dropped; the cohorts in flight go on.
    LogLocked(absl::StrCat("round ", rounds_completed_ + 1, ": a cohort's average refused (",
                           reason, "): ", line));
    return;
  }
  LogLocked(absl::StrCat("round ", rounds_completed_ + 1, " abandoned (", reason, "): ", line));
  AbandonRoundLocked();
}

void RoundCoordinator::ReportCulpritsLocked(SecureCohort& cohort) {
  if (cohort.unmasking == Unmasking::kRunning) return;
  for (const SecAggRoundCulprit& c : cohort.protocol->TakeNewCulprits()) {
    const bool ciphertext = c.reason == secagg::SecAggCulprit::Reason::kBadShareCiphertext;
    ++refusals_[absl::StrCat("secagg_", secagg::CulpritReasonName(c.reason))];
    LogLocked(absl::StrCat(
        "round ", cohort.round, ": secure aggregation: client ", c.client_id,
        ciphertext ? " sent share ciphertexts that clients " : " revealed shares of clients ",
        absl::StrJoin(c.others, ", "),
        ciphertext ? (c.excluded ? " reported bad; it is excluded from the round"
                                 : " reported bad; its input was already summed and stays")
                   : " that do not match their commitments; ignored"));
  }
}

RoundCoordinator::SecureCohort* RoundCoordinator::RoundCohortLocked() {
  return buffered() || cohorts_.empty() ? nullptr : &cohorts_.begin()->second;
}

const RoundCoordinator::SecureCohort* RoundCoordinator::RoundCohortLocked() const {
  return buffered() || cohorts_.empty() ? nullptr : &cohorts_.begin()->second;
}

RoundCoordinator::SecureCohort* RoundCoordinator::CohortOfLocked(const std::string& assignment_id) {
  auto assignment = assignments_.find(assignment_id);
  if (assignment == assignments_.end()) return nullptr;
  auto cohort = cohorts_.find(assignment->second.cohort);
  return cohort == cohorts_.end() ? nullptr : &cohort->second;
}

std::string RoundCoordinator::CohortPhase(const SecureCohort& cohort) {
  // While unmasking, FinishUnmasking's thread owns the protocol: its phase is not read.
  if (cohort.unmasking != Unmasking::kNone) return "secagg-unmasking";
  return std::string(cohort.protocol->phase_name());
}

bool RoundCoordinator::AnyCohortUnmaskingLocked(Unmasking state) const {
  return std::any_of(cohorts_.begin(), cohorts_.end(),
                     [state](const auto& entry) { return entry.second.unmasking == state; });
}

void RoundCoordinator::AdvanceCohortsLocked(absl::Time now) {
  std::vector<int64_t> ids;
  for (const auto& [id, cohort] : cohorts_) ids.push_back(id);
  for (int64_t id : ids) AdvanceCohortLocked(id, now);  // may end cohorts
}

void RoundCoordinator::DropCohortLocked(int64_t id, absl::string_view reason, std::string line) {
  if (!buffered()) {
    RefuseRoundLocked(reason, std::move(line));
    return;
  }
  auto it = cohorts_.find(id);
  if (it == cohorts_.end()) return;
  ++refusals_[std::string(reason)];
  LogLocked(absl::StrCat("round ", rounds_completed_ + 1, ": a cohort of ",
                         it->second.assignment_ids.size(), " devices (from round ",
                         it->second.round, "'s model) dropped (", reason, "): ", line));
  for (const std::string& assignment_id : it->second.assignment_ids) {
    EndAssignmentLocked(assignment_id);
  }
  cohorts_.erase(it);
}

void RoundCoordinator::AdvanceCohortLocked(int64_t id, absl::Time now) {
  auto it = cohorts_.find(id);
  if (it == cohorts_.end() || phase_ != Phase::kTraining ||
      it->second.unmasking != Unmasking::kNone) {
    return;
  }
  SecureCohort& cohort = it->second;
  const SecureAggregationRound::State state = cohort.protocol->Advance(now);
  ReportCulpritsLocked(cohort);
  const std::vector<SecAggPhaseStats>& closed = cohort.protocol->closed_phases();
  for (; cohort.phases_queued < closed.size(); ++cohort.phases_queued) {
    pending_phases_.emplace_back(cohort.round, closed[cohort.phases_queued]);
  }
  switch (state) {
    case SecureAggregationRound::State::kRunning:
      return;
    case SecureAggregationRound::State::kReadyToFinish:
      cohort.unmasking = Unmasking::kReady;  // FinishUnmasking, outside the lock
      return;
    case SecureAggregationRound::State::kAborted:
      DropCohortLocked(id, "secagg_round_aborted",
                       std::string(cohort.protocol->abort_status().message()));
      return;
    case SecureAggregationRound::State::kSucceeded:
      break;
  }
  RoundOutcome outcome;
  outcome.round = rounds_completed_ + 1;
  outcome.participants = cohort.protocol->included();
  outcome.train_loss = cohort.protocol->mean_train_loss();
  std::string refusal;
  absl::StatusOr<std::vector<float>> average = CohortAverageLocked(cohort, outcome, &refusal);
  if (!average.ok()) {
    if (refusal.empty()) {
      fatal_error_ = average.status();
    } else {
      DropCohortLocked(id, refusal, std::string(average.status().message()));
    }
    return;
  }
  if (!buffered()) {
    CommitAverageLocked(*average, outcome, now, cohort.protocol->included_clients());
    return;
  }
  // FedBuff: the cohort's devices are done (their slots free up); its average waits for its turn.
  UnmaskedCohort unmasked{
      .round = cohort.round, .average = *std::move(average), .outcome = outcome};
  for (const std::string& assignment_id : cohort.assignment_ids) {
    if (auto a = assignments_.find(assignment_id); a != assignments_.end()) {
      unmasked.participation.assigned.push_back(a->second.client_id);
    }
    EndAssignmentLocked(assignment_id);
  }
  unmasked.participation.aggregated = cohort.protocol->included_clients();
  unmasked.outcome.assigned = static_cast<int64_t>(cohort.assignment_ids.size());
  cohorts_.erase(it);
  unmasked_.push_back(std::move(unmasked));
  CommitUnmaskedCohortLocked(now);
}

void RoundCoordinator::CommitUnmaskedCohortLocked(absl::Time now) {
  if (unmasked_.empty() || pending_commit_.has_value() || phase_ != Phase::kTraining ||
      rounds_completed_ >= options_.rounds) {
    return;
  }
  UnmaskedCohort cohort = std::move(unmasked_.front());
  unmasked_.pop_front();
  // Every member trained from version cohort.round - 1: one staleness for the whole sum.
  const int64_t staleness = rounds_completed_ + 1 - cohort.round;
  aggregation::WeighByStaleness(options_.fedbuff->staleness, staleness,
                                absl::MakeSpan(cohort.average));
  RoundOutcome outcome = std::move(cohort.outcome);
  outcome.round = rounds_completed_ + 1;
  outcome.staleness_mean = static_cast<double>(staleness);
  outcome.staleness_max = staleness;
  if (hooks_.round_participation) {
    cohort.participation.round = outcome.round;
    participation_ = std::move(cohort.participation);
  }
  CommitAverageLocked(
      cohort.average, outcome, now,
      participation_.has_value() ? participation_->aggregated : std::vector<std::string>{});
}

absl::StatusOr<std::vector<float>> RoundCoordinator::CohortAverageLocked(const SecureCohort& cohort,
                                                                         RoundOutcome& outcome,
                                                                         std::string* refusal) {
  const SecureAggregationRound& protocol = *cohort.protocol;
  if (dp_setup_.has_value()) {
    outcome.examples = protocol.included();  // every weight is 1
    return ReleaseDpSumLocked(protocol.sum(), protocol.included(), outcome);
  }
  if (secagg_quantization_.has_value()) return DecodeQuantizedSumLocked(cohort, outcome, refusal);
  absl::StatusOr<secagg::DecodedSum> decoded = secagg::DecodeSum(*secagg_encoding_, protocol.sum());
  if (!decoded.ok()) {
    *refusal = "secagg_forged_weight";
    return absl::InvalidArgumentError(
        absl::StrCat("the unmasked sum does not decode: ", decoded.status().message(),
                     " (some client encoded a weight it may not claim)"));
  }
  // Each included client may weigh 1 to max_examples_per_client, and its delta's norm is at
  // most its weight x the clip norm (plus stochastic rounding: under one step per value).
  const int64_t included = protocol.included();
  const int64_t max_weight = secagg_encoding_->max_weight;
  if (decoded->total_weight < included || decoded->total_weight > included * max_weight) {
    *refusal = "secagg_forged_weight";
    return absl::InvalidArgumentError(
        absl::StrCat("the decoded total weight ", decoded->total_weight, " of ", included,
                     " clients is outside [", included, ", ", included * max_weight,
                     "]: some client encoded a weight beyond max_examples_per_client ", max_weight,
                     " (the sum does not say which)"));
  }
  double norm_squared = 0;
  for (double v : decoded->weighted_sum) norm_squared += v * v;
  const double norm_bound = static_cast<double>(decoded->total_weight) *
                                secagg_encoding_->clip_norm * (1 + options_.clip_tolerance) +
                            static_cast<double>(included) *
                                std::sqrt(static_cast<double>(decoded->weighted_sum.size())) /
                                secagg_encoding_->scale;
  if (!(std::sqrt(norm_squared) <= norm_bound)) {
    *refusal = "secagg_sum_out_of_range";
    return absl::InvalidArgumentError(absl::StrFormat(
        "the decoded weighted sum has norm %g, more than total weight %d x clip norm %g allows "
        "(%g): some client's delta was not clipped (the sum does not say which)",
        std::sqrt(norm_squared), decoded->total_weight, secagg_encoding_->clip_norm, norm_bound));
  }
  outcome.examples = decoded->total_weight;
  std::vector<float> average = decoded->Average();
  if (compression_.method == compression::CompressionMethod::kRandK) {
    // The cohort's devices sent the values of the coordinates shared for their round only.
    std::vector<float> full(layout_.size(), 0.0f);
    const std::vector<int64_t> kept = compression::RandomKIndices(
        compression::SharedCompressionSeed(options_.plan.run_seed(), cohort.round), layout_.size(),
        compression::KeptCoordinates(compression_, layout_.size()));
    for (size_t j = 0; j < kept.size(); ++j) full[kept[j]] = average[j];
    average = std::move(full);
  }
  return average;
}

absl::StatusOr<std::vector<float>> RoundCoordinator::DecodeQuantizedSumLocked(
    const SecureCohort& cohort, RoundOutcome& outcome, std::string* refusal) {
  compression::SecAggQuantization q = *secagg_quantization_;
  q.rotation_seed = compression::SharedCompressionSeed(options_.plan.run_seed(), cohort.round);
  absl::StatusOr<compression::SecAggQuantizedSum> decoded =
      compression::DecodeSecAggSum(q, cohort.protocol->sum());
  if (!decoded.ok()) {
    *refusal = "secagg_forged_weight";
    return absl::InvalidArgumentError(
        absl::StrCat("the unmasked quantized sum does not decode: ", decoded.status().message()));
  }
  // Each client's weight is stochastically rounded to a level of max_weight / (2^(bits-1) - 1):
  // the decoded total is at most included x (max_weight + one level); and the sum's norm at most
  // that times the clip norm plus every client's rounding (under one level per coordinate).
  const int64_t included = cohort.protocol->included();
  const double level = static_cast<double>(q.max_weight) /
                       static_cast<double>((int64_t{1} << (q.spec.bits - 1)) - 1);
  const double max_total =
      static_cast<double>(included) * (static_cast<double>(q.max_weight) + level);
  if (!(decoded->total_weight > 0) || decoded->total_weight > max_total) {
    *refusal = "secagg_forged_weight";
    return absl::InvalidArgumentError(
        absl::StrFormat("the decoded total weight %g of %d clients is outside (0, %g]: some "
                        "client encoded a weight beyond %d",
                        decoded->total_weight, included, max_total, q.max_weight));
  }
  double norm_squared = 0;
  for (double v : decoded->weighted_sum) norm_squared += v * v;
  const double norm_bound = max_total * q.clip_norm * (1 + options_.clip_tolerance) +
                            static_cast<double>(included) * level * q.clip_norm *
                                std::sqrt(static_cast<double>(decoded->weighted_sum.size()));
  if (!(std::sqrt(norm_squared) <= norm_bound)) {
    *refusal = "secagg_sum_out_of_range";
    return absl::InvalidArgumentError(
        absl::StrFormat("the decoded quantized sum has norm %g, more than %g: some client's delta "
                        "was not clipped (the sum does not say which)",
                        std::sqrt(norm_squared), norm_bound));
  }
  outcome.examples = static_cast<int64_t>(std::llround(decoded->total_weight));
  return decoded->Average();
}

absl::Status RoundCoordinator::Tick(absl::Time now) {
  HandleTick(now);
  FinishUnmasking(now);
  FinishCommit();
  return fatal_error();
}

void RoundCoordinator::HandleTick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (buffered()) {
    ExpireAssignmentsLocked(now);
    AdvanceCohortsLocked(now);        // the cohorts' phase deadlines
    CloseRoundIfCompleteLocked(now);  // a buffer that filled while the last commit was pending
    ExpirePoolLocked(now);
    return;
  }
  AdvanceCohortsLocked(now);
  if (phase_ == Phase::kTraining && now >= round_deadline_ &&
      !AnyCohortUnmaskingLocked(Unmasking::kReady) &&
      !AnyCohortUnmaskingLocked(Unmasking::kRunning)) {
    if (static_cast<int64_t>(received_.size()) >= options_.min_clients) {
      CommitRoundLocked(now);
    } else {
      AbandonRoundLocked();
    }
  }
  ExpirePoolLocked(now);  // in every phase: a pool that only grows during a round is a leak
  if (phase_ == Phase::kWaiting) MaybeStartRoundLocked(now);
}

void RoundCoordinator::CloseAssignmentsLocked() {
  recently_closed_.clear();
  for (const auto& [assignment_id, assignment] : assignments_)
    recently_closed_.emplace(assignment_id, assignment.client_id);
  ForgetOldDeclinesLocked();
  assignments_.clear();
  assignment_of_client_.clear();
  received_.clear();
  declined_this_round_ = 0;
  aggregate_.reset();
  cohorts_.clear();
  unmasked_.clear();
}

void RoundCoordinator::AbandonRoundLocked() {
  ++attempt_;
  ++rounds_abandoned_;
  CloseAssignmentsLocked();
  phase_ = Phase::kWaiting;
}

void RoundCoordinator::CommitRoundLocked(absl::Time now) {
  // Central DP: the noised sum over the fixed denominator; else the weighted mean or the robust
  // aggregate. Either way the same whatever order the updates arrived in.
  if (!aggregate_->CanReport()) {
    // The round closes with >= min_clients >= 1 updates, but Krum needs 2F + 3 of them: the round
    // did not reach enough clients for its aggregator, and starts again.
    const absl::Status why = aggregate_->Report().status();
    RefuseRoundLocked(
        "aggregator_too_few_updates",
        absl::StrCat(aggregation::FormatAggregatorSpec(options_.aggregator), ": ", why.message()));
    return;
  }
  absl::StatusOr<aggregation::AggregateReport> report = aggregate_->Report();
  if (!report.ok()) {  // CanReport() said it could
    fatal_error_ = report.status();
    return;
  }
  RoundOutcome outcome;
  outcome.round = rounds_completed_ + 1;
  outcome.participants = static_cast<int64_t>(received_.size());
  outcome.examples = report->total_examples;
  // loss_sum_ weighs each loss by its example count (by 1 under DP, whose total_weight counts the
  // updates); a robust aggregator's total_weight counts only the updates behind its release.
  const int64_t loss_weight = options_.aggregator.kind == aggregation::AggregatorKind::kMean
                                  ? report->total_weight
                                  : report->total_examples;
  outcome.train_loss = loss_sum_ / static_cast<double>(loss_weight);
  if (buffered()) {
    outcome.staleness_mean =
        static_cast<double>(staleness_sum_) / static_cast<double>(outcome.participants);
    outcome.staleness_max = staleness_max_;
  }
  if (absl::Status moved =
          UpdateClipLocked(unclipped_, outcome.participants, std::nullopt, outcome);
      !moved.ok()) {
    fatal_error_ = moved;
    return;
  }
  CommitAverageLocked(report->average, outcome, now);
}

void RoundCoordinator::CommitAverageLocked(const std::vector<float>& average, RoundOutcome outcome,
                                           absl::Time now,
                                           std::optional<std::vector<std::string>> aggregated) {
  if (participation_.has_value()) {
    std::vector<std::string>& names = participation_->aggregated;
    if (aggregated.has_value()) {
      names = *std::move(aggregated);
    } else {
      for (const auto& [id, digest] : received_) names.push_back(id);
    }
    std::sort(names.begin(), names.end());
  }
  auto all_finite = [](absl::Span<const float> values) {
    return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
  };
  if (!all_finite(average)) {
    RefuseRoundLocked("non_finite_model", "the round's average has a NaN or an infinity");
    return;
  }
  std::vector<float> next = *global_;
  const std::vector<double> optimizer_state = optimizer_->SaveState();
  absl::Status applied = optimizer_->Apply(average, absl::MakeSpan(next));
  if (!applied.ok()) {
    fatal_error_ = applied;
    return;
  }
  if (!all_finite(next)) {
    // Back to the state before this round's step: the model was never replaced.
    if (absl::Status restored = optimizer_->RestoreState(optimizer_state); !restored.ok()) {
      fatal_error_ = restored;
      return;
    }
    RefuseRoundLocked("non_finite_model",
                      "the server optimizer's step gives a global model with a NaN or an "
                      "infinity; the model is kept as it was");
    return;
  }
  global_ = std::make_shared<const std::vector<float>>(std::move(next));
  rounds_completed_ = outcome.round;
  if (options_.dp.has_value()) {
    absl::Status composed =
        accountant_.Compose(round_sampling_rate_, dp_setup_->accounting_noise_multiplier);
    absl::StatusOr<privacy::EpsilonAtDelta> spent =
        composed.ok() ? accountant_.Epsilon(options_.dp->delta)
                      : absl::StatusOr<privacy::EpsilonAtDelta>(composed);
    if (!spent.ok()) {
      fatal_error_ = spent.status();
      return;
    }
    outcome.epsilon = spent->epsilon;
    outcome.sampling_rate = round_sampling_rate_;
    outcome.sampling_seed = round_sampling_seed_;
  }
  attempt_ = 0;
  outcome.seconds = absl::ToDoubleSeconds(now - round_started_);
  // A FedBuff cohort's commit counts its own members (set by CommitUnmaskedCohortLocked).
  if (!(buffered() && options_.secure_aggregation.has_value())) {
    outcome.assigned = buffered() ? buffer_assigned_ : static_cast<int64_t>(assignments_.size());
  }
  if (traffic_.uploads > 0) {
    outcome.upload_bytes =
        static_cast<double>(traffic_.sent) / static_cast<double>(traffic_.uploads);
  }
  if (traffic_.downloads > 0) {
    outcome.download_bytes =
        static_cast<double>(traffic_.received) / static_cast<double>(traffic_.downloads);
  }
  if (!telemetry_.empty()) outcome.device_telemetry = telemetry_.Summary();
  telemetry_.Clear();
  std::optional<RoundParticipation> participation = std::move(participation_);
  participation_.reset();
  if (buffered()) {
    // Devices in flight keep training (their updates join the next buffers, stale); no device is
    // assigned until FinishCommit has run.
    StartNextBufferLocked(now);
  } else {
    CloseAssignmentsLocked();
    // Evaluation, the checkpoint and the hooks run in FinishCommit, outside the lock; until then
    // no round starts and the run is not finished.
    phase_ = Phase::kWaiting;
  }
  history_.push_back(outcome);
  PendingCommit pending;
  pending.outcome = outcome;
  pending.model = global_;
  if (hooks_.save_checkpoint) pending.checkpoint = MakeCheckpointLocked();
  if (options_.dp.has_value()) {
    pending.privacy_record =
        PrivacyLedgerRecord{.round = outcome.round,
                            .sampling_rate = round_sampling_rate_,
                            .noise_multiplier = dp_setup_->accounting_noise_multiplier,
                            .epsilon = *outcome.epsilon};
  }
  pending.participation = std::move(participation);
  pending_commit_ = std::move(pending);
}

void RoundCoordinator::FinishUnmasking(absl::Time now) {
  while (true) {
    int64_t id = 0;
    SecureAggregationRound* protocol = nullptr;
    {
      absl::MutexLock lock(&mu_);
      // The thread that takes a ready cohort unmasks it; the others take another or return.
      for (auto& [cohort_id, cohort] : cohorts_) {
        if (cohort.unmasking == Unmasking::kReady) {
          cohort.unmasking = Unmasking::kRunning;
          id = cohort_id;
          protocol = cohort.protocol.get();
          break;
        }
      }
      if (protocol == nullptr) return;
    }
    // Each survivor's masks expanded over the whole model: RPCs for this cohort meanwhile are
    // told to retry, and no other thread calls its protocol (every use checks its unmasking
    // first), nor drops it.
    protocol->Finish();
    absl::MutexLock lock(&mu_);
    cohorts_.at(id).unmasking = Unmasking::kNone;
    AdvanceCohortLocked(id, now);  // commits or queues (kSucceeded) or drops (kAborted) it
  }
}

void RoundCoordinator::FinishCommit() {
  FlushLog();
  PendingCommit commit;
  {
    absl::MutexLock lock(&mu_);
    // At most one commit is pending (the next round waits for it), and the thread that takes it
    // runs its hooks: the others return at once.
    if (!pending_commit_.has_value() || commit_running_) return;
    commit_running_ = true;
    // Moved, not copied (the checkpoint holds the model): pending_commit_ stays set, with its
    // round, until the hooks have run.
    commit = std::move(*pending_commit_);
  }
  RoundOutcome& outcome = commit.outcome;
  // The release is on record (fsync'ed) before anything else learns of it.
  absl::Status recorded;
  if (commit.privacy_record.has_value() && hooks_.privacy_released) {
    recorded = hooks_.privacy_released(*commit.privacy_record);
  }
  if (!recorded.ok()) {
    absl::MutexLock lock(&mu_);
    pending_commit_.reset();
    commit_running_ = false;
    fatal_error_ = recorded;
    return;
  }
  if (hooks_.evaluate) {
    absl::StatusOr<std::pair<double, double>> eval = hooks_.evaluate(*commit.model);
    if (eval.ok()) {
      outcome.accuracy = eval->first;
      outcome.loss = eval->second;
    }
  }
  absl::Status saved;
  if (commit.checkpoint.has_value()) {
    v1::Checkpoint& checkpoint = *commit.checkpoint;
    if (outcome.accuracy.has_value() && checkpoint.history_size() > 0) {
      v1::RoundRecord* last = checkpoint.mutable_history(checkpoint.history_size() - 1);
      last->set_accuracy(*outcome.accuracy);
      last->set_loss(*outcome.loss);
    }
    saved = hooks_.save_checkpoint(checkpoint);
  }
  // Before the run can be seen finished (a binary exits then): the metrics line and log first.
  if (saved.ok() && commit.participation.has_value() && hooks_.round_participation) {
    hooks_.round_participation(*commit.participation);
  }
  if (saved.ok() && hooks_.round_committed) hooks_.round_committed(outcome);
  {
    absl::MutexLock lock(&mu_);
    for (RoundOutcome& recorded : history_) {
      if (recorded.round == outcome.round) {
        recorded.accuracy = outcome.accuracy;
        recorded.loss = outcome.loss;
      }
    }
    pending_commit_.reset();
    commit_running_ = false;
    if (!saved.ok()) {
      fatal_error_ = saved;
      return;
    }
    // FedBuff keeps training between commits (until its first device, after a restart, waits).
    phase_ = rounds_completed_ >= options_.rounds ? Phase::kFinished
             : buffered()                         ? phase_
                                                  : Phase::kWaiting;
    if (phase_ == Phase::kWaiting) BudgetExhaustedLocked();
  }
}

v1::Checkpoint RoundCoordinator::MakeCheckpointLocked() const {
  v1::Checkpoint c;
  c.set_format_version(kCheckpointFormatVersion);
  c.set_rounds_completed(rounds_completed_);
  c.set_model_name(options_.model_name);
  *c.mutable_layout() = LayoutToProto(layout_);
  c.mutable_global_parameters()->Add(global_->begin(), global_->end());
  c.set_server_optimizer(
      std::string(aggregation::ServerOptimizerKindName(options_.server_optimizer.kind)));
  const std::vector<double> state = optimizer_->SaveState();
  c.mutable_server_optimizer_state()->Add(state.begin(), state.end());
  c.set_run_seed(options_.plan.run_seed());
  for (const RoundOutcome& r : history_) {
    auto* record = c.add_history();
    record->set_round(r.round);
    record->set_participants(r.participants);
    record->set_assigned(r.assigned);
    record->set_examples(r.examples);
    record->set_train_loss(r.train_loss);
    record->set_upload_bytes(r.upload_bytes);
    record->set_download_bytes(r.download_bytes);
    record->set_accuracy(r.accuracy.value_or(-1));
    record->set_loss(r.loss.value_or(-1));
    record->set_seconds(r.seconds);
    record->set_epsilon(r.epsilon.value_or(0));
    record->set_dp_sampling_rate(r.sampling_rate.value_or(0));
    record->set_dp_sampling_seed(r.sampling_seed.value_or(0));
    if (r.device_telemetry.has_value()) *record->mutable_device_telemetry() = *r.device_telemetry;
  }
  if (options_.dp.has_value()) {
    c.mutable_dp_rdp()->Add(accountant_.rdp().begin(), accountant_.rdp().end());
  }
  if (adaptive_clipping_.has_value()) {
    c.set_dp_clip_norm(adaptive_clipping_->state().clip_norm);
    c.set_dp_clip_rounds(adaptive_clipping_->state().rounds);
  }
  return c;
}

v1::GetStatusResponse RoundCoordinator::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  v1::GetStatusResponse s;
  s.set_current_round(phase_ == Phase::kFinished ? rounds_completed_ : rounds_completed_ + 1);
  s.set_phase(phase_ == Phase::kWaiting ? "waiting"
              : phase_ == Phase::kTraining
                  ? (RoundCohortLocked() != nullptr ? CohortPhase(*RoundCohortLocked())
                                                    : std::string("training"))
                  : "finished");
  s.set_checked_in(static_cast<int64_t>(pool_.size()));
  s.set_assigned(static_cast<int64_t>(assignments_.size()));
  s.set_received(static_cast<int64_t>(received_.size()));
  s.set_waiting_for(WaitingForLocked(now));
  s.set_rounds_total(options_.rounds);
  for (const RoundOutcome& r : history_) {
    auto* summary = s.add_history();
    summary->set_round(r.round);
    summary->set_participants(r.participants);
    summary->set_accuracy(r.accuracy.value_or(-1));
    summary->set_loss(r.loss.value_or(-1));
    summary->set_seconds(r.seconds);
    summary->set_assigned(r.assigned);
    summary->set_examples(r.examples);
    summary->set_train_loss(r.train_loss);
    summary->set_upload_bytes(r.upload_bytes);
    summary->set_download_bytes(r.download_bytes);
    if (r.epsilon.has_value()) summary->set_epsilon(*r.epsilon);
    if (r.device_telemetry.has_value()) *summary->mutable_device_telemetry() = *r.device_telemetry;
  }
  s.set_rounds_abandoned(rounds_abandoned_);
  s.set_device_telemetry_invalid(telemetry_invalid_);
  if (options_.dp.has_value()) {
    s.set_delta(options_.dp->delta);
    s.set_epsilon(history_.empty() ? 0.0 : history_.back().epsilon.value_or(0.0));
  }
  // While unmasking, FinishUnmasking's thread owns the round.
  if (const SecureCohort* cohort = RoundCohortLocked();
      phase_ == Phase::kTraining && cohort != nullptr && cohort->unmasking == Unmasking::kNone) {
    for (const SecAggPhaseStats& p : cohort->protocol->closed_phases()) {
      v1::SecAggPhaseSummary* summary = s.add_secagg_phases();
      summary->set_phase(p.phase);
      summary->set_seconds(absl::ToDoubleSeconds(p.duration));
      summary->set_clients_in(p.clients_in);
      summary->set_clients_out(p.clients_out);
    }
  }
  for (const auto& [reason, count] : refusals_) (*s.mutable_refusals())[reason] = count;
  for (const auto& [reason, count] : declines_) (*s.mutable_declines())[reason] = count;
  return s;
}

bool RoundCoordinator::NoCommitOrUnmaskingRunningLocked() const {
  return !commit_running_ && !AnyCohortUnmaskingLocked(Unmasking::kRunning);
}

absl::StatusOr<int64_t> RoundCoordinator::Drain() {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
  }
  int64_t completed = 0;
  std::optional<v1::Checkpoint> checkpoint;
  for (bool drained = false; !drained;) {
    // A secure round ready to unmask, or a committed round whose hooks no thread has run yet: run
    // them here (each returns at once when another thread has them).
    FinishUnmasking(absl::Now());
    FinishCommit();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &RoundCoordinator::NoCommitOrUnmaskingRunningLocked));
    // Another thread finished a phase meanwhile: take what it left.
    if (pending_commit_.has_value() || AnyCohortUnmaskingLocked(Unmasking::kReady)) continue;
    if (phase_ == Phase::kTraining) {
      LogLocked(absl::StrCat("round ", rounds_completed_ + 1, " abandoned (shutting down) with ",
                             received_.size(), " of ", assignments_.size(),
                             " updates; rounds completed: ", rounds_completed_));
      AbandonRoundLocked();
    }
    completed = rounds_completed_;
    if (hooks_.save_checkpoint) checkpoint = MakeCheckpointLocked();
    drained = true;
  }
  FlushLog();
  if (checkpoint.has_value()) FEDKIT_RETURN_IF_ERROR(hooks_.save_checkpoint(*checkpoint));
  return completed;
}

bool RoundCoordinator::finished() const {
  absl::MutexLock lock(&mu_);
  return phase_ == Phase::kFinished;
}

int64_t RoundCoordinator::rounds_completed() const {
  absl::MutexLock lock(&mu_);
  return rounds_completed_;
}

std::vector<float> RoundCoordinator::global_parameters() const {
  absl::MutexLock lock(&mu_);
  return *global_;
}

std::string RoundCoordinator::stop_reason() const {
  absl::MutexLock lock(&mu_);
  return stop_reason_;
}

absl::Status RoundCoordinator::fatal_error() const {
  absl::MutexLock lock(&mu_);
  return fatal_error_;
}

}  // namespace fedkit::server
