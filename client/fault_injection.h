// Fault injection on the device side, for tests and failure drills: a CoordinatorChannel that
// passes every call through to another one, except that in one round, at one point of the
// protocol, the device goes silent. The call that would have crossed that point never reaches
// the coordinator: it blocks until Cancel(), so that to the coordinator the device looks frozen,
// powered off or killed there, and the device's log (through `on_silent`) says exactly when.
// It is the device-side counterpart of the simulator's injected dropouts
// (simulation::DropoutOptions), with the same phases:
//   advertise  the secure aggregation key advertisement
//   share      the key shares
//   upload     the update (UploadUpdate, UploadCompressedUpdate) or masked input
//   (UploadMaskedInput) unmask     the unmasking response
// (a plain round has only "upload").
//
// Ownership: owns the wrapped channel. Thread safety: as CoordinatorChannel (calls from one
// thread at a time; Cancel from any thread, which also cancels the wrapped channel).
#ifndef FEDKIT_CLIENT_FAULT_INJECTION_H_
#define FEDKIT_CLIENT_FAULT_INJECTION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "client/coordinator_channel.h"
#include "privacy/secagg/in_memory_round.h"

namespace fedkit::client {

struct Fault {
  int64_t round = 1;  // 1-based
  secagg::ClientPhase phase = secagg::ClientPhase::kMaskedInput;
};

// "PHASE@ROUND", e.g. "upload@1". INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<Fault> ParseFault(absl::string_view spec);

class FaultInjectionChannel : public CoordinatorChannel {
 public:
  // `on_silent` (may be null) is called once, on the calling thread, when the device goes silent.
  FaultInjectionChannel(std::unique_ptr<CoordinatorChannel> inner, Fault fault,
                        std::function<void(absl::string_view)> on_silent);

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override;
  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override;
  absl::Status GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                           std::string* bytes) override;
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override;
  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded) override;
  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string& packed) override;
  void Cancel() override;
  // The inner channel's.
  std::optional<ChannelTraffic> traffic() const override { return inner_->traffic(); }

  // Whether the device has gone silent.
  bool silent() const { return silent_; }

 private:
  // Whether a call of `phase` in `round` crosses the fault (and from then on, every call does).
  bool Crosses(int64_t round, secagg::ClientPhase phase);
  // Blocks until Cancel(); CANCELLED.
  absl::Status StaySilent();

  const std::unique_ptr<CoordinatorChannel> inner_;
  const Fault fault_;
  const std::function<void(absl::string_view)> on_silent_;
  bool silent_ = false;  // set and read on the calling thread only
  std::once_flag cancel_once_;
  absl::Notification cancelled_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_FAULT_INJECTION_H_
