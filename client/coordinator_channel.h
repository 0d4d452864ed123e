// The seam between the device-side loop and a transport: gRPC for real devices, in-process for
// tests and simulations. Implementations turn transport failures into absl::Status and never throw.
#ifndef FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_
#define FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::client {

// One logical connection to a coordinator. Calls may be made from one thread at a time; Cancel()
// may be called from any thread and makes in-flight and later calls return CANCELLED promptly.
class CoordinatorChannel {
 public:
  virtual ~CoordinatorChannel() = default;

  virtual absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) = 0;

  // Downloads the whole model (all chunks, reassembled and checked for gaps/overlaps/size).
  // On success `parameters` has exactly total_size values and `layout` the first chunk's layout.
  virtual absl::Status GetModel(const v1::GetModelRequest& request, std::vector<float>* parameters,
                                v1::ParameterLayout* layout) = 0;

  // Uploads header then `delta` in chunks. header.total_size must equal delta.size().
  virtual absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                          absl::Span<const float> delta) = 0;

  // Secure aggregation: one step or poll (see fedkit.v1.SecAggRequest).
  virtual absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) {
    return absl::UnimplementedError("this channel does not support secure aggregation");
  }
  // Secure aggregation: uploads header then the packed masked vector in chunks.
  virtual absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                               const std::string& packed) {
    return absl::UnimplementedError("this channel does not support secure aggregation");
  }

  virtual void Cancel() = 0;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_
