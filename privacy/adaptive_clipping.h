// Quantile-based adaptive clipping for DP-FedAvg: Andrew, Thakkar, McMahan and Ramaswamy,
// "Differentially Private Learning with Adaptive Clipping" (NeurIPS 2021; arXiv:1905.03871), with
// the geometric update they recommend. The clip norm C tracks the target quantile gamma of the
// clients' update norms, estimated with differential privacy each round:
//
//   clients:  clip the update to C (privacy/clipping.h) and report b_i = 1[||delta_i|| <= C],
//             summed with the update (e.g. as one more coordinate under secure aggregation);
//   server:   b_bar = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2,   clamped to [0, 1],
//             C    <- C * exp(-eta_C * (b_bar - gamma)).
//
// Centring the bits at 0 (b_i - 1/2) halves the sensitivity of the count to 1/2, which is what the
// noise split below assumes; the server gets the centred sum from the plain count and the number of
// reports k as count - k / 2. When k equals m this is exactly the paper's (sum_i b_i + noise) / m;
// TensorFlow Privacy's QuantileEstimatorQuery computes the same thing. The clamp is
// post-processing and only guards against noise pushing the estimate out of [0, 1].
//
// Order within a round: clients clip with clip_norm(); the server noises the sum of clipped updates
// with stddev ValueNoiseMultiplier(z, sigma_b) * clip_norm() (privacy/noise.h CentralDpAverage),
// then calls Update, which moves the clip for the next round.
#ifndef FEDKIT_PRIVACY_ADAPTIVE_CLIPPING_H_
#define FEDKIT_PRIVACY_ADAPTIVE_CLIPPING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "privacy/noise.h"

namespace fedkit::privacy {

// Splits a total noise multiplier z between the update sum and the clipped count (Andrew et al.'s
// privacy theorem for the joint mechanism, as implemented by TensorFlow Federated's
// differential_privacy.adaptive_clip_noise_params). One round with noise z_delta * C
// on the sum of updates clipped to C and noise sigma_b on the centred count is, for privacy, one
// round of DP-FedAvg with noise multiplier z where
//   z^-2 = z_delta^-2 + (2 sigma_b)^-2,   so   z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2).
// So account with z (SampledGaussianRdp, RdpAccountant) and noise the updates with z_delta > z.
// z == 0 (no privacy) gives 0. INVALID_ARGUMENT if z < 0 or not finite, sigma_b < 0, or z >= 2
// sigma_b (the count alone would spend the whole budget: raise sigma_b or lower z).
absl::StatusOr<double> ValueNoiseMultiplier(double noise_multiplier, double clipped_count_stddev);

// The paper's suggested count noise, m / 20 (TensorFlow Federated's default): enough for a tiny
// share of the privacy budget while the clip still adapts quickly.
inline double DefaultClippedCountStddev(double expected_clients_per_round) {
  return 0.05 * expected_clients_per_round;
}

struct AdaptiveClippingOptions {
  double initial_clip_norm = 0.1;           // C_0 > 0 (TFF's default)
  double target_quantile = 0.5;             // gamma in (0, 1): the fraction left unclipped
  double learning_rate = 0.2;               // eta_C >= 0: C moves by a factor <= exp(eta_C)/round
  double clipped_count_stddev = 0.0;        // sigma_b >= 0 (0: no noise, for tests / no privacy)
  double expected_clients_per_round = 0.0;  // m > 0: the fixed denominator of b_bar
};

// Everything a coordinator checkpoints to resume the estimator (the options are configuration).
struct AdaptiveClippingState {
  double clip_norm = 0.0;  // the clip of the next round
  int64_t rounds = 0;      // updates applied so far
};

// What one update did, for metrics.
struct AdaptiveClippingStep {
  double unclipped_fraction = 0.0;  // b_bar, after the clamp
  double clip_norm = 0.0;           // the new clip norm
};

class AdaptiveClipping {
 public:
  // INVALID_ARGUMENT naming the offending option if it is outside the ranges above (or not
  // finite).
  static absl::StatusOr<AdaptiveClipping> Create(const AdaptiveClippingOptions& options);

  // The clip norm clients must use this round.
  double clip_norm() const { return state_.clip_norm; }
  const AdaptiveClippingOptions& options() const { return options_; }

  // The bit a client reports: 1 if its update was not clipped (norm <= clip_norm).
  static int UnclippedBit(double update_norm, double clip_norm) {
    return update_norm <= clip_norm ? 1 : 0;
  }

  // Server step: unclipped_count = sum_i b_i over the num_reports updates received this round.
  // Adds noise of stddev >= sigma_b drawn from `random` to the centred count, then updates the
  // clip. The noise is the discrete Gaussian on a 2^-40 grid of the count (sensitivity 1/2, the
  // centred bit's; privacy/central_discrete_noise.h), not floating-point noise. The new
  // clip is kept within [DBL_MIN, DBL_MAX], so it never underflows to 0 (which ClipL2InPlace would
  // read as "do not clip") after a long run of zero updates, nor overflows to infinity.
  // INVALID_ARGUMENT unless 0 <= unclipped_count <= num_reports, both finite.
  absl::StatusOr<AdaptiveClippingStep> Update(double unclipped_count, double num_reports,
                                              RandomSource& random);

  // Server step when the count is already noised (e.g. distributed noise added by the clients
  // before secure aggregation): noised_centered_sum = sum_i (b_i - 1/2) + noise. Adds no noise.
  // INVALID_ARGUMENT if it is not finite.
  absl::StatusOr<AdaptiveClippingStep> UpdateFromNoisedCenteredSum(double noised_centered_sum);

  AdaptiveClippingState state() const { return state_; }
  // INVALID_ARGUMENT unless clip_norm is positive and finite and rounds >= 0.
  absl::Status Restore(const AdaptiveClippingState& state);

 private:
  explicit AdaptiveClipping(const AdaptiveClippingOptions& options);

  AdaptiveClippingOptions options_;
  AdaptiveClippingState state_;
};

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_ADAPTIVE_CLIPPING_H_
