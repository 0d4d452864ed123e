// Update compression under secure aggregation, where the server sees only the sum of the round's
// masked vectors, so the round's devices must share the compression's randomness: which specs can
// run there, how long the masked vector is, and random-k's device side (quantization's is
// compression/secagg_quantization.h). The coordinator, the simulator and the device library call
// these, so that they agree.
//
// Random-k sparsification under secure aggregation, the device's side: the round's devices share
// the seed of the coordinates they keep (RandomKIndices(shared_seed, dimension, k)), so their
// masked vectors hold the same k coordinates and sum. Each device still runs its own
// UpdateEncoder, whose error feedback keeps what was not sent for its next round. The simulator
// and the device library (client/federated_client.cc) both call this, so they send the same
// values.
//
// Pure function of its arguments apart from the encoder's residual; thread-compatible (one thread
// per encoder).
#ifndef FEDKIT_COMPRESSION_SECAGG_COMPRESSION_H_
#define FEDKIT_COMPRESSION_SECAGG_COMPRESSION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compression/update_codec.h"

namespace fedkit::compression {

// OK when `spec` can run under secure aggregation: none, quantize / quantize-rotate with at least
// 2 bits (compression/secagg_quantization.h), random-k (shared coordinates). INVALID_ARGUMENT
// naming the spec otherwise: top-k (each device would keep other coordinates), 1 bit, or any
// compression with DP under secure aggregation (`with_dp`: its encoding sizes the modulus; a
// smaller modulus is that encoding's compression).
absl::Status CheckSecAggCompression(const CompressionSpec& spec, bool with_dp);

// Values in a round's masked vector under `spec` for a model of `dimension` parameters: dimension
// + 1 (the weight last), or k + 1 for random-k.
int64_t SecAggVectorLength(const CompressionSpec& spec, int64_t dimension);

// The k values to mask: `encoder` (a kRandK encoder of delta's dimension) encodes delta with
// `shared_seed` (clipping delta + residual to clip_norm when > 0, updating its residual), and the
// values at `kept` = RandomKIndices(shared_seed, dimension, k) are returned in that order; their
// L2 norm is at most clip_norm. INVALID_ARGUMENT if the encoder is not random-k, `kept` is not the
// encoder's k coordinates, or Encode fails (then the residual is unchanged).
absl::StatusOr<std::vector<float>> RandomKValuesForSecureAggregation(
    UpdateEncoder& encoder, absl::Span<const float> delta, double clip_norm, uint64_t shared_seed,
    absl::Span<const int64_t> kept);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_SECAGG_COMPRESSION_H_
