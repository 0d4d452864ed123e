// The in-process transport between the device library and the round engine: a
// client::CoordinatorChannel whose calls go straight to a RoundCoordinator, with the checks the
// gRPC service makes on a stream (declared sizes before anything model-sized is allocated) made on
// the call's arguments instead. The first piece of issue 10's "the simulator drives the
// coordinator's engine": a FederatedClient over this channel runs exactly the rounds it runs over
// gRPC (same assignments, admission, aggregation, DP and secure aggregation), without sockets, so
// tests and simulations can run the real engine with many devices in one process. Faults and
// dropouts are meant to be wrappers around a CoordinatorChannel (see the test).
//
// Errors: whatever the RoundCoordinator returns (see round_coordinator.h), plus
//   CANCELLED           after Cancel() (every later call too);
//   FAILED_PRECONDITION from GetModel when the model is not `expected_size` values (nothing
//   copied); INVALID_ARGUMENT    from UploadUpdate when header.total_size() != delta.size() or the
//   delta is
//                       not the model's size, and from UploadMaskedInput when the masked upload is
//                       not model_size + 1 values (counted as refusals, as the service does);
//   UNIMPLEMENTED       from GetArtifact (the coordinator's artifact store is not served here).
//
// Ownership: the channel does not own the coordinator, which must outlive it. `clock` gives the
// time passed to the coordinator (absl::Now for real time, or a virtual clock).
//
// Thread safety: as CoordinatorChannel: one call at a time per channel; Cancel() from any thread.
// Many channels may share one coordinator (RoundCoordinator is thread-safe).
#ifndef FEDKIT_SERVER_IN_PROCESS_CHANNEL_H_
#define FEDKIT_SERVER_IN_PROCESS_CHANNEL_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/coordinator_channel.h"
#include "server/round_coordinator.h"

namespace fedkit::server {

class InProcessChannel final : public client::CoordinatorChannel {
 public:
  InProcessChannel(RoundCoordinator* coordinator, std::function<absl::Time()> clock);

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override;
  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override;
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override;
  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override;
  absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded) override;
  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string& packed) override;
  void Cancel() override;
  // The messages as the gRPC channel would send them: a download as one ModelChunk, an upload
  // as its header plus 4 bytes per float (or the packed masked bytes); no bytes really move.
  std::optional<client::ChannelTraffic> traffic() const override { return traffic_.Get(); }

 private:
  absl::Status CheckNotCancelled() const;

  RoundCoordinator* const coordinator_;
  const std::function<absl::Time()> clock_;
  std::atomic<bool> cancelled_{false};
  client::TrafficCounter traffic_;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_IN_PROCESS_CHANNEL_H_
