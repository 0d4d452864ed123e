#include "aggregation/robust.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/decimal.h"
#include "core/status_macros.h"

namespace fedkit::aggregation {
namespace {

// ---------------------------------------------------------------------------------------------
// Shared checks

absl::Status CheckBounds(int64_t dimension, double max_abs_value, int64_t max_weight) {
  if (dimension < 1) {
    return absl::InvalidArgumentError(absl::StrCat("dimension must be >= 1, not ", dimension));
  }
  if (!std::isfinite(max_abs_value) || max_abs_value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the update value bound must be finite and positive, not ", max_abs_value));
  }
  if (max_weight < 1 || max_weight > kMaxWeightLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("the weight cap must be in [1, 2^29], not ", max_weight));
  }
  return absl::OkStatus();
}

// The fixed point WeightedFedAvgAggregator uses for the same bounds (so sums agree bit for bit).
absl::StatusOr<FixedPoint> WeightedFixedPoint(double max_abs_value, int64_t max_weight) {
  return ChooseFixedPoint(max_abs_value * static_cast<double>(max_weight));
}

absl::Status CheckUpdate(absl::Span<const float> delta, int64_t num_examples, int64_t dimension,
                         double max_abs_value, int64_t max_weight) {
  if (num_examples < 1 || num_examples > max_weight) {
    return absl::InvalidArgumentError(
        absl::StrCat("example count ", num_examples, " is outside [1, ", max_weight, "]"));
  }
  if (static_cast<int64_t>(delta.size()) != dimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("the update has ", delta.size(), " values, not ", dimension));
  }
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!(std::abs(delta[i]) <= max_abs_value)) {  // also NaN and infinities
      return absl::InvalidArgumentError(absl::StrCat("update value ", i, " is ", delta[i],
                                                     ", outside the bound +/-", max_abs_value));
    }
  }
  return absl::OkStatus();
}

absl::Status AlreadyReported() {
  return absl::FailedPreconditionError("the aggregate was already reported");
}

bool ValidBeta(double beta) { return beta >= 0.0 && beta < 0.5; }  // false for NaN
bool ValidCount(int64_t count, int64_t min) { return count >= min && count <= kMaxSpecCount; }
bool ValidNormBound(double c) { return std::isfinite(c) && c > 0.0; }

// A key whose unsigned order is the numeric order of finite floats, with -0 before +0: a total
// order, so sorting by it gives one sequence of bit patterns whatever the input order.
uint32_t OrderKey(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}
float FromOrderKey(uint32_t key) {
  return std::bit_cast<float>((key & 0x80000000u) != 0 ? key & 0x7fffffffu : ~key);
}

// Serialized buffering aggregators: this header, then per update its weight and its values.
struct BufferHeader {
  uint64_t kind;
  double config[4];  // value bound, weight cap, two parameters
  int64_t dimension;
  int64_t count;
};
constexpr uint64_t kMedianKind = 0x6d656469616e31;     // "median1"
constexpr uint64_t kTrimmedMeanKind = 0x7472696d6d31;  // "trimm1"
constexpr uint64_t kKrumKind = 0x6b72756d31;           // "krum1"
constexpr uint64_t kNormBoundKind = 0x6e6f726d626431;  // "normbd1"

// Serialized norm bounding: this header, then the exact sum's bytes.
struct NormBoundHeader {
  uint64_t kind;
  double config[3];  // value bound, weight cap, norm bound
  int64_t total_weight;
  int64_t num_scaled;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Specs

absl::string_view AggregatorKindName(AggregatorKind kind) {
  switch (kind) {
    case AggregatorKind::kMean:
      return "mean";
    case AggregatorKind::kMedian:
      return "median";
    case AggregatorKind::kTrimmedMean:
      return "trimmed-mean";
    case AggregatorKind::kKrum:
      return "krum";
    case AggregatorKind::kMultiKrum:
      return "multi-krum";
    case AggregatorKind::kNormBound:
      return "norm-bound";
  }
  return "unknown";
}

absl::string_view AcceptedAggregatorSpecs() {
  return "mean | median | trimmed-mean:BETA | krum:F | multi-krum:F,M | norm-bound:C";
}

namespace {

bool ParseDecimal(absl::string_view s, double* value) {
  return ParsePlainDecimal(s, /*allow_sign=*/false, value);
}

bool ParseCount(absl::string_view s, int64_t* value) {
  if (s.empty() || s.size() > 18) return false;  // 18 digits fit int64
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, value);
}

}  // namespace

absl::StatusOr<AggregatorSpec> ParseAggregatorSpec(absl::string_view text) {
  auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid aggregator \"", absl::CHexEscape(text),
                                                   "\": ", why,
                                                   "; accepted: ", AcceptedAggregatorSpecs()));
  };
  const size_t colon = text.find(':');
  const absl::string_view name = text.substr(0, colon);
  const bool has_argument = colon != absl::string_view::npos;
  const absl::string_view argument = has_argument ? text.substr(colon + 1) : absl::string_view();

  AggregatorSpec spec;
  if (name == "mean" || name == "median") {
    if (has_argument) return invalid(absl::StrCat(name, " takes no parameter"));
    spec.kind = name == "mean" ? AggregatorKind::kMean : AggregatorKind::kMedian;
    return spec;
  }
  if (name == "trimmed-mean") {
    if (!has_argument) return invalid("trimmed-mean needs :BETA, the fraction trimmed per end");
    if (!ParseDecimal(argument, &spec.beta) || !ValidBeta(spec.beta)) {
      return invalid("BETA must be a decimal number in [0, 0.5)");
    }
    spec.kind = AggregatorKind::kTrimmedMean;
    return spec;
  }
  if (name == "krum") {
    if (!has_argument) return invalid("krum needs :F, the number of attackers");
    if (!ParseCount(argument, &spec.attackers) || !ValidCount(spec.attackers, 0)) {
      return invalid(absl::StrCat("F must be an integer in [0, ", kMaxSpecCount, "]"));
    }
    spec.kind = AggregatorKind::kKrum;
    return spec;
  }
  if (name == "multi-krum") {
    if (!has_argument) return invalid("multi-krum needs :F,M (attackers, updates averaged)");
    const std::vector<absl::string_view> parts = absl::StrSplit(argument, ',');
    if (parts.size() != 2) return invalid("multi-krum needs two integers F,M");
    if (!ParseCount(parts[0], &spec.attackers) || !ValidCount(spec.attackers, 0)) {
      return invalid(absl::StrCat("F must be an integer in [0, ", kMaxSpecCount, "]"));
    }
    if (!ParseCount(parts[1], &spec.selected) || !ValidCount(spec.selected, 1)) {
      return invalid(absl::StrCat("M must be an integer in [1, ", kMaxSpecCount, "]"));
    }
    spec.kind = AggregatorKind::kMultiKrum;
    return spec;
  }
  if (name == "norm-bound") {
    if (!has_argument) return invalid("norm-bound needs :C, the L2 norm bound");
    if (!ParseDecimal(argument, &spec.norm_bound) || !ValidNormBound(spec.norm_bound)) {
      return invalid("C must be a finite decimal number > 0");
    }
    spec.kind = AggregatorKind::kNormBound;
    return spec;
  }
  return invalid("unknown aggregator");
}

std::string FormatAggregatorSpec(const AggregatorSpec& spec) {
  const absl::string_view name = AggregatorKindName(spec.kind);
  switch (spec.kind) {
    case AggregatorKind::kMean:
    case AggregatorKind::kMedian:
      return std::string(name);
    case AggregatorKind::kTrimmedMean:
      return absl::StrCat(name, ":", ShortestDecimal(spec.beta));
    case AggregatorKind::kKrum:
      return absl::StrCat(name, ":", spec.attackers);
    case AggregatorKind::kMultiKrum:
      return absl::StrCat(name, ":", spec.attackers, ",", spec.selected);
    case AggregatorKind::kNormBound:
      return absl::StrCat(name, ":", ShortestDecimal(spec.norm_bound));
  }
  return std::string(name);
}

absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(const AggregatorSpec& spec,
                                                           int64_t dimension, double value_bound,
                                                           int64_t max_weight) {
  const AggregatorKind kind = spec.kind;
  const bool uses_beta = kind == AggregatorKind::kTrimmedMean;
  const bool uses_attackers = kind == AggregatorKind::kKrum || kind == AggregatorKind::kMultiKrum;
  const bool uses_selected = kind == AggregatorKind::kMultiKrum;
  const bool uses_norm = kind == AggregatorKind::kNormBound;
  if ((!uses_beta && spec.beta != 0.0) || (!uses_attackers && spec.attackers != 0) ||
      (!uses_selected && spec.selected != 0) || (!uses_norm && spec.norm_bound != 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("the aggregator spec sets a parameter ",
                                                   AggregatorKindName(kind), " does not use"));
  }
  switch (kind) {
    case AggregatorKind::kMean: {
      FEDKIT_ASSIGN_OR_RETURN(auto aggregator,
                              WeightedFedAvgAggregator::Create(dimension, value_bound, max_weight));
      return std::unique_ptr<Aggregator>(std::move(aggregator));
    }
    case AggregatorKind::kMedian: {
      FEDKIT_ASSIGN_OR_RETURN(
          auto aggregator, CoordinateMedianAggregator::Create(dimension, value_bound, max_weight));
      return std::unique_ptr<Aggregator>(std::move(aggregator));
    }
    case AggregatorKind::kTrimmedMean: {
      FEDKIT_ASSIGN_OR_RETURN(auto aggregator, TrimmedMeanAggregator::Create(
                                                   dimension, value_bound, max_weight, spec.beta));
      return std::unique_ptr<Aggregator>(std::move(aggregator));
    }
    case AggregatorKind::kKrum:
    case AggregatorKind::kMultiKrum: {
      if (kind == AggregatorKind::kMultiKrum && spec.selected < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("multi-krum needs M >= 1 updates averaged, not ", spec.selected));
      }
      FEDKIT_ASSIGN_OR_RETURN(auto aggregator,
                              KrumAggregator::Create(dimension, value_bound, max_weight,
                                                     spec.attackers, spec.selected));
      return std::unique_ptr<Aggregator>(std::move(aggregator));
    }
    case AggregatorKind::kNormBound: {
      FEDKIT_ASSIGN_OR_RETURN(
          auto aggregator,
          NormBoundAggregator::Create(dimension, value_bound, max_weight, spec.norm_bound));
      return std::unique_ptr<Aggregator>(std::move(aggregator));
    }
  }
  return absl::InvalidArgumentError("unknown aggregator kind");
}

// ---------------------------------------------------------------------------------------------
// BufferingAggregator

BufferingAggregator::BufferingAggregator(int64_t dimension, FixedPoint fixed_point,
                                         double max_abs_value, int64_t max_weight, Config config)
    : max_abs_value_(max_abs_value),
      max_weight_(max_weight),
      config_(config),
      sum_(dimension, fixed_point) {}

absl::Status BufferingAggregator::TooFewInputs(int64_t n) const {
  return absl::FailedPreconditionError(
      absl::StrCat("needs at least ", MinInputs(), " updates, has ", n));
}

bool BufferingAggregator::CanReport() const {
  return !reported_ && sum_.num_vectors() >= 1 && sum_.num_vectors() >= MinInputs();
}

bool BufferingAggregator::SameConfiguration(const BufferingAggregator& other) const {
  return config_.kind == other.config_.kind &&
         config_.parameters[0] == other.config_.parameters[0] &&
         config_.parameters[1] == other.config_.parameters[1] &&
         max_abs_value_ == other.max_abs_value_ && max_weight_ == other.max_weight_ &&
         dimension() == other.dimension();
}

absl::Status BufferingAggregator::Accumulate(absl::Span<const float> delta, int64_t num_examples) {
  if (reported_) return AlreadyReported();
  FEDKIT_RETURN_IF_ERROR(
      CheckUpdate(delta, num_examples, dimension(), max_abs_value_, max_weight_));
  Update update{std::vector<float>(delta.begin(), delta.end()), num_examples};
  FEDKIT_RETURN_IF_ERROR(sum_.Add(delta, static_cast<double>(num_examples)));  // last check
  updates_.push_back(std::move(update));
  total_examples_ += num_examples;
  return absl::OkStatus();
}

absl::Status BufferingAggregator::MergeWith(const Aggregator& other) {
  const auto* same = dynamic_cast<const BufferingAggregator*>(&other);
  if (same == nullptr || !SameConfiguration(*same)) {
    return absl::FailedPreconditionError(
        "only an aggregator of the same kind and configuration merges into another");
  }
  if (reported_) return AlreadyReported();
  const size_t count = same->updates_.size();  // before anything is added (other may be this)
  const int64_t examples = same->total_examples_;
  updates_.reserve(updates_.size() + count);
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(same->sum_));
  for (size_t i = 0; i < count; ++i) updates_.push_back(same->updates_[i]);  // no reallocation
  total_examples_ += examples;
  return absl::OkStatus();
}

absl::StatusOr<AggregateReport> BufferingAggregator::Report() {
  if (reported_) return AlreadyReported();
  const int64_t n = sum_.num_vectors();
  if (n == 0) return absl::FailedPreconditionError("nothing was accumulated");
  if (n < MinInputs()) return TooFewInputs(n);
  AggregateReport report;
  report.num_inputs = n;
  report.total_examples = total_examples_;
  FEDKIT_RETURN_IF_ERROR(Release(updates_, report));
  reported_ = true;
  return report;
}

std::string BufferingAggregator::Serialize() const {
  const BufferHeader header{config_.kind,
                            {max_abs_value_, static_cast<double>(max_weight_),
                             config_.parameters[0], config_.parameters[1]},
                            dimension(),
                            static_cast<int64_t>(updates_.size())};
  const size_t row = sizeof(int64_t) + sizeof(float) * static_cast<size_t>(dimension());
  std::string bytes(sizeof(header) + row * updates_.size(), '\0');
  char* out = bytes.data();
  std::memcpy(out, &header, sizeof(header));
  out += sizeof(header);
  for (const Update& update : updates_) {
    std::memcpy(out, &update.weight, sizeof(int64_t));
    std::memcpy(out + sizeof(int64_t), update.values.data(), row - sizeof(int64_t));
    out += row;
  }
  return bytes;
}

absl::Status BufferingAggregator::MergeSerialized(absl::string_view bytes) {
  if (reported_) return AlreadyReported();
  BufferHeader header;
  if (bytes.size() < sizeof(header)) {
    return absl::InvalidArgumentError("a serialized aggregate is shorter than its header");
  }
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.kind != config_.kind || header.config[0] != max_abs_value_ ||
      header.config[1] != static_cast<double>(max_weight_) ||
      header.config[2] != config_.parameters[0] || header.config[3] != config_.parameters[1] ||
      header.dimension != dimension()) {
    return absl::FailedPreconditionError(
        "the serialized aggregate is of another kind or configuration");
  }
  const size_t row = sizeof(int64_t) + sizeof(float) * static_cast<size_t>(dimension());
  const size_t body = bytes.size() - sizeof(header);
  if (header.count < 0 || body % row != 0 || body / row != static_cast<uint64_t>(header.count)) {
    return absl::InvalidArgumentError(
        "a serialized aggregate's length does not match its update count");
  }
  // Everything is parsed and checked into temporaries first: on error nothing changes.
  ExactSum partial(dimension(), sum_.fixed_point());
  std::vector<Update> parsed(static_cast<size_t>(header.count));
  int64_t examples = 0;
  const char* in = bytes.data() + sizeof(header);
  for (Update& update : parsed) {
    std::memcpy(&update.weight, in, sizeof(int64_t));
    update.values.resize(static_cast<size_t>(dimension()));
    std::memcpy(update.values.data(), in + sizeof(int64_t), row - sizeof(int64_t));
    in += row;
    FEDKIT_RETURN_IF_ERROR(
        CheckUpdate(update.values, update.weight, dimension(), max_abs_value_, max_weight_));
    FEDKIT_RETURN_IF_ERROR(partial.Add(update.values, static_cast<double>(update.weight)));
    examples += update.weight;
  }
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(partial));
  for (Update& update : parsed) updates_.push_back(std::move(update));
  total_examples_ += examples;
  return absl::OkStatus();
}

std::vector<size_t> BufferingAggregator::CanonicalOrder(const std::vector<Update>& updates) {
  std::vector<size_t> order(updates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&updates](size_t a, size_t b) {
    const Update& x = updates[a];
    const Update& y = updates[b];
    for (size_t k = 0; k < x.values.size(); ++k) {
      const uint32_t kx = OrderKey(x.values[k]);
      const uint32_t ky = OrderKey(y.values[k]);
      if (kx != ky) return kx < ky;
    }
    return x.weight < y.weight;
  });
  return order;
}

// ---------------------------------------------------------------------------------------------
// Coordinate-wise statistics

namespace {

// Gathers the order keys of the updates' values coordinate by coordinate, a block of coordinates
// at a time (each update's values are read contiguously), and calls column(j, keys) with the n
// keys of coordinate j (the callee may reorder them).
template <typename Values, typename Column>
void ForEachCoordinate(const std::vector<Values>& rows, size_t dimension, Column column) {
  constexpr size_t kBlock = 256;
  const size_t n = rows.size();
  std::vector<uint32_t> block(kBlock * n);
  for (size_t start = 0; start < dimension; start += kBlock) {
    const size_t width = std::min(kBlock, dimension - start);
    for (size_t u = 0; u < n; ++u) {
      const float* values = rows[u]->data() + start;
      for (size_t j = 0; j < width; ++j) block[j * n + u] = OrderKey(values[j]);
    }
    for (size_t j = 0; j < width; ++j) {
      column(start + j, absl::Span<uint32_t>(block.data() + j * n, n));
    }
  }
}

template <typename Update>
std::vector<const std::vector<float>*> Rows(const std::vector<Update>& updates) {
  std::vector<const std::vector<float>*> rows;
  rows.reserve(updates.size());
  for (const Update& update : updates) rows.push_back(&update.values);
  return rows;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinateMedianAggregator>> CoordinateMedianAggregator::Create(
    int64_t dimension, double max_abs_value, int64_t max_weight) {
  FEDKIT_RETURN_IF_ERROR(CheckBounds(dimension, max_abs_value, max_weight));
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point, WeightedFixedPoint(max_abs_value, max_weight));
  return std::unique_ptr<CoordinateMedianAggregator>(new CoordinateMedianAggregator(
      dimension, fixed_point, max_abs_value, max_weight, Config{kMedianKind, {0.0, 0.0}}));
}

std::unique_ptr<Aggregator> CoordinateMedianAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(new CoordinateMedianAggregator(
      dimension(), fixed_point(), max_abs_value(), max_weight(), Config{kMedianKind, {0.0, 0.0}}));
}

absl::Status CoordinateMedianAggregator::Release(const std::vector<Update>& updates,
                                                 AggregateReport& report) const {
  const size_t n = updates.size();
  const size_t upper = n / 2;  // the middle (odd n) or the upper middle (even n)
  report.average.resize(static_cast<size_t>(dimension()));
  ForEachCoordinate(Rows(updates), report.average.size(), [&](size_t j, absl::Span<uint32_t> keys) {
    std::nth_element(keys.begin(), keys.begin() + upper, keys.end());
    const float high = FromOrderKey(keys[upper]);
    if (n % 2 == 1) {
      report.average[j] = high;
      return;
    }
    // The lower middle: the largest key below the upper middle.
    const float low = FromOrderKey(*std::max_element(keys.begin(), keys.begin() + upper));
    report.average[j] =
        static_cast<float>(0.5 * (static_cast<double>(low) + static_cast<double>(high)));
  });
  report.total_weight = n % 2 == 1 ? 1 : 2;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TrimmedMeanAggregator>> TrimmedMeanAggregator::Create(
    int64_t dimension, double max_abs_value, int64_t max_weight, double beta) {
  FEDKIT_RETURN_IF_ERROR(CheckBounds(dimension, max_abs_value, max_weight));
  if (!ValidBeta(beta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the trimmed fraction must be in [0, 0.5), not ", beta));
  }
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point, WeightedFixedPoint(max_abs_value, max_weight));
  return std::unique_ptr<TrimmedMeanAggregator>(
      new TrimmedMeanAggregator(dimension, fixed_point, max_abs_value, max_weight, beta));
}

TrimmedMeanAggregator::TrimmedMeanAggregator(int64_t dimension, FixedPoint fixed_point,
                                             double max_abs_value, int64_t max_weight, double beta)
    : BufferingAggregator(dimension, fixed_point, max_abs_value, max_weight,
                          Config{kTrimmedMeanKind, {beta, 0.0}}),
      beta_(beta) {}

std::unique_ptr<Aggregator> TrimmedMeanAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(
      new TrimmedMeanAggregator(dimension(), fixed_point(), max_abs_value(), max_weight(), beta_));
}

absl::Status TrimmedMeanAggregator::Release(const std::vector<Update>& updates,
                                            AggregateReport& report) const {
  const size_t n = updates.size();
  // beta < 0.5 leaves n - 2 * trim >= 1; the clamp guards the slack.
  const size_t trim =
      std::min(static_cast<size_t>(std::floor(beta_ * static_cast<double>(n) + 1e-9)), (n - 1) / 2);
  const size_t kept = n - 2 * trim;
  report.average.resize(static_cast<size_t>(dimension()));
  ForEachCoordinate(Rows(updates), report.average.size(), [&](size_t j, absl::Span<uint32_t> keys) {
    std::sort(keys.begin(), keys.end());  // one sequence: a total order
    double sum = 0.0;
    for (size_t k = trim; k < trim + kept; ++k) sum += FromOrderKey(keys[k]);
    report.average[j] = static_cast<float>(sum / static_cast<double>(kept));
  });
  report.total_weight = static_cast<int64_t>(kept);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Krum and Multi-Krum

absl::StatusOr<std::unique_ptr<KrumAggregator>> KrumAggregator::Create(int64_t dimension,
                                                                       double max_abs_value,
                                                                       int64_t max_weight,
                                                                       int64_t attackers,
                                                                       int64_t selected) {
  FEDKIT_RETURN_IF_ERROR(CheckBounds(dimension, max_abs_value, max_weight));
  if (!ValidCount(attackers, 0)) {
    return absl::InvalidArgumentError(absl::StrCat("Krum's assumed attackers F must be in [0, ",
                                                   kMaxSpecCount, "], not ", attackers));
  }
  if (!ValidCount(selected, 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Multi-Krum's selected updates M must be in [0, ", kMaxSpecCount, "], not ", selected));
  }
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point, WeightedFixedPoint(max_abs_value, max_weight));
  return std::unique_ptr<KrumAggregator>(
      new KrumAggregator(dimension, fixed_point, max_abs_value, max_weight, attackers, selected));
}

KrumAggregator::KrumAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                               int64_t max_weight, int64_t attackers, int64_t selected)
    : BufferingAggregator(
          dimension, fixed_point, max_abs_value, max_weight,
          Config{kKrumKind, {static_cast<double>(attackers), static_cast<double>(selected)}}),
      attackers_(attackers),
      selected_(selected) {}

std::unique_ptr<Aggregator> KrumAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(new KrumAggregator(dimension(), fixed_point(), max_abs_value(),
                                                        max_weight(), attackers_, selected_));
}

absl::Status KrumAggregator::TooFewInputs(int64_t n) const {
  return absl::FailedPreconditionError(
      absl::StrCat(selected_ == 0 ? "Krum" : "Multi-Krum", " with F = ", attackers_,
                   " attackers needs n >= 2F + 3 = ", MinInputs(), " updates; it has n = ", n));
}

absl::Status KrumAggregator::Release(const std::vector<Update>& updates,
                                     AggregateReport& report) const {
  // Work in the canonical order, so that equal scores fall to the canonically first update.
  const std::vector<size_t> order = CanonicalOrder(updates);
  const size_t n = order.size();
  const size_t d = static_cast<size_t>(dimension());
  // Squared distances of pairs i < j (canonical positions), row by row: the upper triangle.
  auto index = [n](size_t i, size_t j) { return i * (2 * n - i - 1) / 2 + (j - i - 1); };
  std::vector<double> distances(n * (n - 1) / 2);
  for (size_t i = 0; i < n; ++i) {
    const float* x = updates[order[i]].values.data();
    for (size_t j = i + 1; j < n; ++j) {
      const float* y = updates[order[j]].values.data();
      double squared = 0.0;
      for (size_t k = 0; k < d; ++k) {
        const double diff = static_cast<double>(x[k]) - static_cast<double>(y[k]);
        squared += diff * diff;
      }
      distances[index(i, j)] = squared;
    }
  }
  // Score: the n - F - 2 smallest distances to others, summed in ascending order (n >= 2F + 3,
  // so at least F + 1 >= 1 of them).
  const size_t nearest = n - static_cast<size_t>(attackers_) - 2;
  std::vector<double> scores(n);
  std::vector<double> row(n - 1);
  for (size_t i = 0; i < n; ++i) {
    size_t r = 0;
    for (size_t j = 0; j < n; ++j) {
      if (j != i) row[r++] = distances[i < j ? index(i, j) : index(j, i)];
    }
    std::nth_element(row.begin(), row.begin() + (nearest - 1), row.end());
    std::sort(row.begin(), row.begin() + nearest);
    double score = 0.0;
    for (size_t k = 0; k < nearest; ++k) score += row[k];
    scores[i] = score;
  }
  // Lowest scores first; equal scores keep the canonical order.
  std::vector<size_t> ranked(n);
  for (size_t i = 0; i < n; ++i) ranked[i] = i;
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&scores](size_t a, size_t b) { return scores[a] < scores[b]; });

  const size_t count = selected_ == 0 ? 1
                                      : std::min(static_cast<size_t>(selected_),
                                                 n - static_cast<size_t>(attackers_));
  if (count == 1) {
    const Update& best = updates[order[ranked[0]]];
    report.average = best.values;
    report.total_weight = best.weight;
    return absl::OkStatus();
  }
  // The weighted mean of the selected, summed exactly (any order gives the same bits).
  ExactSum sum(dimension(), fixed_point());
  int64_t total = 0;
  for (size_t k = 0; k < count; ++k) {
    const Update& update = updates[order[ranked[k]]];
    FEDKIT_RETURN_IF_ERROR(sum.Add(update.values, static_cast<double>(update.weight)));
    total += update.weight;
  }
  const std::vector<double> sums = sum.Sum();
  report.average.resize(sums.size());
  for (size_t j = 0; j < sums.size(); ++j) {
    report.average[j] = static_cast<float>(sums[j] / static_cast<double>(total));
  }
  report.total_weight = total;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// NormBoundAggregator

absl::StatusOr<std::unique_ptr<NormBoundAggregator>> NormBoundAggregator::Create(
    int64_t dimension, double max_abs_value, int64_t max_weight, double norm_bound) {
  FEDKIT_RETURN_IF_ERROR(CheckBounds(dimension, max_abs_value, max_weight));
  if (!ValidNormBound(norm_bound)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the norm bound must be finite and positive, not ", norm_bound));
  }
  FEDKIT_ASSIGN_OR_RETURN(FixedPoint fixed_point, WeightedFixedPoint(max_abs_value, max_weight));
  return std::unique_ptr<NormBoundAggregator>(
      new NormBoundAggregator(dimension, fixed_point, max_abs_value, max_weight, norm_bound));
}

NormBoundAggregator::NormBoundAggregator(int64_t dimension, FixedPoint fixed_point,
                                         double max_abs_value, int64_t max_weight,
                                         double norm_bound)
    : max_abs_value_(max_abs_value),
      max_weight_(max_weight),
      norm_bound_(norm_bound),
      sum_(dimension, fixed_point) {}

absl::Status NormBoundAggregator::Accumulate(absl::Span<const float> delta, int64_t num_examples) {
  if (reported_) return AlreadyReported();
  FEDKIT_RETURN_IF_ERROR(
      CheckUpdate(delta, num_examples, sum_.dimension(), max_abs_value_, max_weight_));
  double squared = 0.0;
  for (float v : delta) squared += static_cast<double>(v) * static_cast<double>(v);
  const double norm = std::sqrt(squared);
  if (norm <= norm_bound_) {
    FEDKIT_RETURN_IF_ERROR(sum_.Add(delta, static_cast<double>(num_examples)));
  } else {
    // Scaling down never raises a magnitude, so the scaled values stay within the bound.
    const double factor = norm_bound_ / norm;
    std::vector<float> scaled(delta.size());
    for (size_t i = 0; i < delta.size(); ++i) {
      scaled[i] = static_cast<float>(static_cast<double>(delta[i]) * factor);
    }
    FEDKIT_RETURN_IF_ERROR(sum_.Add(scaled, static_cast<double>(num_examples)));
    ++num_scaled_;
  }
  total_weight_ += num_examples;
  return absl::OkStatus();
}

absl::Status NormBoundAggregator::MergeWith(const Aggregator& other) {
  const auto* same = dynamic_cast<const NormBoundAggregator*>(&other);
  if (same == nullptr || same->max_abs_value_ != max_abs_value_ ||
      same->max_weight_ != max_weight_ || same->norm_bound_ != norm_bound_) {
    return absl::FailedPreconditionError(
        "only a norm-bounding aggregator of the same bounds merges into another");
  }
  if (reported_) return AlreadyReported();
  const int64_t weight = same->total_weight_;
  const int64_t scaled = same->num_scaled_;
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(same->sum_));
  total_weight_ += weight;
  num_scaled_ += scaled;
  return absl::OkStatus();
}

absl::StatusOr<AggregateReport> NormBoundAggregator::Report() {
  if (reported_) return AlreadyReported();
  if (sum_.num_vectors() == 0) return absl::FailedPreconditionError("nothing was accumulated");
  reported_ = true;
  AggregateReport report;
  report.num_inputs = sum_.num_vectors();
  report.total_weight = total_weight_;
  report.total_examples = total_weight_;
  const double total = static_cast<double>(total_weight_);
  const std::vector<double> sum = sum_.Sum();
  report.average.resize(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) report.average[i] = static_cast<float>(sum[i] / total);
  return report;
}

std::string NormBoundAggregator::Serialize() const {
  const NormBoundHeader header{kNormBoundKind,
                               {max_abs_value_, static_cast<double>(max_weight_), norm_bound_},
                               total_weight_,
                               num_scaled_};
  std::string bytes(sizeof(header), '\0');
  std::memcpy(bytes.data(), &header, sizeof(header));
  bytes += sum_.Serialize();
  return bytes;
}

absl::Status NormBoundAggregator::MergeSerialized(absl::string_view bytes) {
  if (reported_) return AlreadyReported();
  NormBoundHeader header;
  if (bytes.size() < sizeof(header)) {
    return absl::InvalidArgumentError("a serialized aggregate is shorter than its header");
  }
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.kind != kNormBoundKind || header.config[0] != max_abs_value_ ||
      header.config[1] != static_cast<double>(max_weight_) || header.config[2] != norm_bound_) {
    return absl::FailedPreconditionError(
        "the serialized aggregate is of another kind or configuration");
  }
  FEDKIT_ASSIGN_OR_RETURN(ExactSum partial, ExactSum::Deserialize(bytes.substr(sizeof(header))));
  // Each update weighs 1..max_weight, and at most its count of them were scaled.
  // (num_vectors <= 2^32 and max_weight <= 2^29: the product fits.)
  if (header.total_weight < partial.num_vectors() ||
      header.total_weight > partial.num_vectors() * max_weight_ || header.num_scaled < 0 ||
      header.num_scaled > partial.num_vectors()) {
    return absl::InvalidArgumentError(
        "a serialized aggregate's totals do not match its update count");
  }
  if (header.total_weight > (int64_t{1} << 62) - total_weight_) {
    return absl::InvalidArgumentError("the merged total weight would overflow");
  }
  FEDKIT_RETURN_IF_ERROR(sum_.MergeWith(partial));
  total_weight_ += header.total_weight;
  num_scaled_ += header.num_scaled;
  return absl::OkStatus();
}

std::unique_ptr<Aggregator> NormBoundAggregator::CloneEmpty() const {
  return std::unique_ptr<Aggregator>(new NormBoundAggregator(
      sum_.dimension(), sum_.fixed_point(), max_abs_value_, max_weight_, norm_bound_));
}

}  // namespace fedkit::aggregation
