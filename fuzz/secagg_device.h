// An honest device's side of one secure aggregation round, as the device library runs it
// (client/federated_client.cc) but without training or transport: the fuzz targets send its
// requests (as they are, edited, or not at all) to a coordinator and feed it the responses, so a
// fuzzed run reaches every phase of the protocol instead of stopping at the first key it cannot
// forge. Not thread-safe; one object per device and round.
#ifndef FEDKIT_FUZZ_SECAGG_DEVICE_H_
#define FEDKIT_FUZZ_SECAGG_DEVICE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "fedkit/v1/coordinator.pb.h"
#include "privacy/secagg/client.h"
#include "proto/secagg_conversion.h"

namespace fedkit::fuzz {

class SecAggDevice {
 public:
  // nullptr when the parameters do not convert (SecAggParamsFromProto) or name a DP encoding
  // (the fuzz targets run weighted FedAvg rounds only). The device's input: every model value
  // `value` (keep |value| * sqrt(length) within the clip), with weight `examples`.
  static std::unique_ptr<SecAggDevice> Create(const v1::SecureAggregationParams& params,
                                              float value, int64_t examples);

  // The next protocol step or poll to send, with only its step set (the caller fills the ids);
  // nullopt when the device has nothing to send (round over for it, or a masked upload is due).
  std::optional<v1::SecAggRequest> NextRequest();
  // What the coordinator answered to the last request (any answer: unexpected ones are ignored,
  // an abort or a protocol error ends the device's round).
  void OnResponse(const v1::SecAggResponse& response);
  // The masked upload once the share bundle came (packed as on the wire), until Uploaded().
  const std::optional<std::string>& masked_upload() const { return masked_upload_; }
  void Uploaded();
  int64_t vector_length() const { return params_.config.vector_length; }
  bool done() const { return stage_ == Stage::kDone; }

 private:
  enum class Stage {
    kAdvertise,
    kWantDirectory,
    kShare,
    kWantBundle,
    kUpload,
    kWantUnmask,
    kUnmask,
    kWantResult,
    kDone
  };
  SecAggDevice(SecAggAssignment params, std::unique_ptr<secagg::SecAggClient> client, float value,
               int64_t examples)
      : params_(std::move(params)),
        client_(std::move(client)),
        value_(value),
        examples_(examples) {}

  SecAggAssignment params_;
  std::unique_ptr<secagg::SecAggClient> client_;
  float value_;
  int64_t examples_;
  Stage stage_ = Stage::kAdvertise;
  v1::SecAggRequest pending_;  // the share or unmask step computed from the last poll
  std::optional<std::string> masked_upload_;
};

}  // namespace fedkit::fuzz

#endif  // FEDKIT_FUZZ_SECAGG_DEVICE_H_
