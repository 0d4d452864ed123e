#include "client/paced_channel.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::client {

PacedChannel::PacedChannel(std::unique_ptr<CoordinatorChannel> inner, double seconds_per_example,
                           std::function<absl::Time()> now,
                           std::function<bool(absl::Duration)> wait)
    : inner_(std::move(inner)),
      seconds_per_example_(seconds_per_example),
      now_(now ? std::move(now) : [] { return absl::Now(); }),
      wait_(wait ? std::move(wait) : [this](absl::Duration d) {
        return !cancelled_.WaitForNotificationWithTimeout(d);
      }) {}

absl::StatusOr<v1::CheckInResponse> PacedChannel::CheckIn(const v1::CheckInRequest& request) {
  absl::StatusOr<v1::CheckInResponse> response = inner_->CheckIn(request);
  if (response.ok() && response->has_assignment()) {
    epochs_ = std::max<int64_t>(1, response->assignment().plan().local_epochs());
    model_received_.reset();
  }
  return response;
}

absl::Status PacedChannel::GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                                    std::vector<float>* parameters, v1::ParameterLayout* layout) {
  absl::Status status = inner_->GetModel(request, expected_size, parameters, layout);
  if (status.ok()) model_received_ = now_();
  return status;
}

absl::Status PacedChannel::GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                                       std::string* bytes) {
  return inner_->GetArtifact(request, expected_size, bytes);
}

absl::StatusOr<v1::DeclineResponse> PacedChannel::Decline(const v1::DeclineRequest& request) {
  return inner_->Decline(request);
}

absl::Status PacedChannel::Pace(const v1::UpdateHeader& header) {
  if (!model_received_.has_value() || seconds_per_example_ <= 0) return absl::OkStatus();
  const absl::Time due =
      *model_received_ +
      absl::Seconds(seconds_per_example_ * static_cast<double>(header.num_examples()) *
                    static_cast<double>(epochs_));
  // Once per round: a retried upload is not held again.
  model_received_.reset();
  const absl::Duration left = due - now_();
  if (left <= absl::ZeroDuration()) return absl::OkStatus();
  if (!wait_(left)) return absl::CancelledError("cancelled while pacing the upload");
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadResponse> PacedChannel::UploadUpdate(const v1::UpdateHeader& header,
                                                              absl::Span<const float> delta) {
  if (absl::Status paced = Pace(header); !paced.ok()) return paced;
  return inner_->UploadUpdate(header, delta);
}

absl::StatusOr<v1::UploadResponse> PacedChannel::UploadCompressedUpdate(
    const v1::UpdateHeader& header, const std::string& encoded) {
  if (absl::Status paced = Pace(header); !paced.ok()) return paced;
  return inner_->UploadCompressedUpdate(header, encoded);
}

absl::StatusOr<v1::SecAggResponse> PacedChannel::SecureAggregation(
    const v1::SecAggRequest& request) {
  return inner_->SecureAggregation(request);
}

absl::StatusOr<v1::UploadResponse> PacedChannel::UploadMaskedInput(const v1::UpdateHeader& header,
                                                                   const std::string& packed) {
  if (absl::Status paced = Pace(header); !paced.ok()) return paced;
  return inner_->UploadMaskedInput(header, packed);
}

void PacedChannel::Cancel() {
  if (!cancelled_.HasBeenNotified()) cancelled_.Notify();
  inner_->Cancel();
}

}  // namespace fedkit::client
