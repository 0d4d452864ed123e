#include "privacy/dp_setup.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "core/seeds.h"
#include "core/status_macros.h"

namespace fedkit::privacy {
namespace {

// Stream tags of DeriveSeed for DP randomness (the values the simulator has always used).
constexpr uint64_t kValueNoiseTag = 0x64702d76616c;   // "dp-val": central noise on the sum
constexpr uint64_t kCountNoiseTag = 0x64702d636e74;   // "dp-cnt": central noise on the count
constexpr uint64_t kClientNoiseTag = 0x64702d636c69;  // "dp-cli": a client's distributed share
constexpr uint64_t kSamplingTag = 0x64702d736d70;     // "dp-smp": a round's sample

// INVALID_ARGUMENT blaming `field`.
absl::Status FieldError(absl::string_view field, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kDpFieldPayload, absl::Cord(field));
  return status;
}

}  // namespace

absl::Status ValidateDpSettings(const DpSettings& settings, const DpRoundShape& shape) {
  const DpSettings& dp = settings;
  if (dp.mode == DpMode::kNone) {
    const char* needs_dp = " needs `mode` central or distributed";
    if (dp.noise_multiplier != 0) {
      return FieldError("noise_multiplier", absl::StrCat("`noise_multiplier`", needs_dp));
    }
    if (dp.adaptive_clip_quantile) {
      return FieldError("adaptive_clip_quantile",
                        absl::StrCat("`adaptive_clip_quantile`", needs_dp));
    }
    if (dp.target_epsilon) {
      return FieldError("target_epsilon", absl::StrCat("`target_epsilon`", needs_dp));
    }
    if (dp.dropout_tolerance) {
      return FieldError("dropout_tolerance", absl::StrCat("`dropout_tolerance`", needs_dp));
    }
    return absl::OkStatus();
  }
  if (!(shape.clip_norm > 0)) {
    return FieldError("clip_norm",
                      "DP needs `clip_norm` > 0 (the sensitivity of the sum; with "
                      "`adaptive_clip_quantile`, the initial clip)");
  }
  if (shape.clients_per_round < 1) {
    return FieldError("clients_per_round", absl::StrCat("`clients_per_round` must be >= 1, got ",
                                                        shape.clients_per_round));
  }
  if (shape.population < shape.clients_per_round) {
    return FieldError(
        "population",
        absl::StrCat("DP needs `population` (", shape.population,
                     ") to be at least `clients_per_round` (", shape.clients_per_round,
                     "): the accountant's sampling rate is their ratio"));
  }
  if (dp.mode == DpMode::kDistributed && !shape.secure_aggregation_modulus_bits.has_value()) {
    return FieldError("mode",
                      "`mode` distributed needs `secure_aggregation`: the clients' noise shares "
                      "only protect the sum once their updates are masked");
  }
  const double z = dp.noise_multiplier;
  if (!(z >= 0 && std::isfinite(z))) {
    return FieldError("noise_multiplier",
                      absl::StrCat("`noise_multiplier` must be finite and >= 0, got ", z));
  }
  if (!(dp.delta > 0 && dp.delta < 1)) {
    return FieldError("delta", absl::StrCat("`delta` must be in (0, 1), got ", dp.delta));
  }
  if (dp.adaptive_clip_quantile) {
    const double gamma = *dp.adaptive_clip_quantile;
    if (!(gamma > 0 && gamma < 1)) {
      return FieldError("adaptive_clip_quantile",
                        absl::StrCat("`adaptive_clip_quantile` must be in (0, 1), got ", gamma));
    }
    if (!(dp.adaptive_clip_learning_rate >= 0 && std::isfinite(dp.adaptive_clip_learning_rate))) {
      return FieldError("adaptive_clip_learning_rate",
                        absl::StrCat("`adaptive_clip_learning_rate` must be finite and >= 0, got ",
                                     dp.adaptive_clip_learning_rate));
    }
    const double m = static_cast<double>(shape.clients_per_round);
    if (z > 0 && !(z < 2 * DefaultClippedCountStddev(m))) {
      return FieldError(
          "noise_multiplier",
          absl::StrCat("`noise_multiplier` ", z, " is too large for `adaptive_clip_quantile` with ",
                       "`clients_per_round` ", shape.clients_per_round,
                       ": the clipped count's noise sigma_b = clients per round / 20 must exceed "
                       "z / 2 (use more clients per round or a fixed clip)"));
    }
  }
  if (dp.target_epsilon) {
    if (!(*dp.target_epsilon > 0)) {
      return FieldError("target_epsilon",
                        absl::StrCat("`target_epsilon` must be > 0, got ", *dp.target_epsilon));
    }
    if (!(z > 0)) {
      return FieldError("noise_multiplier",
                        "`target_epsilon` needs `noise_multiplier` > 0 (without noise epsilon is "
                        "unbounded)");
    }
  }
  if (dp.dropout_tolerance) {
    if (dp.mode != DpMode::kDistributed) {
      return FieldError("dropout_tolerance",
                        "`dropout_tolerance` applies to `mode` distributed only");
    }
    if (!(*dp.dropout_tolerance >= 0 && *dp.dropout_tolerance < 1)) {
      return FieldError(
          "dropout_tolerance",
          absl::StrCat("`dropout_tolerance` must be in [0, 1), got ", *dp.dropout_tolerance));
    }
  }
  return absl::OkStatus();
}

std::optional<std::string> DpErrorField(const absl::Status& status) {
  const absl::optional<absl::Cord> field = status.GetPayload(kDpFieldPayload);
  if (!field.has_value()) return std::nullopt;
  return std::string(*field);
}

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
  FEDKIT_RETURN_IF_ERROR(ValidateDpSettings(settings, shape));
  const double m = static_cast<double>(shape.clients_per_round);
  const double z = settings.noise_multiplier;
  DpSetup setup;
  const int64_t sampled =
      std::min(shape.population,
               shape.sampled_per_round > 0 ? shape.sampled_per_round : shape.clients_per_round);
  setup.sampling_rate = static_cast<double>(sampled) / static_cast<double>(shape.population);
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

uint64_t DpSamplingSeed(uint64_t base, int64_t round, int64_t attempt) {
  return DeriveSeed(base,
                    {static_cast<uint64_t>(round), static_cast<uint64_t>(attempt), kSamplingTag});
}

}  // namespace fedkit::privacy
