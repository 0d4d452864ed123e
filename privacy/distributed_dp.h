// Parameters of the distributed discrete Gaussian mechanism for DP-FedAvg under secure aggregation:
// Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning
// with Secure Aggregation" (ICML 2021; arXiv:2102.06387, whose numbering is used below).
//
// Pipeline on each client, all in the "scaled domain" of integers:
//   1. clip the update to L2 norm c (privacy/clipping.h) and scale it by s (so its norm is s c);
//   2. round each coordinate randomly to a neighbouring integer (ConditionalRandomizedRound);
//   3. add independent N_Z(0, sigma^2) noise per coordinate (privacy/discrete_gaussian.h), with
//      sigma^2 from DistributedDiscreteGaussianParameters;
//   4. reduce mod 2^b and mask for secure aggregation (privacy/secagg/).
// The server unmasks the sum of the survivors' vectors, maps it back to signed integers, divides by
// s and by the fixed denominator. (The paper also applies a random rotation before step 2 to
// flatten the vector and reduce modular wrap-around; that is a utility measure, orthogonal to the
// privacy parameters here.)
//
// Privacy: the released sum is a sum of k >= n_min discrete Gaussians added to a vector whose L2
// sensitivity is the rounded bound Delta of step 2. Theorem 1 bounds its Renyi divergence by that
// of a continuous Gaussian with stddev sqrt(k) sigma plus a correction tau (see
// DiscreteGaussianSumTau); when tau * d is negligible, the round is accounted as a (sampled)
// Gaussian mechanism with noise multiplier effective_noise_multiplier, with
// privacy/rdp_accountant.h. That reuse is an approximation on two counts, both tiny in the intended
// regime: tau, and the use of the sampled-Gaussian analysis of Mironov et al. (2019) for discrete
// noise, where Kairouz et al. apply the general subsampling theorem of Zhu and Wang (2019) to the
// bound of DistributedDiscreteGaussianRdp.
#ifndef FEDKIT_PRIVACY_DISTRIBUTED_DP_H_
#define FEDKIT_PRIVACY_DISTRIBUTED_DP_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/discrete_gaussian.h"
#include "privacy/noise.h"

namespace fedkit::privacy {

// L2 sensitivity, in the scaled domain, of a vector of L2 norm at most scaled_l2_norm (= s c)
// after randomized rounding of its dim coordinates to neighbouring integers (arXiv:2102.06387,
// Sec. 4.1, conditional randomized rounding; the same bound as TensorFlow Federated's
// discretization.inflated_l2_norm_bound):
//   beta == 0:  s c + sqrt(d)  — rounding moves each coordinate by less than 1, so this holds for
//               any rounding to a neighbouring integer, deterministically (triangle inequality).
//   beta in (0, 1):  min(s c + sqrt(d), sqrt((s c)^2 + d / 4 + sqrt(2 ln(1 / beta)) (s c +
//               sqrt(d) / 2)))  — holds only for *conditional* randomized rounding, which redraws
//               the rounding until the rounded norm is within this bound (each draw succeeds with
//               probability >= 1 - beta). The paper suggests beta = exp(-0.5).
// The secure-aggregation encoding of privacy/secagg/encoding.h rounds unconditionally: use beta =
// 0 with it. INVALID_ARGUMENT for scaled_l2_norm < 0 or not finite, dim < 1, beta outside [0, 1).
absl::StatusOr<double> RoundedL2SensitivityBound(double scaled_l2_norm, int64_t dim, double beta);

// Randomized rounding of an already clipped and scaled vector: each coordinate x becomes floor(x)
// + Bernoulli(x - floor(x)) (unbiased), and the whole vector is redrawn while its L2 norm exceeds
// rounded_norm_bound. Pass RoundedL2SensitivityBound(s c, d, beta) for the conditional rounding
// of the paper, or +infinity for plain (unconditional) rounding. The norm is checked in double
// arithmetic (relative error ~ d 2^-53, far below the bound's slack).
// INVALID_ARGUMENT for a non-finite coordinate, |x| >= 2^62, or a NaN / negative bound.
// FAILED_PRECONDITION after max_attempts draws over the bound: with a bound from
// RoundedL2SensitivityBound each draw fits with probability >= 1 - beta, so this means the input
// was not clipped and scaled to the norm the bound was computed for.
absl::StatusOr<std::vector<int64_t>> ConditionalRandomizedRound(absl::Span<const double> scaled,
                                                                double rounded_norm_bound,
                                                                RandomSource& random,
                                                                int max_attempts = 1000);

// tau of the main theorem of arXiv:2102.06387 (Theorem 1) for the sum of num_clients independent
// N_Z(0, sigma^2), sigma >= 1/2:
//   tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)).
// It measures how far the sum is from a single discrete Gaussian; it enters the privacy bound as
// tau * d, so check that tau * d is negligible. It falls off like 10 exp(-pi^2 sigma^2) (the k = 1
// term) and barely depends on n for sigma^2 >= 1: about 5e-4 at sigma^2 = 1, 2.7e-8 at 2, 7e-17
// at 4, so local variances of a few units or more make it vanish even for d ~ 1e7. Increasing in
// n: evaluate it at the largest number of clients whose noise can be in a sum. 0 for n <= 1.
double DiscreteGaussianSumTau(double local_variance, int64_t num_clients);

// The Renyi DP at `order` (> 1) of one unsampled round: num_clients discrete Gaussians of variance
// local_variance summed over dim coordinates, query sensitivity scaled_l2_sensitivity
// (arXiv:2102.06387 Theorem 1 / Proposition 14, as in google-research/federated's
// distributed_dp/accounting_utils.py; Delta / (sqrt(n) sigma) = 1 / effective noise multiplier):
//   min(alpha Delta^2 / (2 n sigma^2) + tau d,  alpha / 2 (Delta / sqrt(n sigma^2) + tau
//   sqrt(d))^2).
// Compare with the continuous Gaussian's alpha Delta^2 / (2 n sigma^2) to see what tau costs.
// Requires sigma >= 1/2 (the theorem's premise); returns +infinity otherwise.
double DistributedDiscreteGaussianRdp(double order, double scaled_l2_sensitivity,
                                      double local_variance, int64_t num_clients, int64_t dim);

struct DistributedDiscreteGaussianParams {
  // n_min = max(1, floor(n (1 - dropout_rate))): the fewest survivors the noise is calibrated for.
  // The server must abort (not release) a round with fewer survivors than this.
  int64_t min_surviving_clients = 0;
  // Each client's sigma^2 in the scaled domain: (z Delta)^2 / n_min, rounded up to a multiple of
  // 2^-20 (RationalAtLeast). Feed it to DiscreteGaussianSampler::Create.
  Rational local_variance;
  // sqrt(n_min * local_variance) / Delta >= z: the noise multiplier the sum of n_min shares
  // achieves (slightly above z because of the rounding up). For the accountant.
  double effective_noise_multiplier = 0.0;
  // DiscreteGaussianSumTau(local_variance, expected_clients) and tau * dim.
  double tau = 0.0;
  double tau_times_dim = 0.0;
};

// Splits a target noise multiplier z (relative to the scaled sensitivity Delta, i.e. total
// noise stddev z Delta in the scaled domain) over the clients of a round: with n expected
// clients of which at most a fraction dropout_rate may drop out, every client adds
// N_Z(0, (z Delta)^2 / n_min), so that the noise of any n_min or more survivors sums to variance
// >= (z Delta)^2. (With more survivors there is more noise than needed: the price of tolerating
// dropout.) dim is the vector length, for tau * dim.
// INVALID_ARGUMENT for z <= 0 or not finite (no noise: skip the mechanism instead), Delta <= 0,
// expected_clients < 1, dim < 1, dropout_rate outside [0, 1), a local sigma below 1/2 (Theorem 1's
// premise: increase the scale s), or a variance RationalAtLeast cannot represent (>= 2^42).
absl::StatusOr<DistributedDiscreteGaussianParams> DistributedDiscreteGaussianParameters(
    double noise_multiplier, double scaled_l2_sensitivity, int64_t expected_clients,
    double dropout_rate, int64_t dim);

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_DISTRIBUTED_DP_H_
