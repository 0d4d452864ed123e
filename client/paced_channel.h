// A slower device, for drills and measurements (issue 14: FedBuff over gRPC with devices of two
// speeds): a CoordinatorChannel that passes every call through to another one, except that it
// holds each upload until `seconds_per_example` x examples x local epochs have passed since the
// round's model download completed. The device's own training time counts toward that wait, so a
// round takes max(its real time, the paced time): the simulator's DeviceSpeeds::RoundSeconds
// (simulation/system_model.h) played out on a real clock.
//
// The epochs come from the last assignment a CheckIn returned (its plan's local_epochs, 1 when
// unset); the examples from the upload's header (num_examples). An upload without a download
// before it in this channel is not held.
//
// Ownership: owns the wrapped channel. Thread safety: as CoordinatorChannel (calls from one
// thread at a time; Cancel from any thread: it ends a wait at once, with CANCELLED, and cancels
// the wrapped channel).
#ifndef FEDKIT_CLIENT_PACED_CHANNEL_H_
#define FEDKIT_CLIENT_PACED_CHANNEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/coordinator_channel.h"

namespace fedkit::client {

class PacedChannel : public CoordinatorChannel {
 public:
  // `seconds_per_example` finite and >= 0 (the caller validates; 0 holds nothing). `now` reads the
  // clock (default absl::Now). `wait` blocks for a duration and returns false when woken early by
  // Cancel (default: waits on the channel's cancellation).
  PacedChannel(std::unique_ptr<CoordinatorChannel> inner, double seconds_per_example,
               std::function<absl::Time()> now = nullptr,
               std::function<bool(absl::Duration)> wait = nullptr);

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override;
  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override;
  absl::Status GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                           std::string* bytes) override;
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override;
  absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded) override;
  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string& packed) override;
  void Cancel() override;
  std::optional<ChannelTraffic> traffic() const override { return inner_->traffic(); }

 private:
  // Waits until the paced end of the round; CANCELLED when Cancel() ends the wait.
  absl::Status Pace(const v1::UpdateHeader& header);

  const std::unique_ptr<CoordinatorChannel> inner_;
  const double seconds_per_example_;
  const std::function<absl::Time()> now_;
  const std::function<bool(absl::Duration)> wait_;
  absl::Notification cancelled_;
  int64_t epochs_ = 1;                        // of the last assignment
  std::optional<absl::Time> model_received_;  // of the last download
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_PACED_CHANNEL_H_
