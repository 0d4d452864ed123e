#include "privacy/distributed_dp.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedkit::privacy {

absl::StatusOr<double> RoundedL2SensitivityBound(double scaled_l2_norm, int64_t dim, double beta) {
  if (!(scaled_l2_norm >= 0 && std::isfinite(scaled_l2_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("scaled L2 norm must be finite and >= 0, got ", scaled_l2_norm));
  }
  if (dim < 1) return absl::InvalidArgumentError(absl::StrCat("dim must be >= 1, got ", dim));
  if (!(beta >= 0 && beta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("beta must be in [0, 1), got ", beta));
  }
  const double c = scaled_l2_norm;
  const double sqrt_d = std::sqrt(static_cast<double>(dim));
  const double unconditional = c + sqrt_d;
  if (beta == 0) return unconditional;
  const double conditional_squared = c * c + 0.25 * static_cast<double>(dim) +
                                     std::sqrt(2 * std::log(1 / beta)) * (c + 0.5 * sqrt_d);
  return std::min(unconditional, std::sqrt(conditional_squared));
}

absl::StatusOr<std::vector<int64_t>> ConditionalRandomizedRound(absl::Span<const double> scaled,
                                                                double rounded_norm_bound,
                                                                RandomSource& random,
                                                                int max_attempts) {
  if (!(rounded_norm_bound >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounded norm bound must be >= 0, got ", rounded_norm_bound));
  }
  std::vector<double> floors(scaled.size());
  for (size_t i = 0; i < scaled.size(); ++i) {
    if (!(std::abs(scaled[i]) < 0x1.0p62)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "coordinate ", i, " is ", scaled[i], ": not finite or too large to round to int64"));
    }
    floors[i] = std::floor(scaled[i]);
  }
  const double bound_squared = rounded_norm_bound * rounded_norm_bound;
  std::vector<int64_t> rounded(scaled.size());
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    double norm_squared = 0;
    for (size_t i = 0; i < scaled.size(); ++i) {
      const double up = UniformDouble(random) < scaled[i] - floors[i] ? 1.0 : 0.0;
      const double r = floors[i] + up;
      rounded[i] = static_cast<int64_t>(r);
      norm_squared += r * r;
    }
    if (norm_squared <= bound_squared) return rounded;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "randomized rounding exceeded the norm bound ", rounded_norm_bound, " in ", max_attempts,
      " attempts: the input was not clipped and scaled to the norm the bound assumes"));
}

double DiscreteGaussianSumTau(double local_variance, int64_t num_clients) {
  double sum = 0;
  for (int64_t k = 1; k < num_clients; ++k) {
    const double kd = static_cast<double>(k);
    sum += std::exp(-2 * M_PI * M_PI * local_variance * kd / (kd + 1));
  }
  return 10 * sum;
}

double DistributedDiscreteGaussianRdp(double order, double scaled_l2_sensitivity,
                                      double local_variance, int64_t num_clients, int64_t dim) {
  if (!(local_variance >= 0.25) || num_clients < 1) return std::numeric_limits<double>::infinity();
  const double tau = DiscreteGaussianSumTau(local_variance, num_clients);
  const double d = static_cast<double>(dim);
  const double scale =
      scaled_l2_sensitivity / std::sqrt(static_cast<double>(num_clients) * local_variance);
  const double additive = order * scale * scale / 2 + tau * d;
  const double inside = scale + tau * std::sqrt(d);
  return std::min(additive, order / 2 * inside * inside);
}

absl::StatusOr<DistributedDiscreteGaussianParams> DistributedDiscreteGaussianParameters(
    double noise_multiplier, double scaled_l2_sensitivity, int64_t expected_clients,
    double dropout_rate, int64_t dim) {
  if (!(noise_multiplier > 0 && std::isfinite(noise_multiplier))) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be finite and > 0, got ", noise_multiplier));
  }
  if (!(scaled_l2_sensitivity > 0 && std::isfinite(scaled_l2_sensitivity))) {
    return absl::InvalidArgumentError(
        absl::StrCat("scaled L2 sensitivity must be finite and > 0, got ", scaled_l2_sensitivity));
  }
  if (expected_clients < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected clients must be >= 1, got ", expected_clients));
  }
  if (!(dropout_rate >= 0 && dropout_rate < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout rate must be in [0, 1), got ", dropout_rate));
  }
  if (dim < 1) return absl::InvalidArgumentError(absl::StrCat("dim must be >= 1, got ", dim));

  DistributedDiscreteGaussianParams params;
  params.min_surviving_clients = std::max<int64_t>(
      1,
      static_cast<int64_t>(std::floor(static_cast<double>(expected_clients) * (1 - dropout_rate))));
  const double central_stddev = noise_multiplier * scaled_l2_sensitivity;
  const double variance =
      central_stddev * central_stddev / static_cast<double>(params.min_surviving_clients);
  if (!(variance >= 0.25)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local discrete Gaussian variance ", variance,
        " is below 1/4 (sigma < 1/2), outside the distributed discrete Gaussian theorem: increase "
        "the scale factor"));
  }
  absl::StatusOr<Rational> rational = RationalAtLeast(variance);
  if (!rational.ok()) return rational.status();
  if (absl::Status s = DiscreteGaussianSampler::Create(*rational).status(); !s.ok()) return s;
  params.local_variance = *rational;
  const double local_variance = rational->ToDouble();
  params.effective_noise_multiplier =
      std::sqrt(static_cast<double>(params.min_surviving_clients) * local_variance) /
      scaled_l2_sensitivity;
  params.tau = DiscreteGaussianSumTau(local_variance, expected_clients);
  params.tau_times_dim = params.tau * static_cast<double>(dim);
  return params;
}

}  // namespace fedkit::privacy
