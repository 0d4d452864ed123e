#include "aggregation/fednova.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedkit::aggregation {

absl::StatusOr<double> FedNovaNormalizer(int64_t steps, double momentum) {
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("momentum must be in [0, 1), got ", momentum));
  }
  if (steps < 1) return absl::InvalidArgumentError(absl::StrCat("steps must be >= 1, got ", steps));
  const double tau = static_cast<double>(steps);
  if (momentum == 0.0) return tau;
  const double rho = momentum;
  return (tau - rho * (1.0 - std::pow(rho, tau)) / (1.0 - rho)) / (1.0 - rho);
}

absl::StatusOr<FedNovaNormalization> FedNovaNormalization::Create(double momentum) {
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("momentum must be in [0, 1), got ", momentum));
  }
  return FedNovaNormalization(momentum);
}

absl::Status FedNovaNormalization::Normalize(absl::Span<float> delta, int64_t num_examples,
                                             int64_t steps) {
  if (num_examples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_examples must be >= 1, got ", num_examples));
  }
  absl::StatusOr<double> norm = FedNovaNormalizer(steps, momentum_);
  if (!norm.ok()) return norm.status();
  for (float& v : delta) v = static_cast<float>(static_cast<double>(v) / *norm);
  records_.emplace_back(num_examples, *norm);
  return absl::OkStatus();
}

absl::StatusOr<double> FedNovaNormalization::EffectiveSteps() const {
  if (records_.empty()) return absl::FailedPreconditionError("no update was normalized");
  // A canonical order: the same sum whatever order the uploads arrived in.
  std::vector<std::pair<int64_t, double>> sorted = records_;
  std::sort(sorted.begin(), sorted.end());
  double weighted = 0.0;
  double examples = 0.0;
  for (const auto& [n, norm] : sorted) {
    weighted += static_cast<double>(n) * norm;
    examples += static_cast<double>(n);
  }
  return weighted / examples;
}

absl::Status FedNovaNormalization::Apply(absl::Span<float> average) const {
  absl::StatusOr<double> tau_eff = EffectiveSteps();
  if (!tau_eff.ok()) return tau_eff.status();
  for (float v : average) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("the average has a non-finite value");
  }
  for (float& v : average) v = static_cast<float>(static_cast<double>(v) * *tau_eff);
  return absl::OkStatus();
}

}  // namespace fedkit::aggregation
