#include "aggregation/exact_sum.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "aggregation/exact_sum_kernels.h"

namespace fedkit::aggregation {
namespace {

constexpr int kTermBits = 94;  // |round(term * scale)| <= 2^94

}  // namespace

absl::StatusOr<FixedPoint> ChooseFixedPoint(double value_bound) {
  if (!std::isfinite(value_bound) || value_bound <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the value bound must be finite and positive, not ", value_bound));
  }
  // The largest 2^k with value_bound * 2^k <= 2^94: value_bound = m * 2^e with m in [0.5, 1).
  int exponent = 0;
  const double mantissa = std::frexp(value_bound, &exponent);
  // A power of two (m = 0.5) reaches 2^94 exactly with one more step.
  const int k = kTermBits - exponent + (mantissa == 0.5 ? 1 : 0);
  const double scale = std::ldexp(1.0, k);
  if (!std::isfinite(scale) || scale == 0 || value_bound * scale > std::ldexp(1.0, kTermBits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no fixed-point scale fits the value bound ", value_bound));
  }
  return FixedPoint{value_bound, scale};
}

namespace {
const absl::int128 kHighUnit = absl::int128(1) << internal::kLowBits;
}  // namespace

ExactSum::ExactSum(int64_t dimension, FixedPoint fixed_point)
    : fixed_point_(fixed_point),
      high_(static_cast<size_t>(dimension), 0),
      low_(static_cast<size_t>(dimension), 0) {}

void ExactSum::Carry() {
  if (carried_.empty()) carried_.assign(high_.size(), 0);
  for (size_t i = 0; i < high_.size(); ++i) {
    carried_[i] += absl::int128(high_[i]) * kHighUnit + low_[i];
    high_[i] = 0;
    low_[i] = 0;
  }
  batch_vectors_ = 0;
}

std::vector<absl::int128> ExactSum::fixed_point_sums() const {
  std::vector<absl::int128> sums(high_.size());
  for (size_t i = 0; i < high_.size(); ++i) {
    sums[i] = absl::int128(high_[i]) * kHighUnit + low_[i];
    if (!carried_.empty()) sums[i] += carried_[i];
  }
  return sums;
}

absl::Status ExactSum::Add(absl::Span<const float> values, double multiplier) {
  if (static_cast<int64_t>(values.size()) != dimension()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a vector of ", values.size(), " values added to a sum of ", dimension()));
  }
  if (!std::isfinite(multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat("multiplier ", multiplier, " is not finite"));
  }
  if (num_vectors_ >= kMaxVectors) {
    return absl::FailedPreconditionError("the sum already holds 2^32 vectors, the most it may");
  }
  // First check every term (so that a bad value leaves the sum unchanged), then add them. The
  // check is one branch-free pass (|v| * |multiplier| <= bound, false for NaN and infinities);
  // only a refused vector is scanned again, for the message.
  const double limit = fixed_point_.value_bound;
  if (internal::AnyTermOutside(values, std::abs(multiplier), limit)) {
    for (size_t i = 0; i < values.size(); ++i) {
      const double term = static_cast<double>(values[i]) * multiplier;
      if (!(std::abs(term) <= limit)) {
        return absl::InvalidArgumentError(absl::StrCat("value ", i, " times ", multiplier, " is ",
                                                       term, ", outside the bound +/-", limit));
      }
    }
  }
  internal::AddRoundedTerms(values, multiplier, fixed_point_.scale, high_.data(), low_.data());
  if (++batch_vectors_ == internal::kTermsPerPart) Carry();
  ++num_vectors_;
  return absl::OkStatus();
}

absl::Status ExactSum::MergeWith(const ExactSum& other) {
  if (other.dimension() != dimension() || !(other.fixed_point_ == fixed_point_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot merge a sum of ", other.dimension(), " values at scale ", other.fixed_point_.scale,
        " into one of ", dimension(), " at scale ", fixed_point_.scale));
  }
  if (other.num_vectors_ > kMaxVectors - num_vectors_) {
    return absl::FailedPreconditionError("the merged sum would hold more than 2^32 vectors");
  }
  if (batch_vectors_ + other.batch_vectors_ <= internal::kTermsPerPart) {
    for (size_t i = 0; i < high_.size(); ++i) {
      high_[i] += other.high_[i];
      low_[i] += other.low_[i];
    }
    batch_vectors_ += other.batch_vectors_;
    if (!other.carried_.empty()) {
      if (carried_.empty()) carried_.assign(high_.size(), 0);
      for (size_t i = 0; i < carried_.size(); ++i) carried_[i] += other.carried_[i];
    }
  } else {
    Carry();
    const std::vector<absl::int128> others = other.fixed_point_sums();
    for (size_t i = 0; i < carried_.size(); ++i) carried_[i] += others[i];
  }
  num_vectors_ += other.num_vectors_;
  return absl::OkStatus();
}

namespace {

struct SerializedHeader {
  int64_t dimension;
  double value_bound;
  double scale;
  int64_t num_vectors;
};

}  // namespace

std::string ExactSum::Serialize() const {
  const SerializedHeader header{dimension(), fixed_point_.value_bound, fixed_point_.scale,
                                num_vectors_};
  const std::vector<absl::int128> sums = fixed_point_sums();
  std::string bytes(sizeof(header) + sums.size() * 2 * sizeof(uint64_t), '\0');
  std::memcpy(bytes.data(), &header, sizeof(header));
  char* out = bytes.data() + sizeof(header);
  for (const absl::int128& v : sums) {
    const uint64_t low = absl::Int128Low64(v);
    const int64_t high = absl::Int128High64(v);
    std::memcpy(out, &low, sizeof(low));
    std::memcpy(out + sizeof(low), &high, sizeof(high));
    out += 2 * sizeof(uint64_t);
  }
  return bytes;
}

absl::StatusOr<ExactSum> ExactSum::Deserialize(absl::string_view bytes) {
  SerializedHeader header;
  if (bytes.size() < sizeof(header)) {
    return absl::InvalidArgumentError("a serialized exact sum is shorter than its header");
  }
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.dimension < 0 || bytes.size() - sizeof(header) !=
                                  static_cast<uint64_t>(header.dimension) * 2 * sizeof(uint64_t)) {
    return absl::InvalidArgumentError(absl::StrCat("a serialized exact sum of ", bytes.size(),
                                                   " bytes does not hold ", header.dimension,
                                                   " values"));
  }
  absl::StatusOr<FixedPoint> fixed_point = ChooseFixedPoint(header.value_bound);
  if (!fixed_point.ok() || fixed_point->scale != header.scale) {
    return absl::InvalidArgumentError("a serialized exact sum has an inconsistent fixed point");
  }
  if (header.num_vectors < 0 || header.num_vectors > kMaxVectors) {
    return absl::InvalidArgumentError(
        absl::StrCat("a serialized exact sum claims ", header.num_vectors, " vectors"));
  }
  ExactSum sum(header.dimension, *fixed_point);
  sum.num_vectors_ = header.num_vectors;
  // Each term is at most 2^94 in magnitude.
  const absl::int128 limit = absl::int128(header.num_vectors) << kTermBits;
  const char* in = bytes.data() + sizeof(header);
  sum.carried_.assign(static_cast<size_t>(header.dimension), 0);
  for (absl::int128& v : sum.carried_) {
    uint64_t low = 0;
    int64_t high = 0;
    std::memcpy(&low, in, sizeof(low));
    std::memcpy(&high, in + sizeof(low), sizeof(high));
    in += 2 * sizeof(uint64_t);
    v = absl::MakeInt128(high, low);
    if (v > limit || v < -limit) {
      return absl::InvalidArgumentError(
          "a serialized exact sum has a value larger than its vector count allows");
    }
  }
  return sum;
}

std::vector<double> ExactSum::Sum() const {
  const std::vector<absl::int128> sums = fixed_point_sums();
  std::vector<double> out(sums.size());
  for (size_t i = 0; i < sums.size(); ++i) {
    out[i] = static_cast<double>(sums[i]) / fixed_point_.scale;
  }
  return out;
}

}  // namespace fedkit::aggregation
