#include "privacy/adaptive_clipping.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "privacy/central_discrete_noise.h"

namespace fedkit::privacy {

absl::StatusOr<double> ValueNoiseMultiplier(double noise_multiplier, double clipped_count_stddev) {
  if (!(noise_multiplier >= 0 && std::isfinite(noise_multiplier))) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be finite and >= 0, got ", noise_multiplier));
  }
  if (!(clipped_count_stddev >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clipped count stddev must be >= 0, got ", clipped_count_stddev));
  }
  if (noise_multiplier == 0) return 0.0;
  if (noise_multiplier >= 2 * clipped_count_stddev) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clipped count stddev ", clipped_count_stddev, " is too small for noise multiplier ",
        noise_multiplier, ": need z < 2 sigma_b (raise sigma_b or lower z)"));
  }
  const double two_sigma_b = 2 * clipped_count_stddev;
  return 1 / std::sqrt(1 / (noise_multiplier * noise_multiplier) - 1 / (two_sigma_b * two_sigma_b));
}

absl::StatusOr<AdaptiveClipping> AdaptiveClipping::Create(const AdaptiveClippingOptions& options) {
  auto invalid = [](const char* name, const char* range, double value) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be ", range, ", got ", value));
  };
  if (!(options.initial_clip_norm > 0 && std::isfinite(options.initial_clip_norm))) {
    return invalid("initial clip norm", "finite and > 0", options.initial_clip_norm);
  }
  if (!(options.target_quantile > 0 && options.target_quantile < 1)) {
    return invalid("target quantile", "in (0, 1)", options.target_quantile);
  }
  if (!(options.learning_rate >= 0 && std::isfinite(options.learning_rate))) {
    return invalid("learning rate", "finite and >= 0", options.learning_rate);
  }
  if (!(options.clipped_count_stddev >= 0 && std::isfinite(options.clipped_count_stddev))) {
    return invalid("clipped count stddev", "finite and >= 0", options.clipped_count_stddev);
  }
  if (!(options.expected_clients_per_round > 0 &&
        std::isfinite(options.expected_clients_per_round))) {
    return invalid("expected clients per round", "finite and > 0",
                   options.expected_clients_per_round);
  }
  return AdaptiveClipping(options);
}

AdaptiveClipping::AdaptiveClipping(const AdaptiveClippingOptions& options)
    : options_(options), state_{options.initial_clip_norm, 0} {}

absl::StatusOr<AdaptiveClippingStep> AdaptiveClipping::Update(double unclipped_count,
                                                              double num_reports,
                                                              RandomSource& random) {
  if (!(std::isfinite(num_reports) && unclipped_count >= 0 && unclipped_count <= num_reports)) {
    return absl::InvalidArgumentError(
        absl::StrCat("need 0 <= unclipped count <= number of reports, got ", unclipped_count,
                     " of ", num_reports));
  }
  double centered = unclipped_count - 0.5 * num_reports;
  if (options_.clipped_count_stddev > 0) {
    // The discrete Gaussian on a fine fixed-point grid of the centred count: one client moves it
    // by 1/2, and the release is an integer (no floating-point noise; Mironov 2012).
    constexpr int kCountFractionBits = 40;
    const double scale = std::ldexp(1.0, kCountFractionBits);
    absl::StatusOr<CentralDiscreteNoise> noise =
        CentralDiscreteNoise::Create(options_.clipped_count_stddev * scale, 0.5 * scale, /*dim=*/1);
    if (!noise.ok()) return noise.status();
    const absl::int128 units(std::round(centered * scale));
    centered = static_cast<double>(noise->Noise({units}, random)[0]) / scale;
  }
  return UpdateFromNoisedCenteredSum(centered);
}

absl::StatusOr<AdaptiveClippingStep> AdaptiveClipping::UpdateFromNoisedCenteredSum(
    double noised_centered_sum) {
  if (!std::isfinite(noised_centered_sum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noised centred count must be finite, got ", noised_centered_sum));
  }
  const double fraction =
      std::clamp(noised_centered_sum / options_.expected_clients_per_round + 0.5, 0.0, 1.0);
  const double clip =
      state_.clip_norm * std::exp(-options_.learning_rate * (fraction - options_.target_quantile));
  state_.clip_norm =
      std::clamp(clip, std::numeric_limits<double>::min(), std::numeric_limits<double>::max());
  ++state_.rounds;
  return AdaptiveClippingStep{fraction, state_.clip_norm};
}

absl::Status AdaptiveClipping::Restore(const AdaptiveClippingState& state) {
  if (!(state.clip_norm > 0 && std::isfinite(state.clip_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("restored clip norm must be finite and > 0, got ", state.clip_norm));
  }
  if (state.rounds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("restored round count must be >= 0, got ", state.rounds));
  }
  state_ = state;
  return absl::OkStatus();
}

}  // namespace fedkit::privacy
