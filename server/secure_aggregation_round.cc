#include "server/secure_aggregation_round.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace fedkit::server {
namespace {

using secagg::SecAggServer;

// Step numbers for retry detection.
constexpr int kAdvertiseStep = 0;
constexpr int kShareStep = 1;
constexpr int kMaskedStep = 2;
constexpr int kUnmaskStep = 3;

}  // namespace

absl::StatusOr<std::unique_ptr<SecureAggregationRound>> SecureAggregationRound::Start(
    const SecureAggregationSettings& settings, const SecAggInputEncoding& encoding,
    int64_t vector_length, std::vector<std::string> clients, absl::Time now,
    absl::Duration upload_timeout, SecAggRoundLimits limits) {
  std::sort(clients.begin(), clients.end());
  const int64_t max_clients = encoding.dp_options.has_value() ? encoding.dp_options->max_clients
                                                              : encoding.fixed_point.max_clients;
  // The encoding must hold the sum of every input the round takes: all its clients', or at most
  // max_inputs of them (the rest of an over-selected round are treated as dropped).
  const int64_t summed = limits.max_inputs > 0
                             ? std::min<int64_t>(limits.max_inputs, clients.size())
                             : static_cast<int64_t>(clients.size());
  if (summed > max_clients) {
    return absl::InternalError(
        absl::StrCat(summed, " summed inputs exceed the encoding's ", max_clients));
  }
  FEDKIT_ASSIGN_OR_RETURN(
      secagg::ProtocolConfig config,
      secagg::MakeProtocolConfig(settings, static_cast<int>(clients.size()), vector_length));
  FEDKIT_ASSIGN_OR_RETURN(std::unique_ptr<SecAggServer> server, SecAggServer::Create(config));
  return std::unique_ptr<SecureAggregationRound>(
      new SecureAggregationRound(settings, encoding, config, std::move(clients), std::move(server),
                                 now, upload_timeout, limits));
}

SecureAggregationRound::SecureAggregationRound(const SecureAggregationSettings& settings,
                                               const SecAggInputEncoding& encoding,
                                               secagg::ProtocolConfig config,
                                               std::vector<std::string> clients,
                                               std::unique_ptr<SecAggServer> server, absl::Time now,
                                               absl::Duration upload_timeout,
                                               SecAggRoundLimits limits)
    : settings_(settings),
      encoding_(encoding),
      config_(std::move(config)),
      clients_(std::move(clients)),
      server_(std::move(server)),
      upload_timeout_(upload_timeout),
      limits_(limits),
      deadline_(now + settings.phase_timeout),
      phase_opened_(now) {
  for (size_t i = 0; i < clients_.size(); ++i) index_of_[clients_[i]] = static_cast<int32_t>(i);
}

std::optional<v1::SecureAggregationParams> SecureAggregationRound::ParamsFor(
    const std::string& client_id) const {
  auto it = index_of_.find(client_id);
  if (it == index_of_.end()) return std::nullopt;
  const int64_t max_inputs =
      limits_.max_inputs > 0 && limits_.max_inputs < config_.num_clients ? limits_.max_inputs : 0;
  return SecAggParamsToProto(SecAggAssignment{.config = config_,
                                              .client_index = it->second,
                                              .max_inputs = static_cast<int32_t>(max_inputs),
                                              .encoding = encoding_.fixed_point,
                                              .dp_options = encoding_.dp_options});
}

bool SecureAggregationRound::Joined(const std::string& client_id) const {
  auto it = index_of_.find(client_id);
  return it != index_of_.end() &&
         accepted_digests_.contains(static_cast<int64_t>(it->second) * 4 + kAdvertiseStep);
}

absl::string_view SecureAggregationRound::phase_name() const {
  switch (server_->phase()) {
    case SecAggServer::Phase::kAdvertiseKeys:
      return "secagg-advertise";
    case SecAggServer::Phase::kShareKeys:
      return "secagg-share";
    case SecAggServer::Phase::kMaskedInput:
      return "secagg-upload";
    case SecAggServer::Phase::kUnmask:
      return "secagg-unmask";
    case SecAggServer::Phase::kDone:
      return "secagg-done";
    case SecAggServer::Phase::kAborted:
      return "secagg-aborted";
  }
  return "?";
}

absl::StatusOr<bool> SecureAggregationRound::CheckRetry(int32_t index, int step,
                                                        const std::string& payload) {
  const int64_t key = static_cast<int64_t>(index) * 4 + step;
  const size_t digest = std::hash<std::string>()(payload);
  auto it = accepted_digests_.find(key);
  if (it == accepted_digests_.end()) return false;
  if (it->second == digest) return true;
  return absl::AlreadyExistsError(
      "a different secure aggregation message from this client was already accepted in this "
      "phase");
}

v1::SecAggResponse SecureAggregationRound::Retry() const {
  v1::SecAggResponse response;
  response.mutable_retry_later()->set_retry_after_seconds(
      absl::ToDoubleSeconds(settings_.poll_interval));
  response.mutable_retry_later()->set_reason(absl::StrCat("waiting for ", phase_name()));
  return response;
}

v1::SecAggResponse SecureAggregationRound::Aborted() const {
  v1::SecAggResponse response;
  response.mutable_aborted()->set_reason(std::string(abort_status_.message()));
  return response;
}

absl::StatusOr<v1::SecAggResponse> SecureAggregationRound::Handle(const std::string& client_id,
                                                                  const v1::SecAggRequest& request,
                                                                  absl::Time now) {
  auto it = index_of_.find(client_id);
  if (it == index_of_.end()) {
    return absl::FailedPreconditionError("client is not part of this round's secure aggregation");
  }
  const int32_t index = it->second;
  Advance(now);
  if (state_ == State::kAborted) return Aborted();
  if (state_ == State::kReadyToFinish) return Retry();  // the sum is being reconstructed

  v1::SecAggResponse accepted;
  accepted.mutable_accepted();
  auto accept =
      [&](int step, const std::string& payload,
          const std::function<absl::Status()>& handle) -> absl::StatusOr<v1::SecAggResponse> {
    FEDKIT_ASSIGN_OR_RETURN(bool retry, CheckRetry(index, step, payload));
    if (retry) {
      accepted.mutable_accepted()->set_duplicate(true);
      return accepted;
    }
    FEDKIT_RETURN_IF_ERROR(handle());
    accepted_digests_[static_cast<int64_t>(index) * 4 + step] = std::hash<std::string>()(payload);
    Advance(now);
    return accepted;
  };

  switch (request.step_case()) {
    case v1::SecAggRequest::kAdvertiseKeys: {
      FEDKIT_ASSIGN_OR_RETURN(secagg::AdvertiseKeysMessage message,
                              AdvertiseKeysFromProto(request.advertise_keys(), index));
      return accept(kAdvertiseStep, request.advertise_keys().SerializeAsString(),
                    [&] { return server_->HandleAdvertiseKeys(message); });
    }
    case v1::SecAggRequest::kShareKeys: {
      FEDKIT_ASSIGN_OR_RETURN(secagg::ShareKeysMessage message,
                              ShareKeysFromProto(request.share_keys(), index));
      return accept(kShareStep, request.share_keys().SerializeAsString(),
                    [&] { return server_->HandleShareKeys(message); });
    }
    case v1::SecAggRequest::kUnmask: {
      FEDKIT_ASSIGN_OR_RETURN(secagg::UnmaskResponse message,
                              UnmaskResponseFromProto(request.unmask(), index));
      return accept(kUnmaskStep, request.unmask().SerializeAsString(),
                    [&] { return server_->HandleUnmaskResponse(message); });
    }
    case v1::SecAggRequest::kPoll:
      break;
    case v1::SecAggRequest::STEP_NOT_SET:
      return absl::InvalidArgumentError("secure aggregation request has no step");
  }

  // Polls: the next message once its phase has begun; retry while the previous one is open.
  const SecAggServer::Phase phase = server_->phase();
  v1::SecAggResponse response;
  switch (request.poll().want()) {
    case v1::SecAggPoll::KEY_DIRECTORY:
      if (phase == SecAggServer::Phase::kAdvertiseKeys) return Retry();
      if (phase != SecAggServer::Phase::kShareKeys) {
        return absl::FailedPreconditionError("the key sharing phase is over");
      }
      {
        FEDKIT_ASSIGN_OR_RETURN(secagg::KeyDirectory directory, server_->KeyDirectoryFor(index));
        *response.mutable_key_directory() = KeyDirectoryToProto(directory);
      }
      return response;
    case v1::SecAggPoll::SHARE_BUNDLE:
      if (phase == SecAggServer::Phase::kAdvertiseKeys ||
          phase == SecAggServer::Phase::kShareKeys) {
        return Retry();
      }
      if (phase != SecAggServer::Phase::kMaskedInput) {
        return absl::FailedPreconditionError("the masked input phase is over");
      }
      {
        FEDKIT_ASSIGN_OR_RETURN(secagg::ShareBundle bundle, server_->ShareBundleFor(index));
        *response.mutable_share_bundle() = ShareBundleToProto(bundle);
      }
      return response;
    case v1::SecAggPoll::UNMASK_REQUEST:
      if (phase != SecAggServer::Phase::kUnmask && phase != SecAggServer::Phase::kDone) {
        return Retry();
      }
      if (phase == SecAggServer::Phase::kDone) {
        return absl::FailedPreconditionError("the unmasking phase is over");
      }
      {
        FEDKIT_ASSIGN_OR_RETURN(secagg::UnmaskRequest unmask, server_->UnmaskRequestFor(index));
        *response.mutable_unmask_request() = UnmaskRequestToProto(unmask);
      }
      return response;
    case v1::SecAggPoll::RESULT:
      if (state_ == State::kRunning) return Retry();
      {
        const std::vector<int32_t> included = server_->masked_input_senders();
        response.mutable_finished()->set_included(
            std::binary_search(included.begin(), included.end(), index));
      }
      return response;
    default:
      return absl::InvalidArgumentError("secure aggregation poll names no phase");
  }
}

absl::StatusOr<v1::UploadResponse> SecureAggregationRound::HandleMaskedInput(
    const std::string& client_id, const std::string& packed, double train_loss,
    absl::Span<const int32_t> bad_share_senders) {
  auto it = index_of_.find(client_id);
  if (it == index_of_.end()) {
    return absl::FailedPreconditionError("client is not part of this round's secure aggregation");
  }
  const int32_t index = it->second;
  if (state_ == State::kAborted) {
    return absl::AbortedError(abort_status_.message());
  }
  if (state_ == State::kReadyToFinish) {
    return absl::FailedPreconditionError("the masked input phase is over");
  }
  v1::UploadResponse response;
  // The digest covers the report too: a retry must repeat both.
  std::string digested = packed;
  for (int32_t sender : bad_share_senders) absl::StrAppend(&digested, ",", sender);
  FEDKIT_ASSIGN_OR_RETURN(bool retry, CheckRetry(index, kMaskedStep, digested));
  if (retry) {
    response.set_duplicate(true);
    return response;
  }
  secagg::MaskedInputMessage message;
  message.sender = index;
  message.bad_share_senders.assign(bad_share_senders.begin(), bad_share_senders.end());
  FEDKIT_RETURN_IF_ERROR(UnpackMaskedValues(packed, config_.modulus_bits, &message.masked_input));
  FEDKIT_RETURN_IF_ERROR(server_->HandleMaskedInput(message));
  accepted_digests_[static_cast<int64_t>(index) * 4 + kMaskedStep] =
      std::hash<std::string>()(digested);
  if (std::isfinite(train_loss)) train_losses_.push_back(train_loss);
  return response;
}

void SecureAggregationRound::CloseCurrentPhase() {
  absl::Status status;
  switch (server_->phase()) {
    case SecAggServer::Phase::kAdvertiseKeys:
      status = server_->CloseAdvertiseKeys();
      deadline_ += settings_.phase_timeout;
      break;
    case SecAggServer::Phase::kShareKeys:
      status = server_->CloseShareKeys();
      deadline_ += upload_timeout_;
      break;
    case SecAggServer::Phase::kMaskedInput: {
      const int64_t inputs = static_cast<int64_t>(server_->masked_input_senders().size());
      if (inputs < limits_.min_inputs) {
        // Before anything is unmasked: the sum of so few inputs would carry too little noise.
        status = absl::AbortedError(absl::StrCat("only ", inputs, " masked inputs, fewer than the ",
                                                 limits_.min_inputs,
                                                 " the distributed DP noise is sized for"));
        break;
      }
      status = server_->CloseMaskedInput();
      deadline_ += settings_.phase_timeout;
      break;
    }
    case SecAggServer::Phase::kUnmask:
      state_ = State::kReadyToFinish;  // Finish() does the rest
      return;
    case SecAggServer::Phase::kDone:
    case SecAggServer::Phase::kAborted:
      return;
  }
  if (!status.ok()) AbortWith(std::move(status));
}

void SecureAggregationRound::AbortWith(absl::Status status) {
  server_->Abort(status.message());
  abort_status_ = std::move(status);
  state_ = State::kAborted;
}

SecureAggregationRound::State SecureAggregationRound::Finish() {
  if (state_ != State::kReadyToFinish) return state_;
  absl::StatusOr<std::vector<uint64_t>> sum = server_->Finish();
  if (!sum.ok()) {
    AbortWith(sum.status());
    return state_;
  }
  sum_ = *std::move(sum);
  included_ = static_cast<int64_t>(server_->masked_input_senders().size());
  state_ = State::kSucceeded;
  return state_;
}

void SecureAggregationRound::Withdraw(const std::string& client_id) {
  if (auto it = index_of_.find(client_id); it != index_of_.end()) withdrawn_.insert(it->second);
}

SecureAggregationRound::State SecureAggregationRound::Advance(absl::Time now) {
  while (state_ == State::kRunning) {
    // Who must still speak in the current phase: the survivors of the previous one.
    std::vector<int32_t> expected;
    std::vector<int32_t> arrived;
    size_t waited_for = 0;  // before max_inputs cuts the masked-input phase short
    switch (server_->phase()) {
      case SecAggServer::Phase::kAdvertiseKeys:
        expected.resize(config_.num_clients);
        for (int32_t i = 0; i < config_.num_clients; ++i) expected[i] = i;
        arrived = server_->advertised();
        break;
      case SecAggServer::Phase::kShareKeys:
        expected = server_->advertised();
        arrived = server_->shared();
        break;
      case SecAggServer::Phase::kMaskedInput:
        expected = server_->shared();
        // Excluded clients' inputs are refused: nothing to wait for.
        expected.erase(std::remove_if(expected.begin(), expected.end(),
                                      [&](int32_t i) { return server_->excluded(i); }),
                       expected.end());
        arrived = server_->masked_input_senders();
        waited_for = expected.size();
        if (limits_.max_inputs > 0 && static_cast<int64_t>(arrived.size()) >= limits_.max_inputs) {
          expected = arrived;  // enough: the rest are treated as dropped
        }
        break;
      case SecAggServer::Phase::kUnmask:
        expected = server_->masked_input_senders();
        arrived = server_->unmask_responders();
        break;
      default:
        return state_;
    }
    if (server_->phase() != SecAggServer::Phase::kMaskedInput) waited_for = expected.size();
    // Withdrawn clients are not waited for.
    const auto present = [&](int32_t i) { return !withdrawn_.contains(i); };
    const auto expected_left = std::count_if(expected.begin(), expected.end(), present);
    const auto arrived_left = std::count_if(arrived.begin(), arrived.end(), present);
    if (arrived_left < expected_left && now < deadline_) return state_;
    closed_phases_.push_back(SecAggPhaseStats{.phase = std::string(phase_name()),
                                              .duration = now - phase_opened_,
                                              .clients_in = static_cast<int64_t>(waited_for),
                                              .clients_out = static_cast<int64_t>(arrived.size())});
    phase_opened_ = now;
    deadline_ = now;  // the next phase's clock starts now
    CloseCurrentPhase();
  }
  return state_;
}

std::vector<SecAggRoundCulprit> SecureAggregationRound::TakeNewCulprits() {
  std::vector<SecAggRoundCulprit> out;
  for (const secagg::SecAggCulprit& c : server_->culprits()) {
    if (!reported_culprits_.insert({c.client, c.reason}).second) continue;
    SecAggRoundCulprit culprit;
    culprit.client_id = clients_.at(c.client);
    culprit.index = c.client;
    culprit.reason = c.reason;
    for (int32_t other : c.others) culprit.others.push_back(clients_.at(other));
    culprit.excluded = server_->excluded(c.client);
    out.push_back(std::move(culprit));
  }
  return out;
}

double SecureAggregationRound::mean_train_loss() const {
  if (train_losses_.empty()) return 0.0;
  double sum = 0;
  for (double l : train_losses_) sum += l;
  return sum / static_cast<double>(train_losses_.size());
}

std::vector<std::string> SecureAggregationRound::included_clients() const {
  std::vector<std::string> ids;
  if (state_ != State::kSucceeded) return ids;
  for (int32_t index : server_->masked_input_senders()) ids.push_back(clients_.at(index));
  return ids;
}

}  // namespace fedkit::server
