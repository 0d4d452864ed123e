#include "aggregation/aggregator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/central_discrete_noise.h"

namespace fedkit::aggregation {
namespace {

absl::Status CheckDimension(int64_t dimension) {
  if (dimension < 1) {
    return absl::InvalidArgumentError(absl::StrCat("dimension must be >= 1, not ", dimension));
  }
  return absl::OkStatus();
}

// Serialized partial aggregate: a kind tag, three configuration numbers, one total, then the
// exact sum's own bytes.
struct PartialHeader {
  uint64_t kind;
  double config[3];
  int64_t total;
};
constexpr uint64_t kFedAvgKind = 0x66656461766731;  // "fedavg1"
constexpr uint64_t kDpKind = 0x7564702d31;          // "udp-1"

std::string SerializePartial(const PartialHeader& header, const ExactSum& sum) {
  std::string bytes(sizeof(header), '\0');
  std::memcpy(bytes.data(), &header, sizeof(header));
  bytes += sum.Serialize();
  return bytes;
}

// Parses bytes from SerializePartial and checks they come from an aggregator like `expected`.
absl::StatusOr<std::pair<int64_t, ExactSum>> ParsePartial(absl::string_view bytes,
                                                          const PartialHeader& expected) {
  PartialHeader header;
  if (bytes.size() < sizeof(header)) {
    return absl::InvalidArgumentError("a serialized aggregate is shorter than its header");
  }
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.kind != expected.kind ||
      !std::equal(std::begin(header.config), std::end(header.config),
                  std::begin(expected.config))) {
    return absl::FailedPreconditionError(
        "the serialized aggregate is of another kind or configuration");
  }
  if (header.total < 0) {
    return absl::InvalidArgumentError("a serialized aggregate has a negative total");
  }
  FEDKIT_ASSIGN_OR_RETURN(ExactSum sum, ExactSum::Deserialize(bytes.substr(sizeof(header))));
  return std::make_pair(header.total, std::move(sum));
}

absl::Status NotReportable(bool reported) {
  return absl::FailedPreconditionError(reported ? "the aggregate was already reported"
                                                : "nothing was accumulated");
}

}  // namespace

double UpdateValueBound(double clip_norm, double clip_tolerance, double max_update_value) {
  return clip_norm > 0 ? clip_norm * (1.0 + clip_tolerance) : max_update_value;
}

// ---------------------------------------------------------------------------------------------
// WeightedFedAvgAggregator

absl::StatusOr<std::unique_ptr<WeightedFedAvgAggregator>> WeightedFedAvgAggregator::Create(
    int64_t dimension, double max_abs_value, int64_t max_weight) {
  FEDKIT_RETURN_IF_ERROR(CheckDimension(dimension));
  if (!std::isfinite(max_abs_value) || max_abs_value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the update value bound must be finite and positive, not ", max_abs_value));
  }
  if (max_weight < 1 || max_weight > kMaxWeightLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("the weight cap must be in [1, 2^29], not ", max_weight));
  }
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point,
                          ChooseFixedPoint(max_abs_value * static_cast<double>(max_weight)));
  return std::unique_ptr<WeightedFedAvgAggregator>(
      new WeightedFedAvgAggregator(dimension, fixed_point, max_abs_value, max_weight));
}

WeightedFedAvgAggregator::WeightedFedAvgAggregator(int64_t dimension, FixedPoint fixed_point,
                                                   double max_abs_value, int64_t max_weight)
    : max_abs_value_(max_abs_value), max_weight_(max_weight), sum_(dimension, fixed_point) {}

absl::Status WeightedFedAvgAggregator::Accumulate(absl::Span<const float> delta,
                                                  int64_t num_examples) {
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  if (num_examples < 1 || num_examples > max_weight_) {
    return absl::InvalidArgumentError(
        absl::StrCat("example count ", num_examples, " is outside [1, ", max_weight_, "]"));
  }
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!(std::abs(delta[i]) <= max_abs_value_)) {  // also NaN and infinities
      return absl::InvalidArgumentError(absl::StrCat("update value ", i, " is ", delta[i],
                                                     ", outside the bound +/-", max_abs_value_));
    }
  }
  FEDKIT_RETURN_IF_ERROR(sum_.Add(delta, static_cast<double>(num_examples)));
  total_weight_ += num_examples;
  return absl::OkStatus();
}

absl::Status WeightedFedAvgAggregator::MergeWith(const Aggregator& other) {
  const auto* same = dynamic_cast<const WeightedFedAvgAggregator*>(&other);
  if (same == nullptr || same->max_abs_value_ != max_abs_value_ ||
      same->max_weight_ != max_weight_) {
    return absl::FailedPreconditionError(
        "only a weighted FedAvg aggregator of the same bounds merges into another");
  }
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(same->sum_));
  total_weight_ += same->total_weight_;
  return absl::OkStatus();
}

absl::StatusOr<AggregateReport> WeightedFedAvgAggregator::Report() {
  if (!CanReport()) return NotReportable(reported_);
  reported_ = true;
  AggregateReport report;
  report.num_inputs = sum_.num_vectors();
  report.total_weight = total_weight_;
  report.total_examples = total_weight_;
  const double total = static_cast<double>(total_weight_);  // exact: at most 2^61
  const std::vector<double> sum = sum_.Sum();
  report.average.resize(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) report.average[i] = static_cast<float>(sum[i] / total);
  return report;
}

std::string WeightedFedAvgAggregator::Serialize() const {
  return SerializePartial(
      {kFedAvgKind, {max_abs_value_, static_cast<double>(max_weight_), 0.0}, total_weight_}, sum_);
}

absl::Status WeightedFedAvgAggregator::MergeSerialized(absl::string_view bytes) {
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  FEDKIT_ASSIGN_OR_RETURN(
      auto partial,
      ParsePartial(bytes,
                   {kFedAvgKind, {max_abs_value_, static_cast<double>(max_weight_), 0.0}, 0}));
  if (partial.first > (int64_t{1} << 62) - total_weight_) {
    return absl::InvalidArgumentError("the merged total weight would overflow");
  }
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(partial.second));
  total_weight_ += partial.first;
  return absl::OkStatus();
}

std::unique_ptr<Aggregator> WeightedFedAvgAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(new WeightedFedAvgAggregator(
      sum_.dimension(), sum_.fixed_point(), max_abs_value_, max_weight_));
}

// ---------------------------------------------------------------------------------------------
// UnitWeightDpAggregator

absl::StatusOr<std::vector<float>> CentralDpRelease(const ExactSum& sum, double clip_bound,
                                                    double noise_stddev, double fixed_denominator,
                                                    privacy::RandomSource& noise) {
  if (!std::isfinite(clip_bound) || clip_bound <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the clip bound must be finite and positive, not ", clip_bound));
  }
  if (!(fixed_denominator > 0.0 && std::isfinite(fixed_denominator))) {
    return absl::InvalidArgumentError(
        absl::StrCat("fixed denominator must be finite and > 0, got ", fixed_denominator));
  }
  const double scale = sum.fixed_point().scale;
  // One update moves the integer sum by its rounded terms: L2 norm <= clip_bound * scale plus half
  // a unit per coordinate.
  const double sensitivity =
      clip_bound * scale + 0.5 * std::sqrt(static_cast<double>(sum.dimension()));
  FEDKIT_ASSIGN_OR_RETURN(
      privacy::CentralDiscreteNoise mechanism,
      privacy::CentralDiscreteNoise::Create(noise_stddev * scale, sensitivity, sum.dimension()));
  const std::vector<absl::int128> noised = mechanism.Noise(sum.fixed_point_sums(), noise);
  std::vector<float> average(noised.size());
  for (size_t i = 0; i < noised.size(); ++i) {
    average[i] = static_cast<float>(static_cast<double>(noised[i]) / scale / fixed_denominator);
  }
  return average;
}

absl::StatusOr<std::unique_ptr<UnitWeightDpAggregator>> UnitWeightDpAggregator::Create(
    int64_t dimension, double clip_bound, double noise_stddev, double fixed_denominator,
    privacy::RandomSource* noise) {
  FEDKIT_RETURN_IF_ERROR(CheckDimension(dimension));
  if (!std::isfinite(clip_bound) || clip_bound <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the clip bound must be finite and positive, not ", clip_bound));
  }
  if (!std::isfinite(noise_stddev) || noise_stddev < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the noise standard deviation must be finite and >= 0, not ", noise_stddev));
  }
  if (!std::isfinite(fixed_denominator) || fixed_denominator <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the fixed denominator must be finite and positive, not ", fixed_denominator));
  }
  if (noise == nullptr && noise_stddev > 0) {
    return absl::InvalidArgumentError("noise with a positive standard deviation needs a source");
  }
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point, ChooseFixedPoint(clip_bound));
  return std::unique_ptr<UnitWeightDpAggregator>(new UnitWeightDpAggregator(
      dimension, fixed_point, clip_bound, noise_stddev, fixed_denominator, noise));
}

UnitWeightDpAggregator::UnitWeightDpAggregator(int64_t dimension, FixedPoint fixed_point,
                                               double clip_bound, double noise_stddev,
                                               double fixed_denominator,
                                               privacy::RandomSource* noise)
    : clip_bound_(clip_bound),
      noise_stddev_(noise_stddev),
      fixed_denominator_(fixed_denominator),
      noise_(noise),
      sum_(dimension, fixed_point) {}

absl::Status UnitWeightDpAggregator::Accumulate(absl::Span<const float> delta,
                                                int64_t num_examples) {
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  if (num_examples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("example count ", num_examples, " is negative"));
  }
  double squared = 0;
  for (float v : delta) squared += static_cast<double>(v) * static_cast<double>(v);
  const double norm = std::sqrt(squared);
  if (!(norm <= clip_bound_)) {  // also NaN and infinities
    return absl::InvalidArgumentError(
        absl::StrCat("update norm ", norm, " exceeds the clip bound ", clip_bound_));
  }
  FEDKIT_RETURN_IF_ERROR(sum_.Add(delta));
  total_examples_ += num_examples;
  return absl::OkStatus();
}

absl::Status UnitWeightDpAggregator::MergeWith(const Aggregator& other) {
  const auto* same = dynamic_cast<const UnitWeightDpAggregator*>(&other);
  if (same == nullptr || same->clip_bound_ != clip_bound_ || same->noise_stddev_ != noise_stddev_ ||
      same->fixed_denominator_ != fixed_denominator_) {
    return absl::FailedPreconditionError(
        "only a unit-weight DP aggregator of the same settings merges into another");
  }
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(same->sum_));
  total_examples_ += same->total_examples_;
  return absl::OkStatus();
}

absl::StatusOr<AggregateReport> UnitWeightDpAggregator::Report() {
  if (!CanReport()) return NotReportable(reported_);
  AggregateReport report;
  report.num_inputs = sum_.num_vectors();
  report.total_weight = sum_.num_vectors();
  report.total_examples = total_examples_;
  privacy::SeededRandomSource no_noise(0);  // unused when the standard deviation is 0
  FEDKIT_ASSIGN_OR_RETURN(report.average,
                          CentralDpRelease(sum_, clip_bound_, noise_stddev_, fixed_denominator_,
                                           noise_ != nullptr ? *noise_ : no_noise));
  reported_ = true;
  return report;
}

std::string UnitWeightDpAggregator::Serialize() const {
  return SerializePartial(
      {kDpKind, {clip_bound_, noise_stddev_, fixed_denominator_}, total_examples_}, sum_);
}

absl::Status UnitWeightDpAggregator::MergeSerialized(absl::string_view bytes) {
  if (reported_) return absl::FailedPreconditionError("the aggregate was already reported");
  FEDKIT_ASSIGN_OR_RETURN(
      auto partial,
      ParsePartial(bytes, {kDpKind, {clip_bound_, noise_stddev_, fixed_denominator_}, 0}));
  if (partial.first > (int64_t{1} << 62) - total_examples_) {
    return absl::InvalidArgumentError("the merged example count would overflow");
  }
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(partial.second));
  total_examples_ += partial.first;
  return absl::OkStatus();
}

std::unique_ptr<Aggregator> UnitWeightDpAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(
      new UnitWeightDpAggregator(sum_.dimension(), sum_.fixed_point(), clip_bound_, noise_stddev_,
                                 fixed_denominator_, noise_));
}

}  // namespace fedkit::aggregation
