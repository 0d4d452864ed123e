#include "client/model_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/compression_conversion.h"

namespace fedkit::client {

using compression::DownloadEncoding;

ModelStreamAssembler::ModelStreamAssembler(int64_t expected_size) : expected_size_(expected_size) {}

absl::Status ModelStreamAssembler::AddFirst(v1::ModelChunk& chunk) {
  if (chunk.total_size() != expected_size_) {
    return absl::FailedPreconditionError(
        absl::StrCat("GetModel: the server sends a model of ", chunk.total_size(),
                     " values but the assignment's has ", expected_size_));
  }
  absl::StatusOr<DownloadEncoding> encoding = proto::DownloadEncodingFromProto(chunk.encoding());
  if (!encoding.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("GetModel: ", encoding.status().message(), "; update the device's FedKit"));
  }
  encoding_ = *encoding;
  if (encoding_ == DownloadEncoding::kFloat32) {
    values_.reserve(static_cast<size_t>(expected_size_));
  } else {
    const int64_t size = compression::DownloadBytes(encoding_, expected_size_);
    if (chunk.encoded_size() != size) {
      return absl::DataLossError(
          absl::StrCat("GetModel: encoded_size ", chunk.encoded_size(), " but ",
                       compression::FormatDownloadEncoding(encoding_), " takes ", size,
                       " bytes for ", expected_size_, " values"));
    }
    encoded_size_ = size;
    encoded_.reserve(static_cast<size_t>(size));
  }
  layout_ = std::move(*chunk.mutable_layout());
  started_ = true;
  return absl::OkStatus();
}

absl::Status ModelStreamAssembler::Add(v1::ModelChunk& chunk) {
  if (!error_.ok()) return error_;
  if (!started_) {
    error_ = AddFirst(chunk);
    if (!error_.ok()) return error_;
  } else if (chunk.total_size() != expected_size_ && chunk.total_size() != 0) {
    // Later chunks may leave total_size unset (0); a different value is a corrupt stream.
    error_ = absl::DataLossError(absl::StrCat("GetModel: chunk says total_size ",
                                              chunk.total_size(), " after ", expected_size_));
    return error_;
  } else if (chunk.encoding() != proto::DownloadEncodingToProto(encoding_) ||
             chunk.encoded_size() != encoded_size_) {
    error_ = absl::DataLossError(
        absl::StrCat("GetModel: chunk at offset ", chunk.offset(), " changes the encoding to ",
                     chunk.encoding(), " of ", chunk.encoded_size(), " bytes, after ",
                     compression::FormatDownloadEncoding(encoding_), " of ", encoded_size_));
    return error_;
  }
  const bool floats = encoding_ == DownloadEncoding::kFloat32;
  const int64_t received =
      floats ? static_cast<int64_t>(values_.size()) : static_cast<int64_t>(encoded_.size());
  const int64_t total = floats ? expected_size_ : encoded_size_;
  const char* unit = floats ? " values" : " bytes";
  if (floats ? !chunk.encoded().empty() : chunk.values_size() != 0) {
    error_ = absl::DataLossError(absl::StrCat(
        "GetModel: a ", compression::FormatDownloadEncoding(encoding_), " chunk at offset ",
        chunk.offset(), " carries ", floats ? "encoded bytes" : "float values"));
    return error_;
  }
  if (chunk.offset() != received) {
    error_ = absl::DataLossError(absl::StrCat("GetModel: chunk at offset ", chunk.offset(), " but ",
                                              received, unit, " received so far (",
                                              chunk.offset() > received ? "gap" : "overlap", ")"));
    return error_;
  }
  const int64_t size = floats ? chunk.values_size() : static_cast<int64_t>(chunk.encoded().size());
  if (size > total - received) {
    error_ =
        absl::DataLossError(absl::StrCat("GetModel: chunk at offset ", chunk.offset(), " with ",
                                         size, unit, " overruns the ", total, unit, " announced"));
    return error_;
  }
  if (floats) {
    values_.insert(values_.end(), chunk.values().begin(), chunk.values().end());
  } else {
    encoded_.append(chunk.encoded());
  }
  return absl::OkStatus();
}

absl::Status ModelStreamAssembler::Finish(std::vector<float>* parameters,
                                          v1::ParameterLayout* layout) {
  parameters->clear();
  layout->Clear();
  if (!error_.ok()) return error_;
  if (!started_) return absl::DataLossError("GetModel: the stream carried no chunk");
  if (encoding_ == DownloadEncoding::kFloat32) {
    if (static_cast<int64_t>(values_.size()) != expected_size_) {
      return absl::DataLossError(absl::StrCat("GetModel: stream ended after ", values_.size(),
                                              " of ", expected_size_, " values"));
    }
    *parameters = std::move(values_);
  } else {
    if (static_cast<int64_t>(encoded_.size()) != encoded_size_) {
      return absl::DataLossError(absl::StrCat("GetModel: stream ended after ", encoded_.size(),
                                              " of ", encoded_size_, " bytes"));
    }
    absl::StatusOr<std::vector<float>> decoded =
        compression::DecodeDownload(encoding_, encoded_, expected_size_);
    if (!decoded.ok()) {
      return absl::DataLossError(
          absl::StrCat("GetModel: the model does not decode: ", decoded.status().message()));
    }
    *parameters = *std::move(decoded);
    encoded_.clear();
  }
  *layout = std::move(layout_);
  return absl::OkStatus();
}

}  // namespace fedkit::client
