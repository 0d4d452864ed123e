#include "aggregation/staleness.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/decimal.h"

namespace fedkit::aggregation {

double StalenessWeighting::Weight(int64_t staleness) const {
  if (exponent == 0) return 1.0;
  const double s = static_cast<double>(std::max<int64_t>(staleness, 0));
  return std::pow(1.0 + s, -exponent);
}

void WeighByStaleness(const StalenessWeighting& weighting, int64_t staleness,
                      absl::Span<float> delta) {
  const float w = static_cast<float>(weighting.Weight(staleness));
  if (w == 1.0f) return;
  for (float& v : delta) v *= w;
}

absl::Status ValidateFedBuffSettings(const FedBuffSettings& settings) {
  if (settings.buffer_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("`buffer_size` must be >= 1, got ", settings.buffer_size));
  }
  if (settings.concurrency < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("`concurrency` must be >= 1, got ", settings.concurrency));
  }
  if (!std::isfinite(settings.staleness.exponent) || settings.staleness.exponent < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`staleness` exponent must be finite and >= 0, got ", settings.staleness.exponent));
  }
  return absl::OkStatus();
}

absl::StatusOr<StalenessWeighting> ParseStalenessWeighting(absl::string_view spec) {
  if (spec == "constant") return StalenessWeighting{.exponent = 0.0};
  if (spec == "sqrt") return StalenessWeighting{.exponent = 0.5};
  double exponent = 0;
  if (absl::ConsumePrefix(&spec, "poly:") &&
      ParsePlainDecimal(spec, /*allow_sign=*/false, &exponent)) {
    return StalenessWeighting{.exponent = exponent};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "staleness weighting is constant, sqrt or poly:A with A >= 0, not '", spec, "'"));
}

std::string FormatStalenessWeighting(const StalenessWeighting& weighting) {
  if (weighting.exponent == 0) return "constant";
  if (weighting.exponent == 0.5) return "sqrt";
  return absl::StrCat("poly:", ShortestDecimal(weighting.exponent));
}

}  // namespace fedkit::aggregation
