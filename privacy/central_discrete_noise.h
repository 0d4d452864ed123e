// Central DP noise for a sum held as integers (the exact fixed-point sum of
// aggregation/exact_sum.h, or the unmasked sum of secure aggregation's unit-weight encoding): the
// discrete Gaussian of privacy/discrete_gaussian.h on a power-of-two grid of the sum's integer
// units, added to the integer sum. The server's central Gaussian of privacy/noise.h is computed in
// floating point and open to Mironov's least-significant-bit attack (CCS 2012: which doubles x +
// noise can take depends on x); here the release is an integer (a whole number of grid steps, plus
// the rounded sum), and everything after it (the division by the fixed denominator, the float
// conversion) is post-processing of that integer.
//
// The grid. A sum with L2 sensitivity Delta units (one client's contribution) gets noise
// multiplier z = noise_stddev / Delta. The grid step is 2^k units with k the smallest >= 0 for
// which the noise in grid steps, sigma_k, is at most 2^24 (the sampler's exact range is far above
// that, and its cost does not grow with sigma): each coordinate of the sum is rounded to the
// nearest grid point (a deterministic post-processing of the sum that moves a neighbouring sum's
// rounding by at most one step per coordinate), so the sensitivity in grid steps is
// Delta_k = Delta / 2^k + sqrt(d) for k > 0 (Delta for k = 0), and sigma_k = z * Delta_k: the same
// noise multiplier against the rounded sum's sensitivity, so the accountant's z holds, and the
// noise in units, sigma_k 2^k, is never below noise_stddev (above it by the factor
// 1 + 2^k sqrt(d) / Delta, tiny when the grid is fine against the clip). sigma_k^2 is rounded up to
// a rational (privacy::RationalAtLeast). For the exact sum's scale (2^94 / bound per unit) the grid
// is about 2^-24 z S, far below float precision for any parameter.
//
// Thread safety: immutable after Create; Noise may run on several threads with one RandomSource
// each.
#ifndef FEDKIT_PRIVACY_CENTRAL_DISCRETE_NOISE_H_
#define FEDKIT_PRIVACY_CENTRAL_DISCRETE_NOISE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/discrete_gaussian.h"
#include "privacy/noise.h"

namespace fedkit::privacy {

class CentralDiscreteNoise {
 public:
  // noise_stddev and sensitivity in the sum's integer units, dim >= 1 coordinates. noise_stddev 0
  // adds nothing (a simulation without privacy). INVALID_ARGUMENT for a non-finite or negative
  // noise_stddev, a non-positive sensitivity, dim < 1, or a z sqrt(dim) too large for any grid.
  static absl::StatusOr<CentralDiscreteNoise> Create(double noise_stddev, double sensitivity,
                                                     int64_t dim);

  // For each coordinate: the sum rounded to the nearest multiple of 2^grid_bits() (ties upward),
  // plus 2^grid_bits() times an independent N_Z(0, grid_variance()) sample; in the sum's units.
  // Nothing is added (and nothing rounded) when noise_stddev was 0.
  std::vector<absl::int128> Noise(absl::Span<const absl::int128> sums, RandomSource& random) const;

  int grid_bits() const { return grid_bits_; }
  // sigma_k^2 in grid steps squared (0 without noise).
  Rational grid_variance() const {
    return sampler_.has_value() ? sampler_->sigma_squared() : Rational{0, 1};
  }
  // The noise's standard deviation in the sum's units: sqrt(grid_variance()) 2^grid_bits().
  double stddev_units() const;

 private:
  CentralDiscreteNoise(int grid_bits, std::optional<DiscreteGaussianSampler> sampler)
      : grid_bits_(grid_bits), sampler_(std::move(sampler)) {}

  int grid_bits_ = 0;
  std::optional<DiscreteGaussianSampler> sampler_;  // nullopt: no noise
};

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_CENTRAL_DISCRETE_NOISE_H_
