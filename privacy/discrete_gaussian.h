// Exact sampling from the discrete Gaussian N_Z(0, sigma^2), the distribution on the integers with
// Pr[X = x] proportional to exp(-x^2 / (2 sigma^2)): Canonne, Kamath and Steinke, "The Discrete
// Gaussian for Differential Privacy" (NeurIPS 2020), Algorithm 3 (rejection from a discrete
// Laplace), with their Algorithms 1 and 2 for Bernoulli(exp(-gamma)) and the discrete Laplace.
// Every step is integer arithmetic on exact rationals driven by uniform random words, so the
// output distribution is the stated one (up to the cutoff below) given uniform words, with none of
// the floating-point artefacts of privacy/noise.h. It is the noise of the distributed discrete
// Gaussian mechanism (privacy/distributed_dp.h), where each client adds it to its quantized
// update before secure aggregation masks it.
#ifndef FEDKIT_PRIVACY_DISCRETE_GAUSSIAN_H_
#define FEDKIT_PRIVACY_DISCRETE_GAUSSIAN_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/noise.h"

namespace fedkit::privacy {

// A non-negative rational numerator / denominator.
struct Rational {
  int64_t numerator = 0;
  int64_t denominator = 1;
  double ToDouble() const { return static_cast<double>(numerator) / denominator; }
};

// Resolution used to turn a double variance into a Rational: multiples of 2^-20 (~9.5e-7).
inline constexpr int kDefaultVarianceDenominatorBits = 20;

// The smallest multiple of 2^-denominator_bits that is >= x, reduced to lowest terms: rounding up
// is the safe direction for a noise variance (never less noise than asked for), and the error is
// below 2^-denominator_bits in absolute terms (below 1e-6 relative for x >= 1). INVALID_ARGUMENT
// if x is negative or not finite, denominator_bits is outside [0, 40], or x * 2^denominator_bits
// does not fit in 62 bits.
absl::StatusOr<Rational> RationalAtLeast(double x,
                                         int denominator_bits = kDefaultVarianceDenominatorBits);

// Samples N_Z(0, sigma^2) for a fixed rational sigma^2 = p / q. Immutable after Create, so one
// sampler may be shared across threads if each thread uses its own RandomSource.
//
// Range: all arithmetic is exact in 128 bits provided q * t^2 <= 2^56 and p <= 2^62, where t =
// floor(sigma) + 1 is the discrete Laplace scale. Every value RationalAtLeast returns meets this
// (a double has 53 significant bits, so q * sigma^2 <= 2^53), hence CreateFromDouble accepts any
// sigma^2 RationalAtLeast does; only hand-made rationals with large denominators can fall outside
// (with q = 2^20, sigma^2 up to about 6.9e10). To keep the numbers in range, proposals with
// |x| > 64 t are rejected, so the output is N_Z(0, sigma^2) conditioned on |X| <= 64 t; as t >
// sigma and the discrete Gaussian is sigma^2-subgaussian, that event has probability above
// 1 - 2 exp(-2048): the distributions are indistinguishable at any sample size.
//
// Cost: measured at about 12-17 random 64-bit words and 0.3-0.4 us per sample for sigma^2 from
// 0.5 to 1e6 (x86-64, -O2, mt19937_64): ~0.4 s for a 1M-parameter update.
class DiscreteGaussianSampler {
 public:
  // INVALID_ARGUMENT for a negative numerator, a non-positive denominator, or sigma^2 outside the
  // range above. sigma^2 = 0 gives a sampler that always returns 0.
  static absl::StatusOr<DiscreteGaussianSampler> Create(Rational sigma_squared);
  // sigma^2 given as a double, converted with RationalAtLeast(sigma_squared, denominator_bits).
  static absl::StatusOr<DiscreteGaussianSampler> CreateFromDouble(
      double sigma_squared, int denominator_bits = kDefaultVarianceDenominatorBits);

  // One sample.
  int64_t Sample(RandomSource& random) const;

  // values[i] += an independent sample, for each i.
  void AddNoise(absl::Span<int64_t> values, RandomSource& random) const;

  // values[i] = (values[i] + an independent sample) mod 2^modulus_bits, for values held as
  // elements of Z_{2^modulus_bits} in uint64_t (negative noise wraps, two's complement), the
  // representation secure aggregation sums (privacy/secagg/). Call it after quantization and
  // before masking. modulus_bits must be in [1, 64]; values are expected to be already reduced.
  void AddNoiseModular(absl::Span<uint64_t> values, int modulus_bits, RandomSource& random) const;

  // sigma^2 in lowest terms.
  Rational sigma_squared() const { return {p_, q_}; }

 private:
  DiscreteGaussianSampler(int64_t p, int64_t q, int64_t t);

  int64_t p_;  // sigma^2 = p_ / q_, in lowest terms
  int64_t q_;
  int64_t t_;  // discrete Laplace scale floor(sigma) + 1 (0 when sigma = 0)
};

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_DISCRETE_GAUSSIAN_H_
