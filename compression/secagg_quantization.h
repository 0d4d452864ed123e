// Quantization of weighted updates for secure aggregation. Under secure aggregation the server
// sees only the sum of the clients' vectors modulo 2^modulus_bits, so the clients of a round must
// share the rotation and the scale (no per-client min and max as in compression/update_codec.h):
//
//   - kQuantizeRotate: every client rotates its delta x with the round's shared rotation_seed
//     (compression/hadamard.h), y = R x. kQuantize: y = x.
//   - Each coordinate is clipped to +/- range, where range = min(clip_norm, 6 * clip_norm /
//     sqrt(block size)) for the rotation block the coordinate lies in (after a random rotation a
//     coordinate is about ||x|| / sqrt(block size): six of those is rarely exceeded), and
//     range = clip_norm without rotation.
//   - q_i = stochastic_round(w * y_i * scale_i), scale_i = (2^(bits-1) - 1) / (max_weight *
//     range_i), so |q_i| <= 2^(bits-1) - 1; and a last coordinate, the weight:
//     stochastic_round(w * (2^(bits-1) - 1) / max_weight). Stochastic rounding is unbiased (floor
//     plus a Bernoulli of the fraction, from rounding_seed through compression/random.h).
//   - Values travel in two's complement modulo 2^modulus_bits, modulus_bits = bits +
//     ceil(log2(max_inputs)): the sum of up to max_inputs vectors has magnitude at most
//     max_inputs * (2^(bits-1) - 1) < 2^(modulus_bits-1) and never wraps.
// DecodeSecAggSum divides by the scales, rotates back, and returns an unbiased estimate of
// sum_u w_u x_u (up to the coordinate clip) and of sum_u w_u.
//
// Random-k under secure aggregation: all clients of a round keep the same coordinates,
// RandomKIndices(shared seed, dimension, k) (compression/random.h, included here: the generator
// UpdateEncoder uses for kRandK), so the masked vector has only k values (+1 for the weight) and
// the fixed-point encoding of privacy/secagg/encoding.h applies to them.
//
// Pure functions of their arguments; any thread may call them.
#ifndef FEDKIT_COMPRESSION_SECAGG_QUANTIZATION_H_
#define FEDKIT_COMPRESSION_SECAGG_QUANTIZATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compression/random.h"
#include "compression/spec.h"

namespace fedkit::compression {

// Everything the clients and the server of a round agree on.
struct SecAggQuantization {
  CompressionSpec spec;        // kQuantize or kQuantizeRotate; bits >= 2
  int64_t dimension = 0;       // of the delta (the encoded vector has dimension + 1 values)
  double clip_norm = 0.0;      // the clients' L2 clip norm
  int64_t max_weight = 0;      // weights are integers in [0, max_weight]
  int64_t max_inputs = 0;      // the most vectors summed
  uint64_t rotation_seed = 0;  // shared by the round's clients (kQuantizeRotate)
  int modulus_bits = 0;        // bits + ceil(log2(max_inputs))
};

// INVALID_ARGUMENT unless spec is kQuantize or kQuantizeRotate with bits in [2, 16] (one bit leaves
// no level besides 0 for a signed value), dimension in [1, kMaxDimension], clip_norm > 0 and
// finite, max_weight >= 1, max_inputs >= 1, and modulus_bits <= 64.
absl::StatusOr<SecAggQuantization> ChooseSecAggQuantization(const CompressionSpec& spec,
                                                            int64_t dimension, double clip_norm,
                                                            int64_t max_weight, int64_t max_inputs,
                                                            uint64_t rotation_seed);

// One client's contribution: dimension + 1 values in [0, 2^modulus_bits). The delta should already
// be clipped to clip_norm (privacy/clipping.h); coordinates beyond the range are clipped here.
// INVALID_ARGUMENT for a configuration ChooseSecAggQuantization would refuse, a wrong length, a
// non-finite value, a weight outside [0, max_weight].
absl::StatusOr<std::vector<uint64_t>> EncodeForSecAgg(const SecAggQuantization& q,
                                                      absl::Span<const float> delta, int64_t weight,
                                                      uint64_t rounding_seed);

struct SecAggQuantizedSum {
  // Unrotated: an unbiased estimate of sum_u w_u x_u (up to the coordinate clip); dimension values.
  std::vector<double> weighted_sum;
  // An unbiased estimate of sum_u w_u (each client's weight is stochastically rounded too).
  double total_weight = 0.0;
  // weighted_sum / total_weight as floats; empty if total_weight <= 0.
  std::vector<float> Average() const;
};

// Decodes the (unmasked) sum modulo 2^modulus_bits of up to max_inputs encoded vectors.
// INVALID_ARGUMENT for a bad configuration, a wrong length, a value >= 2^modulus_bits, or a sum
// outside what max_inputs vectors can reach (a negative weight, a coordinate beyond
// max_inputs * (2^(bits-1) - 1)).
absl::StatusOr<SecAggQuantizedSum> DecodeSecAggSum(const SecAggQuantization& q,
                                                   absl::Span<const uint64_t> sum);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_SECAGG_QUANTIZATION_H_
