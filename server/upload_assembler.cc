#include "server/upload_assembler.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace fedkit::server {

PlainUploadAssembler::PlainUploadAssembler(int64_t total_values)
    : values_(static_cast<size_t>(std::max<int64_t>(total_values, 0))) {}

absl::Status PlainUploadAssembler::Refuse(absl::Status status, absl::string_view counter) {
  refusal_ = counter;
  return status;
}

absl::Status PlainUploadAssembler::Add(const v1::UpdateChunk& chunk) {
  if (!chunk.has_values()) {
    return Refuse(absl::InvalidArgumentError("only value chunks may follow the header"),
                  "malformed_stream");
  }
  const v1::DeltaValues& values = chunk.values();
  if (values.offset() != received_) {
    return Refuse(absl::InvalidArgumentError(absl::StrCat("value chunk at offset ", values.offset(),
                                                          ", expected ", received_)),
                  "malformed_stream");
  }
  const int64_t total = static_cast<int64_t>(values_.size());
  if (values.values_size() > total - received_) {
    return Refuse(absl::ResourceExhaustedError(
                      absl::StrCat("update has more than the declared ", total, " values")),
                  "oversized");
  }
  std::copy(values.values().begin(), values.values().end(), values_.begin() + received_);
  received_ += values.values_size();
  return absl::OkStatus();
}

absl::Status PlainUploadAssembler::Finish() {
  if (received_ != static_cast<int64_t>(values_.size())) {
    return Refuse(absl::InvalidArgumentError(absl::StrCat("update ended after ", received_, " of ",
                                                          values_.size(), " values")),
                  "wrong_shape");
  }
  return absl::OkStatus();
}

MaskedUploadAssembler::MaskedUploadAssembler(int64_t total_values)
    : max_bytes_(std::clamp<int64_t>(total_values, 0, std::numeric_limits<int64_t>::max() / 8) *
                 8) {}

absl::Status MaskedUploadAssembler::Refuse(absl::Status status, absl::string_view counter) {
  refusal_ = counter;
  return status;
}

absl::Status MaskedUploadAssembler::Add(const v1::UpdateChunk& chunk) {
  if (!chunk.has_masked()) {
    return Refuse(
        absl::InvalidArgumentError("only masked chunks may follow a masked upload's header"),
        "malformed_stream");
  }
  const v1::MaskedValues& masked = chunk.masked();
  if (masked.byte_offset() != static_cast<int64_t>(packed_.size())) {
    return Refuse(
        absl::InvalidArgumentError(absl::StrCat(
            "masked chunk at byte offset ", masked.byte_offset(), ", expected ", packed_.size())),
        "malformed_stream");
  }
  if (static_cast<int64_t>(masked.packed().size()) >
      max_bytes_ - static_cast<int64_t>(packed_.size())) {
    return Refuse(
        absl::ResourceExhaustedError(absl::StrCat("masked upload exceeds ", max_bytes_, " bytes")),
        "oversized");
  }
  packed_ += masked.packed();
  return absl::OkStatus();
}

}  // namespace fedkit::server

namespace fedkit::server {

CompressedUploadAssembler::CompressedUploadAssembler(int64_t total_bytes)
    : total_bytes_(std::max<int64_t>(total_bytes, 0)) {}

absl::Status CompressedUploadAssembler::Refuse(absl::Status status, absl::string_view counter) {
  refusal_ = counter;
  return status;
}

absl::Status CompressedUploadAssembler::Add(const v1::UpdateChunk& chunk) {
  if (!chunk.has_compressed()) {
    return Refuse(absl::InvalidArgumentError(
                      "only compressed chunks may follow a compressed upload's header"),
                  "malformed_stream");
  }
  const v1::CompressedValues& values = chunk.compressed();
  if (values.byte_offset() != static_cast<int64_t>(bytes_.size())) {
    return Refuse(absl::InvalidArgumentError(absl::StrCat("compressed chunk at byte offset ",
                                                          values.byte_offset(), ", expected ",
                                                          bytes_.size())),
                  "malformed_stream");
  }
  if (static_cast<int64_t>(values.data().size()) >
      total_bytes_ - static_cast<int64_t>(bytes_.size())) {
    return Refuse(absl::ResourceExhaustedError(absl::StrCat(
                      "compressed upload exceeds its declared ", total_bytes_, " bytes")),
                  "oversized");
  }
  bytes_ += values.data();
  return absl::OkStatus();
}

absl::Status CompressedUploadAssembler::Finish() {
  if (static_cast<int64_t>(bytes_.size()) != total_bytes_) {
    return Refuse(absl::InvalidArgumentError(absl::StrCat("compressed upload has ", bytes_.size(),
                                                          " bytes of the declared ", total_bytes_)),
                  "wrong_shape");
  }
  return absl::OkStatus();
}

}  // namespace fedkit::server
