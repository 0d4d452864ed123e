#include "privacy/dp_setup.h"

#include "absl/strings/str_cat.h"
#include "core/seeds.h"
#include "core/status_macros.h"

namespace fedkit::privacy {
namespace {

// Stream tags of DeriveSeed for DP randomness (the values the simulator has always used).
constexpr uint64_t kValueNoiseTag = 0x64702d76616c;   // "dp-val": central noise on the sum
constexpr uint64_t kCountNoiseTag = 0x64702d636e74;   // "dp-cnt": central noise on the count
constexpr uint64_t kClientNoiseTag = 0x64702d636c69;  // "dp-cli": a client's distributed share

}  // namespace

absl::StatusOr<DpMode> ParseDpMode(absl::string_view name) {
  if (name == "none") return DpMode::kNone;
  if (name == "central") return DpMode::kCentral;
  if (name == "distributed") return DpMode::kDistributed;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown DP mode '", name, "'; expected none, central or distributed"));
}

absl::string_view DpModeName(DpMode mode) {
  switch (mode) {
    case DpMode::kNone:
      return "none";
    case DpMode::kCentral:
      return "central";
    case DpMode::kDistributed:
      return "distributed";
  }
  return "?";
}

DistributedDpEncodingOptions EncodingOptions(const DpSettings& settings, const DpRoundShape& shape,
                                             double clipped_count_stddev) {
  DistributedDpEncodingOptions options;
  options.modulus_bits = shape.secure_aggregation_modulus_bits.value_or(32);
  options.max_clients = shape.clients_per_round;
  options.dim = shape.dim;
  options.with_count = settings.adaptive_clip_quantile.has_value();
  if (settings.mode == DpMode::kDistributed) {
    options.noise_multiplier = settings.noise_multiplier;
    options.clipped_count_stddev = clipped_count_stddev;
    options.dropout_tolerance = settings.dropout_tolerance.value_or(
        DropoutToleranceForRate(shape.clients_per_round, shape.expected_dropout_rate));
  }
  return options;
}

absl::StatusOr<DpSetup> SetUpDp(const DpSettings& settings, const DpRoundShape& shape) {
  if (settings.mode == DpMode::kNone) {
    return absl::InvalidArgumentError("SetUpDp needs DP mode central or distributed");
  }
  if (!(shape.clip_norm > 0)) {
    return absl::InvalidArgumentError("DP needs a clip norm > 0 (the sensitivity of the sum)");
  }
  if (shape.clients_per_round < 1 || shape.population < shape.clients_per_round) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DP needs a population (", shape.population, ") of at least the clients per round (",
        shape.clients_per_round, "): the accountant's sampling rate is their ratio"));
  }
  if (settings.mode == DpMode::kDistributed && !shape.secure_aggregation_modulus_bits.has_value()) {
    return absl::InvalidArgumentError(
        "distributed DP needs secure aggregation: the clients' noise shares only protect the sum "
        "once their updates are masked");
  }
  const double m = static_cast<double>(shape.clients_per_round);
  const double z = settings.noise_multiplier;
  DpSetup setup;
  setup.sampling_rate = m / static_cast<double>(shape.population);
  const bool adaptive = settings.adaptive_clip_quantile.has_value();
  // Without noise there is no privacy to protect: the count is not noised either.
  setup.clipped_count_stddev = adaptive && z > 0 ? DefaultClippedCountStddev(m) : 0.0;
  if (adaptive) {
    setup.adaptive_clipping =
        AdaptiveClippingOptions{.initial_clip_norm = shape.clip_norm,
                                .target_quantile = *settings.adaptive_clip_quantile,
                                .learning_rate = settings.adaptive_clip_learning_rate,
                                .clipped_count_stddev = setup.clipped_count_stddev,
                                .expected_clients_per_round = m};
    FEDKIT_RETURN_IF_ERROR(AdaptiveClipping::Create(*setup.adaptive_clipping).status());
  }
  if (shape.secure_aggregation_modulus_bits.has_value()) {
    FEDKIT_ASSIGN_OR_RETURN(setup.encoding, ChooseDistributedDpEncoding(EncodingOptions(
                                                settings, shape, setup.clipped_count_stddev)));
  }
  if (settings.mode == DpMode::kDistributed) {
    setup.accounting_noise_multiplier = setup.encoding->effective_noise_multiplier;
    setup.value_noise_multiplier = setup.encoding->value_noise_multiplier;
  } else {
    setup.accounting_noise_multiplier = z;
    setup.value_noise_multiplier = z;
    if (adaptive) {
      FEDKIT_ASSIGN_OR_RETURN(setup.value_noise_multiplier,
                              ValueNoiseMultiplier(z, setup.clipped_count_stddev));
    }
  }
  return setup;
}

uint64_t ValueNoiseSeed(uint64_t base, int64_t round) {
  return DeriveSeed(base, {static_cast<uint64_t>(round), kValueNoiseTag});
}
uint64_t CountNoiseSeed(uint64_t base, int64_t round) {
  return DeriveSeed(base, {static_cast<uint64_t>(round), kCountNoiseTag});
}
uint64_t ClientNoiseSeed(uint64_t base, int64_t round, int64_t client_index) {
  return DeriveSeed(
      base, {static_cast<uint64_t>(round), static_cast<uint64_t>(client_index), kClientNoiseTag});
}

}  // namespace fedkit::privacy
