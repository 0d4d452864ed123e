// Fixed-point encoding of DP-FedAvg updates for secure aggregation, with each client's share of
// the distributed discrete Gaussian noise (privacy/distributed_dp.h, Kairouz et al. 2021) added
// before masking, so the server only ever sees a noised sum.
//
// Every client has weight 1 (McMahan et al. 2018's fixed-denominator estimator). A client with
// update x, clipped to L2 norm c (this round's clip), and optionally the adaptive-clipping bit
// b = 1[||x_unclipped|| <= c] (privacy/adaptive_clipping.h), sends in Z_{2^modulus_bits}:
//
//   [ round(x_i * s) + N_Z(0, sigma^2)  for i < d ]  ++  [ H (2 b - 1) + N_Z(0, sigma^2) ]
//
// with s = scaled_clip / c (so the scaled update has norm <= scaled_clip whatever c is, and the
// parameters below need not change when adaptive clipping moves c), unconditional unbiased
// randomized rounding, and the optional count coordinate last. The server decodes the sum of the
// survivors' vectors: the values divided by s are sum_u x_u plus noise, and the count divided by
// 2 H is the centred count sum_u (b_u - 1/2) plus noise, what
// AdaptiveClipping::UpdateFromNoisedCenteredSum takes.
//
// Privacy: the whole vector is one discrete Gaussian mechanism with L2 sensitivity
//   Delta = sqrt(Delta_v^2 + H^2),  Delta_v = scaled_clip + sqrt(d)
// (RoundedL2SensitivityBound with beta = 0: plain rounding moves each coordinate by < 1; the count
// coordinate is an integer, and centring the bit makes its add/remove sensitivity H, not 2 H).
// Every client adds N_Z(0, sigma^2), sigma^2 = (z Delta)^2 / n_min, so any n_min survivors carry
// noise of variance >= (z Delta)^2 (DistributedDiscreteGaussianParameters); the accountant uses
// effective_noise_multiplier. H is chosen so that, in unscaled units, the noise on the centred
// count has the stddev sigma_b asked for and the update sum gets the rest of the budget: this is
// exactly Andrew et al.'s split z^-2 = z_delta^-2 + (2 sigma_b)^-2 (ValueNoiseMultiplier), realised
// by one isotropic noise on a vector whose two blocks are scaled differently.
//
// No wrap-around: DiscreteGaussianSampler never returns |x| > 64 t (t = floor(sigma) + 1), so a
// client's coordinate is at most max(ceil(scaled_clip), H) + 64 t in magnitude, and
// ChooseDistributedDpEncoding picks the largest scaled_clip for which max_clients such vectors sum
// below 2^(modulus_bits - 1): the decoded sum is exact, never wrapped, for every draw of the noise.
// That worst case costs about log2(64 sqrt(n_min)) bits over a high-probability tail bound; 32 bits
// leave scaled_clip in the millions for 100 clients, far above sqrt(d) for models of up to ~10^8
// parameters, so the rounding's sensitivity inflation is negligible.
#ifndef FEDKIT_PRIVACY_DISTRIBUTED_DP_ENCODING_H_
#define FEDKIT_PRIVACY_DISTRIBUTED_DP_ENCODING_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/discrete_gaussian.h"
#include "privacy/noise.h"

namespace fedkit::privacy {

struct DistributedDpEncodingOptions {
  int modulus_bits = 32;    // sums are taken mod 2^modulus_bits, in [8, 64]
  int64_t max_clients = 0;  // n >= 1: clients per round, the most vectors ever summed
  int64_t dim = 0;          // d >= 1: update coordinates (without the count)
  // z >= 0, relative to the whole vector's sensitivity Delta. 0 adds no noise: a unit-weight
  // fixed-point sum for central DP under secure aggregation (the server adds the noise).
  double noise_multiplier = 0.0;
  // Fraction of the n clients that may drop out while the survivors' noise still suffices; sizes
  // n_min = max(1, floor(n (1 - dropout_tolerance))). In [0, 1).
  double dropout_tolerance = 0.0;
  // Adaptive clipping: append the count coordinate, with noise stddev clipped_count_stddev
  // (sigma_b, in units of the centred count) when z > 0. Needs z < 2 sigma_b.
  bool with_count = false;
  double clipped_count_stddev = 0.0;
  // Refuse scales whose rounding inflates the update's sensitivity by more than this factor
  // (Delta_v / scaled_clip = 1 + sqrt(d) / scaled_clip).
  double max_sensitivity_inflation = 1.01;
};

struct DistributedDpEncoding {
  int modulus_bits = 32;
  int64_t max_clients = 0;
  int64_t dim = 0;
  bool with_count = false;
  double scaled_clip = 0.0;           // s c: the scaled update's L2 bound
  double value_sensitivity = 0.0;     // Delta_v = scaled_clip + sqrt(d)
  int64_t count_half_step = 0;        // H (0 without the count)
  double sensitivity = 0.0;           // Delta = sqrt(Delta_v^2 + H^2)
  Rational local_variance;            // sigma^2 of each client's noise (0/1 without noise)
  int64_t min_surviving_clients = 0;  // n_min: a round with fewer survivors must not be released
  // sqrt(n_min sigma^2) / Delta >= z: the noise multiplier for the RDP accountant (0 without
  // noise).
  double effective_noise_multiplier = 0.0;
  double tau_times_dim = 0.0;  // Kairouz et al.'s Theorem 1 correction (DiscreteGaussianSumTau)
  // In unscaled units, with n_min survivors: the update sum's noise stddev / c, and the centred
  // count's noise stddev (both 0 without noise).
  double value_noise_multiplier = 0.0;
  double count_noise_stddev = 0.0;
  // The largest |coordinate| one client can send; max_clients times it is < 2^(modulus_bits-1).
  int64_t max_client_magnitude = 0;

  // Vector length: dim, plus 1 with the count.
  int64_t length() const { return dim + (with_count ? 1 : 0); }
};

// The encoding with the largest scaled_clip that cannot wrap (see above). INVALID_ARGUMENT naming
// the option for arguments out of range, for z >= 2 sigma_b with the count, when the local noise
// would fall below sigma = 1/2 or tau * d above 1e-6 (outside Kairouz et al.'s theorem), or when
// the modulus leaves no scale fine enough for max_sensitivity_inflation ("increase modulus_bits").
absl::StatusOr<DistributedDpEncoding> ChooseDistributedDpEncoding(
    const DistributedDpEncodingOptions& options);

// One client's vector: clips `update` to clip_norm in double (so a delta clipped in float, whose
// norm can exceed the clip by a rounding error, is brought within the bound the sensitivity
// assumes), scales by scaled_clip / clip_norm, rounds randomly, appends the count coordinate from
// `unclipped` (required iff with_count), adds the noise and reduces mod 2^modulus_bits. `rounding`
// drives the rounding and `noise` the noise (separate streams, so a run with z = 0 rounds exactly
// like one with noise; a real client uses SecureRandomSource for the noise). INVALID_ARGUMENT for
// a wrong length, a non-finite value, clip_norm <= 0 or not finite, or `unclipped` given or missing
// against with_count.
absl::StatusOr<std::vector<uint64_t>> EncodeDistributedDpUpdate(
    const DistributedDpEncoding& encoding, absl::Span<const float> update, double clip_norm,
    std::optional<bool> unclipped, RandomSource& rounding, RandomSource& noise);

struct DistributedDpSum {
  std::vector<double> sum;  // sum_u x_u + noise, unscaled (dim values)
  // sum_u (b_u - 1/2) + noise, with the count; for AdaptiveClipping::UpdateFromNoisedCenteredSum.
  std::optional<double> noised_centered_count;
};

// Decodes the (unmasked) sum of encoded vectors for the round's clip_norm. INVALID_ARGUMENT for a
// wrong length or a value outside [0, 2^modulus_bits).
absl::StatusOr<DistributedDpSum> DecodeDistributedDpSum(const DistributedDpEncoding& encoding,
                                                        absl::Span<const uint64_t> sum,
                                                        double clip_norm);

// Central DP under secure aggregation: DecodeDistributedDpSum of the (noise-free, z = 0)
// encoding's unmasked sum after adding the server's noise to its d value coordinates as integers:
// the discrete Gaussian of privacy/central_discrete_noise.h with sensitivity value_sensitivity and
// standard deviation noise_multiplier * value_sensitivity (grid units), so no floating-point noise
// is released. The count coordinate is decoded exactly (the caller noises the count). The
// coordinator and the simulator both call this. INVALID_ARGUMENT as DecodeDistributedDpSum, or for
// a negative or non-finite noise_multiplier.
absl::StatusOr<DistributedDpSum> DecodeDistributedDpSumWithCentralNoise(
    const DistributedDpEncoding& encoding, absl::Span<const uint64_t> sum, double clip_norm,
    double noise_multiplier, RandomSource& noise);

// The smallest fraction f of n clients such that Binomial(n, dropout_rate) exceeds f n with
// probability at most `tail`: a dropout_tolerance for clients that each drop independently with
// dropout_rate, so that a round aborts for too few survivors at most that often. 0 if
// dropout_rate is 0. Requires n >= 1, dropout_rate in [0, 1), tail in (0, 1).
double DropoutToleranceForRate(int64_t n, double dropout_rate, double tail = 1e-3);

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_DISTRIBUTED_DP_ENCODING_H_
