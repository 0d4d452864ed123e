#include "server/in_process_channel.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "compression/download_codec.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/wire_sizes.h"

namespace fedkit::server {

InProcessChannel::InProcessChannel(RoundCoordinator* coordinator, std::function<absl::Time()> clock)
    : coordinator_(coordinator), clock_(std::move(clock)) {}

absl::Status InProcessChannel::CheckNotCancelled() const {
  if (cancelled_.load(std::memory_order_acquire)) {
    return absl::CancelledError("the in-process channel was cancelled");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckInResponse> InProcessChannel::CheckIn(const v1::CheckInRequest& request) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  traffic_.Sent(request.ByteSizeLong());
  absl::StatusOr<v1::CheckInResponse> response = coordinator_->CheckIn(request, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

absl::Status InProcessChannel::GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                                        std::vector<float>* parameters,
                                        v1::ParameterLayout* layout) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  traffic_.Sent(request.ByteSizeLong());
  absl::StatusOr<RoundCoordinator::ModelSnapshot> snapshot =
      coordinator_->GetModel(request, clock_());
  if (!snapshot.ok()) return snapshot.status();
  const std::vector<float>& values = *snapshot->parameters;
  if (static_cast<int64_t>(values.size()) != expected_size) {
    return absl::FailedPreconditionError(absl::StrCat("the coordinator's model has ", values.size(),
                                                      " values; this device's has ",
                                                      expected_size));
  }
  *layout = LayoutToProto(coordinator_->layout());
  // As if in one ModelChunk: its layout and total size, and the values (4 bytes per float, packed)
  // or the encoded bytes.
  v1::ModelChunk chunk_without_values;
  *chunk_without_values.mutable_layout() = *layout;
  chunk_without_values.set_total_size(static_cast<int64_t>(values.size()));
  if (snapshot->encoded == nullptr) {
    *parameters = values;
    traffic_.Received(chunk_without_values.ByteSizeLong() + 4 * values.size());
    return absl::OkStatus();
  }
  // The device trains from what it decodes, as over gRPC (client/model_stream.h).
  absl::StatusOr<std::vector<float>> decoded =
      compression::DecodeDownload(snapshot->encoding, *snapshot->encoded, expected_size);
  if (!decoded.ok()) {
    layout->Clear();
    return absl::DataLossError(
        absl::StrCat("GetModel: the model does not decode: ", decoded.status().message()));
  }
  *parameters = *std::move(decoded);
  chunk_without_values.set_encoding(proto::DownloadEncodingToProto(snapshot->encoding));
  chunk_without_values.set_encoded_size(static_cast<int64_t>(snapshot->encoded->size()));
  traffic_.Received(chunk_without_values.ByteSizeLong() + snapshot->encoded->size());
  return absl::OkStatus();
}

absl::StatusOr<v1::DeclineResponse> InProcessChannel::Decline(const v1::DeclineRequest& request) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  traffic_.Sent(request.ByteSizeLong());
  absl::StatusOr<v1::DeclineResponse> response = coordinator_->Decline(request, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

absl::StatusOr<v1::UploadResponse> InProcessChannel::UploadUpdate(const v1::UpdateHeader& header,
                                                                  absl::Span<const float> delta) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  if (header.total_size() != static_cast<int64_t>(delta.size()) ||
      header.total_size() != coordinator_->model_size()) {
    coordinator_->CountRefusal("wrong_shape");
    return absl::InvalidArgumentError(absl::StrCat("update of ", delta.size(), " values declares ",
                                                   header.total_size(), "; the model has ",
                                                   coordinator_->model_size()));
  }
  traffic_.Sent(header.ByteSizeLong() + 4 * delta.size());  // as if the header and packed floats
  absl::StatusOr<v1::UploadResponse> response = coordinator_->SubmitUpdate(header, delta, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

absl::StatusOr<v1::UploadResponse> InProcessChannel::UploadCompressedUpdate(
    const v1::UpdateHeader& header, const std::string& encoded) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  if (header.compressed_size() != static_cast<int64_t>(encoded.size())) {
    coordinator_->CountRefusal("wrong_shape");
    return absl::InvalidArgumentError(absl::StrCat("compressed upload of ", encoded.size(),
                                                   " bytes declares ", header.compressed_size()));
  }
  if (absl::Status checked = coordinator_->CheckCompressedUploadHeader(header); !checked.ok()) {
    return checked;
  }
  // The messages the gRPC channel would send (proto/wire_sizes.h).
  traffic_.Sent(proto::UploadStreamBytes(header, proto::UploadPayload::kCompressedBytes,
                                         static_cast<int64_t>(encoded.size())));
  absl::StatusOr<v1::UploadResponse> response =
      coordinator_->SubmitCompressedUpdate(header, encoded, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

absl::StatusOr<v1::SecAggResponse> InProcessChannel::SecureAggregation(
    const v1::SecAggRequest& request) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  traffic_.Sent(request.ByteSizeLong());
  absl::StatusOr<v1::SecAggResponse> response =
      coordinator_->SecureAggregationStep(request, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

absl::StatusOr<v1::UploadResponse> InProcessChannel::UploadMaskedInput(
    const v1::UpdateHeader& header, const std::string& packed) {
  if (absl::Status s = CheckNotCancelled(); !s.ok()) return s;
  if (header.total_size() != coordinator_->masked_input_length()) {
    coordinator_->CountRefusal("wrong_shape");
    return absl::InvalidArgumentError(absl::StrCat("masked upload declares ", header.total_size(),
                                                   " values; expected ",
                                                   coordinator_->masked_input_length()));
  }
  traffic_.Sent(header.ByteSizeLong() + packed.size());
  absl::StatusOr<v1::UploadResponse> response =
      coordinator_->SubmitMaskedUpdate(header, packed, clock_());
  if (response.ok()) traffic_.Received(response->ByteSizeLong());
  return response;
}

void InProcessChannel::Cancel() { cancelled_.store(true, std::memory_order_release); }

}  // namespace fedkit::server
