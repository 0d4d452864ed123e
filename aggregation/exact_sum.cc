#include "aggregation/exact_sum.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedkit::aggregation {
namespace {

constexpr int kTermBits = 62;  // |round(term * scale)| <= 2^62

}  // namespace

absl::StatusOr<FixedPoint> ChooseFixedPoint(double value_bound) {
  if (!std::isfinite(value_bound) || value_bound <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the value bound must be finite and positive, not ", value_bound));
  }
  // The largest 2^k with value_bound * 2^k <= 2^62: value_bound = m * 2^e with m in [0.5, 1).
  int exponent = 0;
  const double mantissa = std::frexp(value_bound, &exponent);
  // A power of two (m = 0.5) reaches 2^62 exactly with one more step.
  const int k = kTermBits - exponent + (mantissa == 0.5 ? 1 : 0);
  const double scale = std::ldexp(1.0, k);
  if (!std::isfinite(scale) || scale == 0 || value_bound * scale > std::ldexp(1.0, kTermBits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no fixed-point scale fits the value bound ", value_bound));
  }
  return FixedPoint{value_bound, scale};
}

ExactSum::ExactSum(int64_t dimension, FixedPoint fixed_point)
    : fixed_point_(fixed_point),
      sums_(static_cast<size_t>(dimension), 0),
      scratch_(static_cast<size_t>(dimension)) {}

absl::Status ExactSum::Add(absl::Span<const float> values, double multiplier) {
  if (static_cast<int64_t>(values.size()) != dimension()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a vector of ", values.size(), " values added to a sum of ", dimension()));
  }
  if (!std::isfinite(multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat("multiplier ", multiplier, " is not finite"));
  }
  if (num_vectors_ == INT64_MAX) {
    return absl::InvalidArgumentError("the sum already holds 2^63 - 1 vectors");
  }
  // First every term (so that a bad value leaves the sum unchanged), then the additions.
  for (size_t i = 0; i < values.size(); ++i) {
    const double term = static_cast<double>(values[i]) * multiplier;
    if (!(std::abs(term) <= fixed_point_.value_bound)) {  // also refuses NaN and infinities
      return absl::InvalidArgumentError(absl::StrCat("value ", i, " times ", multiplier, " is ",
                                                     term, ", outside the bound +/-",
                                                     fixed_point_.value_bound));
    }
    scratch_[i] = std::llround(term * fixed_point_.scale);
  }
  for (size_t i = 0; i < values.size(); ++i) sums_[i] += scratch_[i];
  ++num_vectors_;
  return absl::OkStatus();
}

absl::Status ExactSum::MergeWith(const ExactSum& other) {
  if (other.dimension() != dimension() || !(other.fixed_point_ == fixed_point_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot merge a sum of ", other.dimension(), " values at scale ", other.fixed_point_.scale,
        " into one of ", dimension(), " at scale ", fixed_point_.scale));
  }
  if (other.num_vectors_ > INT64_MAX - num_vectors_) {
    return absl::FailedPreconditionError("the merged sum would hold more than 2^63 - 1 vectors");
  }
  for (size_t i = 0; i < sums_.size(); ++i) sums_[i] += other.sums_[i];
  num_vectors_ += other.num_vectors_;
  return absl::OkStatus();
}

std::vector<double> ExactSum::Sum() const {
  std::vector<double> out(sums_.size());
  for (size_t i = 0; i < sums_.size(); ++i) {
    out[i] = static_cast<double>(sums_[i]) / fixed_point_.scale;
  }
  return out;
}

}  // namespace fedkit::aggregation
