#include "privacy/central_discrete_noise.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::privacy {
namespace {

// The largest noise, in grid steps, the grid is chosen for.
constexpr double kMaxGridSigma = 16777216.0;  // 2^24

// floor(x / 2^k) for k in [0, 126], without relying on how >> treats negative values.
absl::int128 FloorShift(absl::int128 x, int k) {
  if (k == 0) return x;
  if (x >= 0) return x >> k;
  const absl::int128 magnitude = -x;  // |x| < 2^127 for the sums this is used on
  const absl::int128 step = absl::int128(1) << k;
  return -((magnitude + step - 1) >> k);
}

}  // namespace

absl::StatusOr<CentralDiscreteNoise> CentralDiscreteNoise::Create(double noise_stddev,
                                                                  double sensitivity, int64_t dim) {
  if (!(noise_stddev >= 0) || !std::isfinite(noise_stddev)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise stddev must be finite and >= 0, got ", noise_stddev));
  }
  if (!(sensitivity > 0) || !std::isfinite(sensitivity)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sensitivity must be finite and > 0, got ", sensitivity));
  }
  if (dim < 1) return absl::InvalidArgumentError(absl::StrCat("dimension ", dim, " is not >= 1"));
  if (noise_stddev == 0) return CentralDiscreteNoise(0, std::nullopt);
  const double z = noise_stddev / sensitivity;
  const double rounding = std::sqrt(static_cast<double>(dim));
  for (int k = 0; k <= 120; ++k) {
    const double sensitivity_k = std::ldexp(sensitivity, -k) + (k > 0 ? rounding : 0.0);
    const double sigma = z * sensitivity_k;
    if (sigma > kMaxGridSigma) continue;
    absl::Status last = absl::OkStatus();
    // The finest rational the sampler's exact arithmetic holds at this sigma.
    for (int bits = kDefaultVarianceDenominatorBits; bits >= 0; --bits) {
      absl::StatusOr<DiscreteGaussianSampler> sampler =
          DiscreteGaussianSampler::CreateFromDouble(sigma * sigma, bits);
      if (sampler.ok()) return CentralDiscreteNoise(k, *std::move(sampler));
      last = sampler.status();
    }
    return last;
  }
  return absl::InvalidArgumentError(absl::StrCat("no grid holds noise multiplier ", z, " over ",
                                                 dim, " coordinates (z sqrt(d) > 2^24)"));
}

std::vector<absl::int128> CentralDiscreteNoise::Noise(absl::Span<const absl::int128> sums,
                                                      RandomSource& random) const {
  std::vector<absl::int128> noised(sums.begin(), sums.end());
  if (!sampler_.has_value()) return noised;
  const absl::int128 half = grid_bits_ > 0 ? absl::int128(1) << (grid_bits_ - 1) : 0;
  for (absl::int128& value : noised) {
    const absl::int128 steps = FloorShift(value + half, grid_bits_) + sampler_->Sample(random);
    value = steps * (absl::int128(1) << grid_bits_);
  }
  return noised;
}

double CentralDiscreteNoise::stddev_units() const {
  return std::ldexp(std::sqrt(grid_variance().ToDouble()), grid_bits_);
}

}  // namespace fedkit::privacy
