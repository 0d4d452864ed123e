// Fixed-point encoding of weighted client updates for secure aggregation. A client with clipped
// delta x (||x||_2 <= clip_norm) and weight w (its example count, capped at max_weight) sends
//   [ round(w * x_i * scale) for each i ] ++ [ w ]
// in Z_{2^modulus_bits}, negative values wrapping (two's complement). Rounding is stochastic and
// unbiased (floor plus a Bernoulli of the fraction), so the decoded sum is an unbiased estimate of
// sum_u w_u x_u. The server decodes the sum of survivors' vectors and divides by the decoded total
// weight. `scale` is chosen so that the sum of up to max_clients vectors never wraps: every
// coordinate is clamped to |w x_i scale| <= max_weight * clip_norm * scale (a no-op for a clipped
// delta, except within the 1e-5 norm tolerance), so |q| <= that + 1, and max_clients times that is
// < 2^(bits-1).
#ifndef FEDKIT_PRIVACY_SECAGG_ENCODING_H_
#define FEDKIT_PRIVACY_SECAGG_ENCODING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/seeds.h"

namespace fedkit::secagg {

struct FixedPointEncoding {
  int modulus_bits = 32;
  double scale = 0.0;       // quantization steps per unit of w * x
  double clip_norm = 0.0;   // bound on each client's L2 norm (so on each coordinate)
  int64_t max_weight = 0;   // weights are integers in [0, max_weight]
  int64_t max_clients = 0;  // the most vectors that will be summed
};

// The finest scale for which max_clients encoded vectors cannot wrap the modulus. INVALID_ARGUMENT
// naming the constraint when none exists (e.g. "max_clients * max_weight = ... does not fit in 31
// bits") or when the resulting step would be coarser than clip_norm / 2^10 ("increase
// modulus_bits"); also for modulus_bits outside [8, 64], clip_norm <= 0, max_weight < 1,
// max_clients < 1.
absl::StatusOr<FixedPointEncoding> ChooseEncoding(int modulus_bits, int64_t max_clients,
                                                  double clip_norm, int64_t max_weight);

// The smallest modulus in [min_bits, 64] bits for which ChooseEncoding succeeds: how a caller that
// was not given a modulus derives one from the weight cap and round size. ChooseEncoding's error
// for 64 bits when none fits.
absl::StatusOr<int> SmallestModulusBits(int min_bits, int64_t max_clients, double clip_norm,
                                        int64_t max_weight);

// Encodes one client's contribution: d + 1 values (the last is the weight). INVALID_ARGUMENT if the
// delta has a non-finite value, its norm exceeds clip_norm by more than a relative 1e-5 (clip
// first: privacy/clipping.h), or weight is outside [0, max_weight]. `rounding_seed` drives the
// stochastic rounding (deterministic given the seed).
absl::StatusOr<std::vector<uint64_t>> EncodeWeightedUpdate(const FixedPointEncoding& encoding,
                                                           absl::Span<const float> delta,
                                                           int64_t weight, uint64_t rounding_seed);

// The stochastic-rounding seed of a client's update in a round: a function of the run seed, the
// round and the client's index only, so a simulated client and a real device encode identically.
inline uint64_t StochasticRoundingSeed(uint64_t run_seed, int64_t round, int64_t client_index) {
  return DeriveSeed(run_seed, {static_cast<uint64_t>(round), static_cast<uint64_t>(client_index),
                               0x726f756e64 /* "round" */});
}

struct DecodedSum {
  std::vector<double> weighted_sum;  // sum_u w_u x_u (d values)
  int64_t total_weight = 0;          // sum_u w_u
  // sum / total_weight as floats: the weighted FedAvg of the survivors. Empty if total_weight == 0.
  std::vector<float> Average() const;
};
// Decodes the (unmasked) sum of encoded vectors: d + 1 values. INVALID_ARGUMENT for the wrong
// modulus range or a negative total weight (a sum that wrapped, which ChooseEncoding rules out).
absl::StatusOr<DecodedSum> DecodeSum(const FixedPointEncoding& encoding,
                                     absl::Span<const uint64_t> sum);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_ENCODING_H_
