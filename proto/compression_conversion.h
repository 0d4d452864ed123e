// fedkit.v1.CompressionParams <-> compression::CompressionSpec (compression/spec.h), the one type
// the libraries use. Thread-safe pure functions.
#ifndef FEDKIT_PROTO_COMPRESSION_CONVERSION_H_
#define FEDKIT_PROTO_COMPRESSION_CONVERSION_H_

#include "absl/status/statusor.h"
#include "compression/spec.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::proto {

v1::CompressionParams CompressionToProto(const compression::CompressionSpec& spec);
// The spec the message names, validated (compression::ValidateCompressionSpec): INVALID_ARGUMENT
// for an unknown method or bits/fraction out of range. An unset message is kNone.
absl::StatusOr<compression::CompressionSpec> CompressionFromProto(
    const v1::CompressionParams& params);

}  // namespace fedkit::proto

#endif  // FEDKIT_PROTO_COMPRESSION_CONVERSION_H_
