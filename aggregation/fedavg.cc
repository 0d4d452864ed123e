#include "aggregation/fedavg.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "absl/strings/str_cat.h"

namespace fedkit::aggregation {

// A constructor cannot report an error, so a negative dimension becomes 0: every non-empty Add()
// then fails with a message naming the expected size instead of crashing in std::vector.
WeightedFedAvg::WeightedFedAvg(int64_t dimension, std::optional<double> max_weight)
    : max_weight_(max_weight), sum_(static_cast<size_t>(std::max<int64_t>(dimension, 0)), 0.0) {}

absl::Status WeightedFedAvg::Add(absl::Span<const float> delta, int64_t num_examples) {
  // Validate everything before touching the state, so a rejected client leaves no trace.
  if (delta.size() != sum_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta has ", delta.size(), " values, expected ", sum_.size()));
  }
  if (num_examples <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_examples must be positive, got ", num_examples));
  }
  // `!(x > 0)` also catches NaN; a zero cap would make every weight 0 and Average() divide by 0.
  if (max_weight_.has_value() && !(*max_weight_ > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_weight must be positive, got ", *max_weight_));
  }
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("delta[", i, "] is not finite (", delta[i], ")"));
    }
  }

  double weight = static_cast<double>(num_examples);
  if (max_weight_.has_value()) weight = std::min(weight, *max_weight_);
  for (size_t i = 0; i < delta.size(); ++i) sum_[i] += weight * static_cast<double>(delta[i]);
  total_weight_ += weight;
  ++num_contributions_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> WeightedFedAvg::Average() const {
  if (num_contributions_ == 0) {
    return absl::FailedPreconditionError("cannot average: no deltas were added");
  }
  std::vector<float> average(sum_.size());
  for (size_t i = 0; i < sum_.size(); ++i) {
    average[i] = static_cast<float>(sum_[i] / total_weight_);
  }
  return average;
}

}  // namespace fedkit::aggregation
