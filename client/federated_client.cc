#include "client/federated_client.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/local_trainer.h"
#include "compression/secagg_compression.h"
#include "compression/secagg_quantization.h"
#include "compression/seeds.h"
#include "core/parameter_layout.h"
#include "core/retry_after.h"
#include "core/status_macros.h"
#include "models/flat_params.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/distributed_dp_encoding.h"
#include "privacy/dp_setup.h"
#include "privacy/noise.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/encoding.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/secagg_conversion.h"

namespace fedkit::client {
namespace {

// Failures of the link or of an overloaded/restarting server: the same call may succeed later.
bool IsTransient(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDataLoss:   // a corrupted download stream
    case absl::StatusCode::kCancelled:  // not by us (checked first): e.g. the server shutting down
      return true;
    default:
      return false;
  }
}

// The coordinator no longer wants this assignment (round closed, deadline passed, unknown id):
// give up on the round and check in again.
bool EndsRound(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kInvalidArgument:
      return true;
    default:
      return false;
  }
}

TrainingPlan FromProto(const v1::TrainingPlan& plan) {
  TrainingPlan out;
  out.local_epochs = plan.local_epochs();
  out.batch_size = plan.batch_size();
  out.learning_rate = plan.learning_rate();
  out.momentum = plan.momentum();
  out.prox_mu = plan.prox_mu();
  out.clip_norm = plan.clip_norm();
  // An invalid spec is refused where the upload is encoded (FederatedClient::EncodeUpdate).
  out.compression = proto::CompressionFromProto(plan.compression()).value_or(out.compression);
  out.max_steps = plan.max_steps();
  out.max_seconds = plan.max_seconds();
  return out;
}

// Empty when the layouts agree (names and shapes, in order); otherwise what differs.
std::string LayoutMismatch(const ParameterLayout& assigned, const ParameterLayout& local) {
  const size_t n = std::min(assigned.entries.size(), local.entries.size());
  for (size_t i = 0; i < n; ++i) {
    const auto& a = assigned.entries[i];
    const auto& b = local.entries[i];
    if (a.name != b.name || a.shape != b.shape) {
      return absl::StrCat("entry ", i, " is ", a.name, " [", absl::StrJoin(a.shape, ", "),
                          "] but the local model has ", b.name, " [", absl::StrJoin(b.shape, ", "),
                          "]");
    }
  }
  if (assigned.entries.size() != local.entries.size()) {
    return absl::StrCat("layout has ", assigned.entries.size(), " entries but the local model has ",
                        local.entries.size());
  }
  return "";
}

}  // namespace

// Exponential backoff with full jitter (delay ~ U[0, min(max, initial * 2^attempt)]), plus the
// give-up clock: the time since the last successful call.
class FederatedClient::Backoff {
 public:
  explicit Backoff(const FederatedClientOptions& options)
      : initial_(std::max(options.initial_backoff, absl::Milliseconds(1))),
        max_(std::max(options.max_backoff, initial_)),
        give_up_after_(options.give_up_after),
        rng_(options.jitter_seed),
        last_success_(absl::Now()) {}

  void Succeeded() {
    attempt_ = 0;
    last_success_ = absl::Now();
  }

  bool Exhausted() const {
    return give_up_after_ > absl::ZeroDuration() && absl::Now() - last_success_ >= give_up_after_;
  }

  // The next delay, never past the give-up point (so giving up is not delayed by a long wait).
  absl::Duration NextDelay() {
    const absl::Duration cap = std::min(max_, initial_ * (int64_t{1} << std::min(attempt_, 40)));
    ++attempt_;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    absl::Duration delay = cap * unit(rng_);
    if (give_up_after_ > absl::ZeroDuration()) {
      delay = std::min(
          delay, std::max(absl::ZeroDuration(), last_success_ + give_up_after_ - absl::Now()));
    }
    return delay;
  }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const absl::Duration give_up_after_;
  std::mt19937_64 rng_;
  absl::Time last_success_;
  int attempt_ = 0;
};

FederatedClient::FederatedClient(FederatedClientOptions options,
                                 std::unique_ptr<CoordinatorChannel> channel,
                                 std::shared_ptr<models::Model> model, data::Examples examples)
    : FederatedClient(options, std::move(channel),
                      std::make_unique<FixedModelSource>(std::move(model), options.model_name),
                      std::move(examples)) {}

FederatedClient::FederatedClient(FederatedClientOptions options,
                                 std::unique_ptr<CoordinatorChannel> channel,
                                 std::unique_ptr<ModelSource> models, data::Examples examples)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      models_(std::move(models)),
      probe_(options_.telemetry_probe != nullptr
                 ? options_.telemetry_probe
                 : std::shared_ptr<DeviceProbe>(std::make_shared<LinuxDeviceProbe>())),
      examples_(std::move(examples)) {
  if (options_.model_dir.empty()) return;
  store_ = std::make_unique<GlobalModelStore>(options_.model_dir);
  absl::StatusOr<GlobalModelSnapshot> stored = store_->Load();
  if (stored.ok()) {
    Log(absl::StrFormat("last good global model: %s of round %d from %s", stored->model_name,
                        stored->round, store_->path()));
    absl::MutexLock lock(&latest_mu_);
    latest_ = *std::move(stored);
  } else if (stored.status().code() != absl::StatusCode::kNotFound) {
    Log(absl::StrCat("ignoring the stored global model: ", stored.status().message()));
  }
}

int64_t ModelBytes(int64_t model_size, int64_t artifact_bytes) {
  const int64_t parameter_bytes = model_size > std::numeric_limits<int64_t>::max() / 4
                                      ? std::numeric_limits<int64_t>::max()
                                      : 4 * std::max<int64_t>(model_size, 0);
  return std::max(parameter_bytes, artifact_bytes);
}

absl::Status LoadGlobalModel(const GlobalModelSnapshot& snapshot, models::Model& model) {
  FEDKIT_RETURN_IF_ERROR(ValidateGlobalModelSnapshot(snapshot));
  const ParameterLayout local = models::LayoutOf(model);
  if (std::string why = LayoutMismatch(snapshot.layout, local); !why.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the global model does not fit this model: ", why));
  }
  return models::AssignParameters(*snapshot.parameters, model);
}

absl::StatusOr<GlobalModelSnapshot> FederatedClient::LatestModel() const {
  absl::MutexLock lock(&latest_mu_);
  if (!latest_.has_value()) return absl::NotFoundError("no global model yet");
  return *latest_;
}

bool FederatedClient::Eligible() const { return !options_.eligibility || options_.eligibility(); }

absl::Status FederatedClient::WaitUntilEligible(Backoff& backoff) {
  if (Eligible()) return absl::OkStatus();
  Log("device not eligible (its conditions do not hold); waiting");
  absl::Duration wait = std::max(options_.initial_backoff, absl::Milliseconds(1));
  const absl::Duration cap = std::max(options_.max_backoff, wait);
  while (!Eligible()) {
    if (!Wait(wait)) return absl::CancelledError("cancelled");
    wait = std::min(wait * 2, cap);
  }
  // The give-up clock measures calls that fail, not the time a device was kept ineligible.
  backoff.Succeeded();
  Log("device eligible again");
  return absl::OkStatus();
}

absl::Status FederatedClient::DropOut(const v1::RoundAssignment& assignment) {
  v1::DeclineRequest decline;
  decline.set_client_id(options_.client_id);
  decline.set_assignment_id(assignment.assignment_id());
  decline.set_round(assignment.round());
  decline.set_reason(v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  absl::StatusOr<v1::DeclineResponse> told = channel_->Decline(decline);
  Log(absl::StrCat(
      "round ", assignment.round(), ": device no longer eligible; dropped out",
      told.ok()
          ? " (the coordinator was told)"
          : absl::StrCat(" (telling the coordinator failed: ", told.status().ToString(), ")")));
  return cancelled_.HasBeenNotified() ? absl::CancelledError("cancelled") : absl::OkStatus();
}

void FederatedClient::KeepGlobalModel(const v1::RoundAssignment& assignment,
                                      const ParameterLayout& layout,
                                      const std::vector<float>& global) {
  GlobalModelSnapshot snapshot;
  snapshot.model_name = assignment.model_name();
  snapshot.round = assignment.round();
  snapshot.layout = layout;
  snapshot.parameters = std::make_shared<const std::vector<float>>(global);
  if (absl::Status valid = ValidateGlobalModelSnapshot(snapshot); !valid.ok()) {
    Log(absl::StrCat("round ", assignment.round(),
                     ": downloaded model not kept as the last good one: ", valid.message()));
    return;
  }
  {
    absl::MutexLock lock(&latest_mu_);
    latest_ = snapshot;
  }
  // Hashing and fsync outside the lock: LatestModel() callers never wait for the disk.
  if (store_ != nullptr) {
    if (absl::Status saved = store_->Save(snapshot); !saved.ok()) {
      Log(absl::StrCat("round ", assignment.round(),
                       ": could not store the global model: ", saved.message()));
    }
  }
}

FederatedClient::~FederatedClient() = default;

void FederatedClient::Cancel() {
  if (cancel_requested_.exchange(true)) return;
  cancelled_.Notify();
  if (channel_ != nullptr) channel_->Cancel();
}

void FederatedClient::Log(absl::string_view line) const {
  if (options_.log) options_.log(line);
}

bool FederatedClient::Wait(absl::Duration duration) {
  if (duration <= absl::ZeroDuration()) return !cancelled_.HasBeenNotified();
  return !cancelled_.WaitForNotificationWithTimeout(duration);
}

absl::Status FederatedClient::RetryAfter(const absl::Status& error, absl::string_view what,
                                         Backoff& backoff) {
  if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
  if (!IsTransient(error.code())) return error;
  if (backoff.Exhausted()) {
    Log(absl::StrCat("giving up: ", what, " failed: ", error.ToString()));
    return error;
  }
  // The coordinator's retry hint (a full pool, a quota) is a floor on the wait: backing off less
  // would only be refused again.
  absl::Duration delay = backoff.NextDelay();
  if (std::optional<absl::Duration> hint = fedkit::RetryAfterOf(error); hint.has_value()) {
    delay = std::max(delay, *hint);
  }
  Log(absl::StrCat(what, " failed (", absl::StatusCodeToString(error.code()), ": ", error.message(),
                   "); retrying in ",
                   absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)))));
  if (!Wait(delay)) return absl::CancelledError("cancelled");
  return absl::OkStatus();
}

absl::Status FederatedClient::Run() {
  Backoff backoff(options_);
  v1::CheckInRequest request;
  request.set_client_id(options_.client_id);
  request.set_api_version(1);
  request.mutable_capabilities()->set_num_examples(examples_.size());
  request.mutable_capabilities()->set_max_model_bytes(
      std::max<int64_t>(options_.max_model_bytes, 0));
  request.mutable_capabilities()->set_memory_bytes(std::max<int64_t>(options_.memory_bytes, 0));
  for (const std::string& name : models_->advertised_models()) {
    request.mutable_capabilities()->add_model_names(name);
  }

  while (true) {
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    FEDKIT_RETURN_IF_ERROR(WaitUntilEligible(backoff));
    const std::optional<ChannelTraffic> traffic_before = channel_->traffic();
    absl::StatusOr<v1::CheckInResponse> response = channel_->CheckIn(request);
    if (!response.ok()) {
      const absl::Status status = RetryAfter(response.status(), "check-in", backoff);
      if (!status.ok()) return status;
      continue;
    }
    backoff.Succeeded();
    switch (response->outcome_case()) {
      case v1::CheckInResponse::kFinished:
        Log(absl::StrCat("run finished after ", response->finished().rounds_completed(),
                         " rounds; contributed to ", rounds_contributed_.load()));
        return absl::OkStatus();
      case v1::CheckInResponse::kRetryLater: {
        const double seconds = response->retry_later().retry_after_seconds();
        // NaN and negatives mean "now"; a day caps an absurd value.
        const absl::Duration wait =
            seconds > 0 ? std::min(absl::Seconds(seconds), absl::Hours(24)) : absl::ZeroDuration();
        if (wait >= absl::Minutes(1)) {  // e.g. the model is too large for this device
          Log(absl::StrCat("the coordinator says to come back in ", absl::FormatDuration(wait),
                           ": ", response->retry_later().reason()));
        }
        if (!Wait(wait)) return absl::CancelledError("cancelled");
        break;
      }
      case v1::CheckInResponse::kAssignment: {
        const absl::Status status = DoRound(response->assignment(), backoff, traffic_before);
        if (!status.ok()) return status;
        break;
      }
      default:  // an outcome this client does not know (a newer server): wait and ask again
        Log("check-in answered with no known outcome; checking in again");
        if (!Wait(backoff.NextDelay())) return absl::CancelledError("cancelled");
        break;
    }
  }
}

absl::Status FederatedClient::DoRound(const v1::RoundAssignment& assignment, Backoff& backoff,
                                      std::optional<ChannelTraffic> traffic_at_check_in) {
  const int64_t round = assignment.round();
  const std::string round_name = absl::StrCat("round ", round);
  RoundTelemetry telemetry(probe_.get(), traffic_at_check_in);
  if (const int64_t needed =
          ModelBytes(assignment.model_size(), assignment.artifact().size_bytes());
      options_.max_model_bytes > 0 && needed > options_.max_model_bytes) {
    return Refuse(assignment,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "the model needs ", needed, " bytes, over this device's limit of ",
                      options_.max_model_bytes, " (max_model_bytes)")));
  }
  bool check_in_again = false;
  absl::StatusOr<std::shared_ptr<models::Model>> model =
      ResolveModel(assignment, backoff, &check_in_again);
  if (!model.ok()) return model.status();
  if (check_in_again) return absl::OkStatus();
  const ParameterLayout local_layout = models::LayoutOf(**model);
  if (assignment.model_size() != local_layout.size()) {
    return Refuse(assignment, absl::FailedPreconditionError(absl::StrCat(
                                  "assigns a model of ", assignment.model_size(),
                                  " parameters but the local model has ", local_layout.size())));
  }
  if (std::string why = LayoutMismatch(LayoutFromProto(assignment.layout()), local_layout);
      !why.empty()) {
    return Refuse(assignment, absl::FailedPreconditionError(absl::StrCat(
                                  "assigns a model that does not fit the local one: ", why)));
  }

  // Download.
  v1::GetModelRequest model_request;
  model_request.set_client_id(options_.client_id);
  model_request.set_assignment_id(assignment.assignment_id());
  model_request.set_round(round);
  std::vector<float> global;
  v1::ParameterLayout downloaded_layout;
  while (true) {
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    absl::Status status =
        channel_->GetModel(model_request, local_layout.size(), &global, &downloaded_layout);
    if (status.ok()) break;
    if (!cancelled_.HasBeenNotified() && EndsRound(status.code())) {
      Log(absl::StrCat(round_name, ": download refused (", status.ToString(),
                       "); checking in again"));
      // A short jittered pause, so that a coordinator re-offering a refused assignment does not
      // make this loop spin.
      return Wait(backoff.NextDelay()) ? absl::OkStatus() : absl::CancelledError("cancelled");
    }
    status = RetryAfter(status, absl::StrCat(round_name, ": download"), backoff);
    if (!status.ok()) return status;
  }
  backoff.Succeeded();
  if (static_cast<int64_t>(global.size()) != local_layout.size()) {
    return absl::FailedPreconditionError(absl::StrCat(round_name, ": downloaded ", global.size(),
                                                      " parameters but the local model has ",
                                                      local_layout.size()));
  }
  if (downloaded_layout.entries_size() > 0) {
    if (std::string why = LayoutMismatch(LayoutFromProto(downloaded_layout), local_layout);
        !why.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(round_name, ": downloaded model does not fit the local one: ", why));
    }
  }

  telemetry.ModelReady();
  Log(absl::StrFormat("%s: model downloaded (%d parameters)", round_name, global.size()));
  KeepGlobalModel(assignment, local_layout, global);
  if (!Eligible()) return DropOut(assignment);
  if (!assignment.secure_aggregation().protocol().empty()) {
    return DoSecureRound(assignment, *model, global, backoff, telemetry);
  }

  bool ineligible = false;
  absl::StatusOr<ClientUpdate> update =
      TrainForRound(assignment, *model, global, telemetry, &ineligible);
  if (ineligible) return DropOut(assignment);
  if (!update.ok()) return update.status();

  // Upload; after a transport error the same bytes again (the coordinator deduplicates).
  v1::UpdateHeader header;
  header.set_client_id(options_.client_id);
  header.set_assignment_id(assignment.assignment_id());
  header.set_round(round);
  int64_t num_examples = update->num_examples;
  if (assignment.max_examples() > 0) {
    num_examples = std::min(num_examples, assignment.max_examples());
  }
  header.set_num_examples(num_examples);
  header.set_total_size(static_cast<int64_t>(update->delta.size()));
  header.set_train_loss(update->train_loss);
  if (assignment.report_unclipped()) {
    header.set_unclipped(privacy::AdaptiveClipping::UnclippedBit(
                             update->delta_norm, assignment.plan().clip_norm()) == 1);
  }
  // A compressed upload is encoded once: a retry sends the same bytes (and the error feedback of
  // top-k / random-k counts them once).
  std::optional<std::string> encoded;
  // Error feedback counts only what the coordinator accepted: a refused upload (e.g. after its
  // round closed) gives the encoder back its residual from before.
  std::optional<compression::UpdateEncoder> encoder_before = encoder_;
  if (assignment.plan().compression().method() != v1::CompressionParams::NONE) {
    absl::StatusOr<std::string> bytes = EncodeUpdate(assignment, update->delta);
    if (!bytes.ok()) return Refuse(assignment, bytes.status());
    encoded = *std::move(bytes);
    header.set_compressed_size(static_cast<int64_t>(encoded->size()));
  }
  AddTelemetry(telemetry,
               encoded.has_value() ? static_cast<int64_t>(encoded->size())
                                   : 4 * static_cast<int64_t>(update->delta.size()),
               header);
  while (true) {
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    absl::StatusOr<v1::UploadResponse> response =
        encoded.has_value() ? channel_->UploadCompressedUpdate(header, *encoded)
                            : channel_->UploadUpdate(header, update->delta);
    if (response.ok()) {
      backoff.Succeeded();
      if (round != last_counted_round_) {
        last_counted_round_ = round;
        rounds_contributed_.fetch_add(1);
      }
      Log(absl::StrFormat(
          "%s: trained on %d examples (%d steps%s), loss %.4f, delta norm %.4f, uploaded%s",
          round_name, update->num_examples, update->steps,
          update->budget_exhausted ? ", the plan's budget" : "", update->train_loss,
          update->delta_norm, response->duplicate() ? " (duplicate)" : ""));
      return absl::OkStatus();
    }
    const absl::Status& error = response.status();
    if (!cancelled_.HasBeenNotified() && EndsRound(error.code())) {
      encoder_ = std::move(encoder_before);
      Log(absl::StrCat(round_name, ": upload refused (", error.ToString(), "); checking in again"));
      return Wait(backoff.NextDelay()) ? absl::OkStatus() : absl::CancelledError("cancelled");
    }
    const absl::Status status = RetryAfter(error, absl::StrCat(round_name, ": upload"), backoff);
    if (!status.ok()) return status;
  }
}

namespace {

// Under secure aggregation with plan.compression (compression/secagg_compression.h): the
// masked-vector values, quantized with the round's shared rotation and scale, or random-k's shared
// coordinates (through the device's `encoder` and its error feedback). INVALID_ARGUMENT when the
// protocol's parameters do not fit the spec.
absl::StatusOr<std::vector<uint64_t>> EncodeSecureCompressedUpdate(
    const v1::RoundAssignment& assignment, const SecAggAssignment& params,
    absl::Span<const float> delta, int64_t weight, uint64_t rounding_seed,
    std::optional<compression::UpdateEncoder>& encoder_) {
  absl::StatusOr<compression::CompressionSpec> spec =
      proto::CompressionFromProto(assignment.plan().compression());
  if (!spec.ok()) return spec.status();
  FEDKIT_RETURN_IF_ERROR(compression::CheckSecAggCompression(*spec, /*with_dp=*/false));
  const int64_t dim = static_cast<int64_t>(delta.size());
  if (compression::SecAggVectorLength(*spec, dim) != params.config.vector_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("the protocol's vector length ", params.config.vector_length, " is not ",
                     compression::FormatCompressionSpec(*spec), "'s ",
                     compression::SecAggVectorLength(*spec, dim), " for ", dim, " parameters"));
  }
  // The round's devices share the rotation / kept coordinates.
  const uint64_t shared_seed =
      compression::SharedCompressionSeed(assignment.plan().run_seed(), assignment.round());
  if (spec->method == compression::CompressionMethod::kRandK) {
    if (!encoder_.has_value() || encoder_->spec() != *spec || encoder_->dimension() != dim) {
      FEDKIT_ASSIGN_OR_RETURN(compression::UpdateEncoder encoder,
                              compression::UpdateEncoder::Create(*spec, dim));
      encoder_.emplace(std::move(encoder));
    }
    const std::vector<int64_t> kept =
        compression::RandomKIndices(shared_seed, dim, compression::KeptCoordinates(*spec, dim));
    FEDKIT_ASSIGN_OR_RETURN(std::vector<float> values,
                            compression::RandomKValuesForSecureAggregation(
                                *encoder_, delta, params.encoding.clip_norm, shared_seed, kept));
    return secagg::EncodeWeightedUpdate(params.encoding, values, weight, rounding_seed);
  }
  FEDKIT_ASSIGN_OR_RETURN(const compression::SecAggQuantization q,
                          compression::ChooseSecAggQuantization(
                              *spec, dim, params.encoding.clip_norm, params.encoding.max_weight,
                              params.encoding.max_clients, shared_seed));
  if (q.modulus_bits != params.config.modulus_bits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the protocol's modulus of ", params.config.modulus_bits, " bits is not the ",
        q.modulus_bits, " bits ", compression::FormatCompressionSpec(*spec), " needs"));
  }
  return compression::EncodeForSecAgg(q, delta, weight, rounding_seed);
}

}  // namespace

namespace {

v1::DeclineRequest::Reason DeclineReason(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kPermissionDenied:
      return v1::DeclineRequest::ARTIFACT_NOT_APPROVED;
    case absl::StatusCode::kDataLoss:
      return v1::DeclineRequest::ARTIFACT_HASH_MISMATCH;
    case absl::StatusCode::kInvalidArgument:
      return v1::DeclineRequest::ARTIFACT_INVALID;
    case absl::StatusCode::kResourceExhausted:
      return v1::DeclineRequest::ARTIFACT_TOO_LARGE;
    default:
      return v1::DeclineRequest::MODEL_MISMATCH;
  }
}

}  // namespace

absl::Status FederatedClient::Refuse(const v1::RoundAssignment& assignment,
                                     const absl::Status& why) {
  const std::string round_name = absl::StrCat("round ", assignment.round());
  v1::DeclineRequest decline;
  decline.set_client_id(options_.client_id);
  decline.set_assignment_id(assignment.assignment_id());
  decline.set_round(assignment.round());
  decline.set_reason(DeclineReason(why.code()));
  absl::StatusOr<v1::DeclineResponse> told = channel_->Decline(decline);
  Log(absl::StrCat(
      round_name, ": refused: ", why.message(),
      told.ok() ? "; the coordinator was told"
                : absl::StrCat("; telling the coordinator failed: ", told.status().ToString())));
  return absl::Status(why.code(), absl::StrCat(round_name, ": ", why.message()));
}

absl::StatusOr<std::shared_ptr<models::Model>> FederatedClient::ResolveModel(
    const v1::RoundAssignment& assignment, Backoff& backoff, bool* check_in_again) {
  *check_in_again = false;
  const std::string round_name = absl::StrCat("round ", assignment.round());
  absl::StatusOr<std::shared_ptr<models::Model>> model = models_->ModelFor(assignment);
  if (model.status().code() == absl::StatusCode::kNotFound) {
    const v1::ModelArtifact& artifact = assignment.artifact();
    v1::GetArtifactRequest request;
    request.set_client_id(options_.client_id);
    request.set_sha256(artifact.sha256());
    std::string bytes;
    while (true) {
      if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
      request.set_offset(static_cast<int64_t>(bytes.size()));  // resumes after a broken stream
      absl::Status status = channel_->GetArtifact(request, artifact.size_bytes(), &bytes);
      if (status.ok()) break;
      if (!cancelled_.HasBeenNotified() && EndsRound(status.code())) {
        Log(absl::StrCat(round_name, ": artifact download refused (", status.ToString(),
                         "); checking in again"));
        *check_in_again = true;
        if (!Wait(backoff.NextDelay())) return absl::CancelledError("cancelled");
        return std::shared_ptr<models::Model>();
      }
      FEDKIT_RETURN_IF_ERROR(
          RetryAfter(status, absl::StrCat(round_name, ": artifact download"), backoff));
    }
    backoff.Succeeded();
    Log(absl::StrFormat("%s: downloaded artifact sha256:%s (%d bytes)", round_name,
                        artifact.sha256().substr(0, 12), bytes.size()));
    model = models_->Install(assignment, std::move(bytes));
  }
  if (!model.ok()) return Refuse(assignment, model.status());
  return model;
}

absl::StatusOr<std::string> FederatedClient::EncodeUpdate(const v1::RoundAssignment& assignment,
                                                          absl::Span<const float> delta) {
  absl::StatusOr<compression::CompressionSpec> spec =
      proto::CompressionFromProto(assignment.plan().compression());
  if (!spec.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the plan's compression: ", spec.status().message()));
  }
  const int64_t dimension = static_cast<int64_t>(delta.size());
  if (!encoder_.has_value() || encoder_->spec() != *spec || encoder_->dimension() != dimension) {
    // A new spec or model starts a fresh error-feedback residual.
    absl::StatusOr<compression::UpdateEncoder> encoder =
        compression::UpdateEncoder::Create(*spec, dimension);
    if (!encoder.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the plan's compression: ", encoder.status().message()));
    }
    encoder_.emplace(*std::move(encoder));
  }
  const uint64_t seed = compression::UpdateCompressionSeed(
      assignment.plan().run_seed(), assignment.round(), options_.client_index);
  absl::StatusOr<std::string> encoded =
      encoder_->Encode(delta, assignment.plan().clip_norm(), seed);
  if (!encoded.ok()) {
    return absl::Status(encoded.status().code(),
                        absl::StrCat("compressing the update: ", encoded.status().message()));
  }
  return encoded;
}

absl::StatusOr<ClientUpdate> FederatedClient::TrainForRound(const v1::RoundAssignment& assignment,
                                                            std::shared_ptr<models::Model> model,
                                                            const std::vector<float>& global,
                                                            RoundTelemetry& telemetry,
                                                            bool* ineligible) {
  *ineligible = false;
  LocalTrainer trainer(std::move(model));
  // The seed depends on (run seed, round, device index) only, exactly as a simulated client's.
  const uint64_t seed =
      LocalTrainingSeed(assignment.plan().run_seed(), assignment.round(), options_.client_index);
  // Between minibatches: Cancel() and the device's conditions stop training after the current one.
  const StopCheck should_stop = [&](int64_t) -> absl::Status {
    minibatches_trained_.fetch_add(1);
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    if (!Eligible()) {
      *ineligible = true;
      return absl::AbortedError("stopped: device no longer eligible");
    }
    return absl::OkStatus();
  };
  telemetry.TrainingStarted();
  absl::StatusOr<ClientUpdate> update =
      trainer.Train(global, examples_, FromProto(assignment.plan()), seed, should_stop);
  if (update.ok()) {
    telemetry.TrainingFinished(update->num_examples *
                               std::max<int64_t>(assignment.plan().local_epochs(), 0));
  }
  if (!update.ok()) {
    if (update.status().code() == absl::StatusCode::kCancelled) return update.status();
    return absl::Status(update.status().code(),
                        absl::StrCat("round ", assignment.round(),
                                     ": local training: ", update.status().message()));
  }
  return update;
}

void FederatedClient::AddTelemetry(const RoundTelemetry& telemetry, int64_t upload_payload_bytes,
                                   v1::UpdateHeader& header) const {
  if (!options_.send_telemetry) return;
  v1::UpdateChunk header_chunk;  // the upload's first message, without the telemetry
  *header_chunk.mutable_header() = header;
  const int64_t upload_bytes =
      static_cast<int64_t>(header_chunk.ByteSizeLong()) + upload_payload_bytes;
  *header.mutable_telemetry() = telemetry.Report(channel_->traffic(), upload_bytes);
}

absl::StatusOr<v1::SecAggResponse> FederatedClient::SecureAggregationCall(
    const v1::SecAggRequest& request, absl::string_view what, Backoff& backoff, bool* ended_round) {
  *ended_round = false;
  while (true) {
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    absl::StatusOr<v1::SecAggResponse> response = channel_->SecureAggregation(request);
    if (response.ok()) {
      backoff.Succeeded();
      if (response->has_retry_later()) {
        const double seconds = response->retry_later().retry_after_seconds();
        const absl::Duration wait = seconds > 0 ? std::min(absl::Seconds(seconds), absl::Minutes(5))
                                                : absl::Milliseconds(50);
        if (!Wait(wait)) return absl::CancelledError("cancelled");
        continue;
      }
      if (response->has_aborted()) {
        Log(absl::StrCat(what, ": secure aggregation aborted (", response->aborted().reason(),
                         "); checking in again"));
        *ended_round = true;
        return v1::SecAggResponse();
      }
      return response;
    }
    const absl::Status& error = response.status();
    if (!cancelled_.HasBeenNotified() && EndsRound(error.code())) {
      Log(absl::StrCat(what, ": refused (", error.ToString(), "); checking in again"));
      *ended_round = true;
      if (!Wait(backoff.NextDelay())) return absl::CancelledError("cancelled");
      return v1::SecAggResponse();
    }
    FEDKIT_RETURN_IF_ERROR(RetryAfter(error, what, backoff));
  }
}

absl::Status FederatedClient::DoSecureRound(const v1::RoundAssignment& assignment,
                                            std::shared_ptr<models::Model> model,
                                            const std::vector<float>& global, Backoff& backoff,
                                            RoundTelemetry& telemetry) {
  const int64_t round = assignment.round();
  const std::string round_name = absl::StrCat("round ", round);
  // A client that cannot take part (bad parameters) skips the round: the protocol treats it as a
  // dropout, and the next round may be fine.
  auto skip = [&](const absl::Status& why) {
    Log(absl::StrCat(round_name, ": cannot take part in secure aggregation: ", why.message()));
    return Wait(backoff.NextDelay()) ? absl::OkStatus() : absl::CancelledError("cancelled");
  };
  absl::StatusOr<SecAggAssignment> params = SecAggParamsFromProto(assignment.secure_aggregation());
  if (!params.ok()) return skip(params.status());
  if (params->dp_encoding.has_value()) {
    // DP-FedAvg: weight 1, the model's values (and with adaptive clipping the unclipped bit).
    if (params->dp_encoding->dim != static_cast<int64_t>(global.size())) {
      return skip(absl::InvalidArgumentError(
          absl::StrCat("the DP encoding is for ", params->dp_encoding->dim,
                       " values, the model has ", global.size())));
    }
  } else {
    // The model and its weight; under random-k the round's shared coordinates and the weight.
    const compression::CompressionSpec spec =
        proto::CompressionFromProto(assignment.plan().compression())
            .value_or(compression::CompressionSpec{});
    const int64_t expected =
        compression::SecAggVectorLength(spec, static_cast<int64_t>(global.size()));
    if (params->config.vector_length != expected) {
      return skip(absl::InvalidArgumentError(absl::StrCat(
          "vector length ", params->config.vector_length, " is not ", expected, " (",
          compression::FormatCompressionSpec(spec), " of ", global.size(), " parameters)")));
    }
  }
  absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> protocol =
      secagg::SecAggClient::Create(params->config, params->client_index);
  if (!protocol.ok()) return skip(protocol.status());
  secagg::SecAggClient& secure = **protocol;

  v1::SecAggRequest request;
  request.set_client_id(options_.client_id);
  request.set_assignment_id(assignment.assignment_id());
  request.set_round(round);
  bool ended = false;
  auto poll = [&](v1::SecAggPoll::Want want, absl::string_view what) {
    v1::SecAggRequest p = request;
    p.mutable_poll()->set_want(want);
    return SecureAggregationCall(p, absl::StrCat(round_name, ": ", what), backoff, &ended);
  };
  // Local protocol failures (a peer's bad ciphertext, a request to reveal too much) end this
  // client's part in the round; it reveals nothing more.
  auto protocol_failed = [&](const absl::Status& status) {
    return skip(absl::Status(status.code(), absl::StrCat("protocol: ", status.message())));
  };

  // Phase 0: advertise keys.
  absl::StatusOr<secagg::AdvertiseKeysMessage> keys = secure.AdvertiseKeys();
  if (!keys.ok()) return protocol_failed(keys.status());
  {
    v1::SecAggRequest step = request;
    *step.mutable_advertise_keys() = AdvertiseKeysToProto(*keys);
    FEDKIT_RETURN_IF_ERROR(
        SecureAggregationCall(step, absl::StrCat(round_name, ": advertise keys"), backoff, &ended)
            .status());
    if (ended) return absl::OkStatus();
  }
  // Phase 1: share keys.
  {
    FEDKIT_ASSIGN_OR_RETURN(v1::SecAggResponse response,
                            poll(v1::SecAggPoll::KEY_DIRECTORY, "key directory"));
    if (ended) return absl::OkStatus();
    absl::StatusOr<secagg::KeyDirectory> directory =
        KeyDirectoryFromProto(response.key_directory());
    if (!directory.ok()) return protocol_failed(directory.status());
    absl::StatusOr<secagg::ShareKeysMessage> shares = secure.ShareKeys(*directory);
    if (!shares.ok()) return protocol_failed(shares.status());
    v1::SecAggRequest step = request;
    *step.mutable_share_keys() = ShareKeysToProto(*shares);
    FEDKIT_RETURN_IF_ERROR(
        SecureAggregationCall(step, absl::StrCat(round_name, ": share keys"), backoff, &ended)
            .status());
    if (ended) return absl::OkStatus();
  }
  Log(absl::StrCat(round_name, ": secure aggregation keys shared"));

  // Train and encode. A device that becomes ineligible drops out: the protocol goes on without it
  // (it never sends a masked input), as with any dropout.
  bool ineligible = false;
  absl::StatusOr<ClientUpdate> update =
      TrainForRound(assignment, std::move(model), global, telemetry, &ineligible);
  if (ineligible) return DropOut(assignment);
  if (!update.ok()) return update.status();
  const uint64_t rounding_seed =
      secagg::StochasticRoundingSeed(assignment.plan().run_seed(), round, options_.client_index);
  absl::StatusOr<std::vector<uint64_t>> encoded;
  // Random-k's error feedback counts only an accepted masked input: until then the encoder's
  // residual from before is restored on every way out.
  absl::Cleanup restore_encoder = [this, before = encoder_]() mutable {
    encoder_ = std::move(before);
  };
  if (params->dp_encoding.has_value()) {
    const double clip = params->encoding.clip_norm;
    std::optional<bool> unclipped;
    if (params->dp_encoding->with_count) {
      unclipped = privacy::AdaptiveClipping::UnclippedBit(update->delta_norm, clip) == 1;
    }
    privacy::SeededRandomSource rounding(rounding_seed);
    std::unique_ptr<privacy::RandomSource> noise;
    if (options_.dp_noise_seed.has_value()) {
      noise = std::make_unique<privacy::SeededRandomSource>(
          privacy::ClientNoiseSeed(*options_.dp_noise_seed, round, options_.client_index));
    } else {
      absl::StatusOr<std::unique_ptr<privacy::SecureRandomSource>> secure_noise =
          privacy::SecureRandomSource::Create();
      if (!secure_noise.ok()) return protocol_failed(secure_noise.status());
      noise = *std::move(secure_noise);
    }
    encoded = privacy::EncodeDistributedDpUpdate(*params->dp_encoding, update->delta, clip,
                                                 unclipped, rounding, *noise);
  } else if (assignment.plan().compression().method() != v1::CompressionParams::NONE) {
    const int64_t weight = std::min(update->num_examples, params->encoding.max_weight);
    encoded = EncodeSecureCompressedUpdate(assignment, *params, update->delta, weight,
                                           rounding_seed, encoder_);
  } else {
    const int64_t weight = std::min(update->num_examples, params->encoding.max_weight);
    encoded = secagg::EncodeWeightedUpdate(params->encoding, update->delta, weight, rounding_seed);
  }
  if (!encoded.ok()) return protocol_failed(encoded.status());

  // Phase 2: masked input.
  std::string packed;
  std::vector<int32_t> bad_share_senders;  // reported: their share ciphertexts were bad
  {
    FEDKIT_ASSIGN_OR_RETURN(v1::SecAggResponse response,
                            poll(v1::SecAggPoll::SHARE_BUNDLE, "share bundle"));
    if (ended) return absl::OkStatus();
    absl::StatusOr<secagg::MaskedInputMessage> masked =
        secure.MaskInput(ShareBundleFromProto(response.share_bundle()), *encoded);
    if (!masked.ok()) return protocol_failed(masked.status());
    packed = PackMaskedValues(masked->masked_input, params->config.modulus_bits);
    bad_share_senders = masked->bad_share_senders;
  }
  v1::UpdateHeader header;
  header.set_client_id(options_.client_id);
  header.set_assignment_id(assignment.assignment_id());
  header.set_round(round);
  header.set_total_size(params->config.vector_length);
  header.set_train_loss(update->train_loss);
  header.mutable_secagg_bad_share_senders()->Add(bad_share_senders.begin(),
                                                 bad_share_senders.end());
  AddTelemetry(telemetry, static_cast<int64_t>(packed.size()), header);
  while (true) {
    if (cancelled_.HasBeenNotified()) return absl::CancelledError("cancelled");
    absl::StatusOr<v1::UploadResponse> response = channel_->UploadMaskedInput(header, packed);
    if (response.ok()) break;
    if (!cancelled_.HasBeenNotified() && EndsRound(response.status().code())) {
      Log(absl::StrCat(round_name, ": masked upload refused (", response.status().ToString(),
                       "); checking in again"));
      return Wait(backoff.NextDelay()) ? absl::OkStatus() : absl::CancelledError("cancelled");
    }
    FEDKIT_RETURN_IF_ERROR(
        RetryAfter(response.status(), absl::StrCat(round_name, ": masked upload"), backoff));
  }
  backoff.Succeeded();
  std::move(restore_encoder).Cancel();
  Log(absl::StrFormat(
      "%s: trained on %d examples, loss %.4f, delta norm %.4f, masked input uploaded", round_name,
      update->num_examples, update->train_loss, update->delta_norm));

  // Phase 3: unmasking.
  {
    FEDKIT_ASSIGN_OR_RETURN(v1::SecAggResponse response,
                            poll(v1::SecAggPoll::UNMASK_REQUEST, "unmask request"));
    if (ended) return absl::OkStatus();
    absl::StatusOr<secagg::UnmaskResponse> unmask =
        secure.Unmask(UnmaskRequestFromProto(response.unmask_request()));
    if (!unmask.ok()) return protocol_failed(unmask.status());
    v1::SecAggRequest step = request;
    *step.mutable_unmask() = UnmaskResponseToProto(*unmask);
    FEDKIT_RETURN_IF_ERROR(
        SecureAggregationCall(step, absl::StrCat(round_name, ": unmask"), backoff, &ended)
            .status());
    if (ended) return absl::OkStatus();
  }
  if (round != last_counted_round_) {
    last_counted_round_ = round;
    rounds_contributed_.fetch_add(1);
  }
  Log(absl::StrCat(round_name, ": secure aggregation done"));
  return absl::OkStatus();
}

}  // namespace fedkit::client
