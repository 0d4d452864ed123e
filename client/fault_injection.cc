#include "client/fault_injection.h"

#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedkit::client {

absl::StatusOr<Fault> ParseFault(absl::string_view spec) {
  const size_t at = spec.find('@');
  Fault fault;
  if (at == absl::string_view::npos || !absl::SimpleAtoi(spec.substr(at + 1), &fault.round) ||
      fault.round < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", spec, "': expected PHASE@ROUND with ROUND >= 1, e.g. upload@1"));
  }
  absl::StatusOr<secagg::ClientPhase> phase = secagg::ParseClientPhase(spec.substr(0, at));
  if (!phase.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", spec, "': the phase is one of advertise, share, upload, unmask"));
  }
  fault.phase = *phase;
  return fault;
}

FaultInjectionChannel::FaultInjectionChannel(std::unique_ptr<CoordinatorChannel> inner, Fault fault,
                                             std::function<void(absl::string_view)> on_silent)
    : inner_(std::move(inner)), fault_(fault), on_silent_(std::move(on_silent)) {}

bool FaultInjectionChannel::Crosses(int64_t round, secagg::ClientPhase phase) {
  if (!silent_ && round == fault_.round && phase == fault_.phase) {
    silent_ = true;
    if (on_silent_) {
      on_silent_(absl::StrCat("round ", round, ": fault injected: silent from its ",
                              secagg::ClientPhaseName(phase), " on"));
    }
  }
  return silent_;
}

absl::Status FaultInjectionChannel::StaySilent() {
  cancelled_.WaitForNotification();
  return absl::CancelledError("cancelled (silent since the injected fault)");
}

absl::StatusOr<v1::CheckInResponse> FaultInjectionChannel::CheckIn(
    const v1::CheckInRequest& request) {
  if (silent_) return StaySilent();
  return inner_->CheckIn(request);
}

absl::Status FaultInjectionChannel::GetModel(const v1::GetModelRequest& request,
                                             int64_t expected_size, std::vector<float>* parameters,
                                             v1::ParameterLayout* layout) {
  if (silent_) return StaySilent();
  return inner_->GetModel(request, expected_size, parameters, layout);
}

absl::Status FaultInjectionChannel::GetArtifact(const v1::GetArtifactRequest& request,
                                                int64_t expected_size, std::string* bytes) {
  if (silent_) return StaySilent();
  return inner_->GetArtifact(request, expected_size, bytes);
}

absl::StatusOr<v1::DeclineResponse> FaultInjectionChannel::Decline(
    const v1::DeclineRequest& request) {
  if (silent_) return StaySilent();
  return inner_->Decline(request);
}

absl::StatusOr<v1::UploadResponse> FaultInjectionChannel::UploadUpdate(
    const v1::UpdateHeader& header, absl::Span<const float> delta) {
  if (Crosses(header.round(), secagg::ClientPhase::kMaskedInput)) return StaySilent();
  return inner_->UploadUpdate(header, delta);
}

absl::StatusOr<v1::UploadResponse> FaultInjectionChannel::UploadCompressedUpdate(
    const v1::UpdateHeader& header, const std::string& encoded) {
  if (Crosses(header.round(), secagg::ClientPhase::kMaskedInput)) return StaySilent();
  return inner_->UploadCompressedUpdate(header, encoded);
}

absl::StatusOr<v1::SecAggResponse> FaultInjectionChannel::SecureAggregation(
    const v1::SecAggRequest& request) {
  // Steps carry the phase; polls cross nothing.
  std::optional<secagg::ClientPhase> phase;
  if (request.has_advertise_keys()) phase = secagg::ClientPhase::kAdvertiseKeys;
  if (request.has_share_keys()) phase = secagg::ClientPhase::kShareKeys;
  if (request.has_unmask()) phase = secagg::ClientPhase::kUnmask;
  if (silent_ || (phase.has_value() && Crosses(request.round(), *phase))) return StaySilent();
  return inner_->SecureAggregation(request);
}

absl::StatusOr<v1::UploadResponse> FaultInjectionChannel::UploadMaskedInput(
    const v1::UpdateHeader& header, const std::string& packed) {
  if (Crosses(header.round(), secagg::ClientPhase::kMaskedInput)) return StaySilent();
  return inner_->UploadMaskedInput(header, packed);
}

void FaultInjectionChannel::Cancel() {
  std::call_once(cancel_once_, [this] { cancelled_.Notify(); });
  inner_->Cancel();
}

}  // namespace fedkit::client
