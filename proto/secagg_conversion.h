// Conversions between the secure aggregation messages (privacy/secagg/protocol.h) and their
// fedkit.v1 wire form. Everything coming from the wire is validated (key and share sizes, packed
// lengths, value ranges) and refused with INVALID_ARGUMENT naming the field.
#ifndef FEDKIT_PROTO_SECAGG_CONVERSION_H_
#define FEDKIT_PROTO_SECAGG_CONVERSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "fedkit/v1/coordinator.pb.h"
#include "privacy/distributed_dp_encoding.h"
#include "privacy/secagg/encoding.h"
#include "privacy/secagg/protocol.h"

namespace fedkit {

// What a client needs to run its side of a round.
struct SecAggAssignment {
  secagg::ProtocolConfig config;
  int32_t client_index = 0;
  // The most masked inputs the server sums (0: config.num_clients); the encoding's headroom must
  // cover it.
  int32_t max_inputs = 0;
  // Weighted FedAvg rounds: value = round(weight * delta * scale). With DP only modulus_bits and
  // clip_norm (the round's clip) are used.
  secagg::FixedPointEncoding encoding;
  // DP-FedAvg rounds: the unit-weight encoding's options; SecAggParamsFromProto derives
  // dp_encoding from them (ChooseDistributedDpEncoding), as the coordinator did.
  std::optional<privacy::DistributedDpEncodingOptions> dp_options;
  std::optional<privacy::DistributedDpEncoding> dp_encoding;
};
v1::SecureAggregationParams SecAggParamsToProto(const SecAggAssignment& assignment);
// Also validates the config (ValidateProtocolConfig), the index and the encoding (with DP: that it
// can be derived and its length is the protocol's vector length).
absl::StatusOr<SecAggAssignment> SecAggParamsFromProto(const v1::SecureAggregationParams& proto);

v1::SecAggAdvertiseKeys AdvertiseKeysToProto(const secagg::AdvertiseKeysMessage& message);
absl::StatusOr<secagg::AdvertiseKeysMessage> AdvertiseKeysFromProto(
    const v1::SecAggAdvertiseKeys& proto, int32_t sender);

v1::SecAggKeyDirectory KeyDirectoryToProto(const secagg::KeyDirectory& directory);
absl::StatusOr<secagg::KeyDirectory> KeyDirectoryFromProto(const v1::SecAggKeyDirectory& proto);

v1::SecAggShareKeys ShareKeysToProto(const secagg::ShareKeysMessage& message);
absl::StatusOr<secagg::ShareKeysMessage> ShareKeysFromProto(const v1::SecAggShareKeys& proto,
                                                            int32_t sender);

v1::SecAggShareBundle ShareBundleToProto(const secagg::ShareBundle& bundle);
secagg::ShareBundle ShareBundleFromProto(const v1::SecAggShareBundle& proto);

v1::SecAggUnmaskRequest UnmaskRequestToProto(const secagg::UnmaskRequest& request);
secagg::UnmaskRequest UnmaskRequestFromProto(const v1::SecAggUnmaskRequest& proto);

v1::SecAggUnmask UnmaskResponseToProto(const secagg::UnmaskResponse& response);
// Shares are placed at x = sender + 1 (the only point a sender can hold).
absl::StatusOr<secagg::UnmaskResponse> UnmaskResponseFromProto(const v1::SecAggUnmask& proto,
                                                               int32_t sender);

// Masked values packed little-endian in ceil(modulus_bits / 8) bytes each.
std::string PackMaskedValues(absl::Span<const uint64_t> values, int modulus_bits);
// Appends the values in `packed` to `out`. INVALID_ARGUMENT if the length is not a multiple of the
// value size or a value is outside Z_2^modulus_bits.
absl::Status UnpackMaskedValues(const std::string& packed, int modulus_bits,
                                std::vector<uint64_t>* out);

}  // namespace fedkit

#endif  // FEDKIT_PROTO_SECAGG_CONVERSION_H_
