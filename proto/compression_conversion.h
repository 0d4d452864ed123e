// fedkit.v1.CompressionParams <-> compression::CompressionSpec (compression/spec.h), and
// fedkit.v1.ModelEncoding <-> compression::DownloadEncoding (compression/download_codec.h), the
// types the libraries use. Thread-safe pure functions.
#ifndef FEDKIT_PROTO_COMPRESSION_CONVERSION_H_
#define FEDKIT_PROTO_COMPRESSION_CONVERSION_H_

#include "absl/status/statusor.h"
#include "compression/download_codec.h"
#include "compression/spec.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::proto {

v1::CompressionParams CompressionToProto(const compression::CompressionSpec& spec);
// The spec the message names, validated (compression::ValidateCompressionSpec): INVALID_ARGUMENT
// for an unknown method or bits/fraction out of range. An unset message is kNone.
absl::StatusOr<compression::CompressionSpec> CompressionFromProto(
    const v1::CompressionParams& params);

v1::ModelEncoding DownloadEncodingToProto(compression::DownloadEncoding encoding);
// INVALID_ARGUMENT naming the number for a value this build does not know (a newer sender).
absl::StatusOr<compression::DownloadEncoding> DownloadEncodingFromProto(int encoding);

}  // namespace fedkit::proto

#endif  // FEDKIT_PROTO_COMPRESSION_CONVERSION_H_
