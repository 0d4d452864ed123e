// The seam between the device-side loop and a transport: gRPC for real devices, in-process for
// tests and simulations. Implementations turn transport failures into absl::Status and never throw.
#ifndef FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_
#define FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::client {

// What a channel has sent and received since it was created: the serialized sizes (ByteSizeLong)
// of the protobuf messages of every call, failed calls included. gRPC's message framing, HTTP/2
// and TLS are not in them, so the bytes on the wire are somewhat more.
struct ChannelTraffic {
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
};

// The counters a channel implementation keeps for traffic(). Any thread.
class TrafficCounter {
 public:
  void Sent(size_t bytes) {
    sent_.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }
  void Received(size_t bytes) {
    received_.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }
  ChannelTraffic Get() const {
    return {sent_.load(std::memory_order_relaxed), received_.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> received_{0};
};

// One logical connection to a coordinator. Calls may be made from one thread at a time; Cancel()
// may be called from any thread and makes in-flight and later calls return CANCELLED promptly.
class CoordinatorChannel {
 public:
  virtual ~CoordinatorChannel() = default;

  virtual absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) = 0;

  // Downloads the whole model (all chunks, reassembled and checked for gaps/overlaps/size).
  // `expected_size` is the number of floats the device's model has (from the assignment, checked
  // against the model it trains): a stream announcing any other total_size is refused with
  // FAILED_PRECONDITION on its first chunk, before anything is allocated, so a hostile or broken
  // server cannot make the device allocate what it chooses. On success `parameters` has exactly
  // expected_size values and `layout` the first chunk's layout. A download the coordinator
  // encoded (float16, 8-bit: ModelChunk.encoding) is decoded: `parameters` are then the values
  // the encoding stands for, within its bound of the coordinator's (compression/download_codec.h).
  // DATA_LOSS for a corrupt stream (gaps, overlaps, short, undecodable; client/model_stream.h);
  // transport errors as their gRPC codes.
  virtual absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                                std::vector<float>* parameters, v1::ParameterLayout* layout) = 0;

  // Downloads a model artifact (fedkit.v1.ModelArtifact) from byte request.offset() on, which
  // must equal bytes->size() on entry, and appends it to *bytes. `expected_size` is the
  // assignment's size_bytes: a stream announcing another total_size, or carrying more than it, is
  // FAILED_PRECONDITION before it is buffered. After a transport error *bytes keeps what arrived,
  // so that the caller can resume with offset = bytes->size(). The bytes are not verified here
  // (the device's ModelSource does that).
  virtual absl::Status GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                                   std::string* bytes) {
    return absl::UnimplementedError("this channel does not download artifacts");
  }

  // Tells the coordinator that this device will not train its assignment, and why.
  virtual absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) {
    return absl::UnimplementedError("this channel does not support declining");
  }

  // Uploads header then `delta` in chunks. header.total_size must equal delta.size().
  virtual absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                          absl::Span<const float> delta) = 0;

  // A compressed upload (plan.compression, compression/update_codec.h): uploads header then
  // `encoded` in CompressedValues chunks. header.compressed_size must equal encoded.size() and
  // header.total_size the number of floats it decodes to.
  virtual absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                                    const std::string& encoded) {
    return absl::UnimplementedError("this channel does not support compressed uploads");
  }

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

  // The bytes this channel has moved so far (see ChannelTraffic), for the device's telemetry;
  // nullopt when the channel does not count them (then the telemetry has no byte counts). Any
  // thread.
  virtual std::optional<ChannelTraffic> traffic() const { return std::nullopt; }
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_COORDINATOR_CHANNEL_H_
