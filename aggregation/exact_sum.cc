#include "aggregation/exact_sum.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace fedkit::aggregation {
namespace {

constexpr int kTermBits = 94;  // |round(term * scale)| <= 2^94

// round_to_nearest(x), halves away from zero (std::llround's rule), for |x| <= 2^94, without a
// libm call: truncate, then correct by the exact fraction x - trunc(x). Doubles of magnitude
// >= 2^63 are integers already, and converting them is exact.
inline absl::int128 RoundToInt128(double x) {
  if (std::abs(x) < 0x1p63) {
    int64_t q = static_cast<int64_t>(x);  // toward zero; exact fraction below
    const double fraction = x - static_cast<double>(q);
    q += (fraction >= 0.5) - (fraction <= -0.5);
    return absl::int128(q);
  }
  return absl::int128(x);
}

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

ExactSum::ExactSum(int64_t dimension, FixedPoint fixed_point)
    : fixed_point_(fixed_point), sums_(static_cast<size_t>(dimension), 0) {}

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
  const double magnitude = std::abs(multiplier);
  bool out_of_bound = false;
  for (size_t i = 0; i < values.size(); ++i) {
    out_of_bound |= !(std::abs(static_cast<double>(values[i])) * magnitude <= limit);
  }
  if (out_of_bound) {
    for (size_t i = 0; i < values.size(); ++i) {
      const double term = static_cast<double>(values[i]) * multiplier;
      if (!(std::abs(term) <= limit)) {
        return absl::InvalidArgumentError(absl::StrCat("value ", i, " times ", multiplier, " is ",
                                                       term, ", outside the bound +/-", limit));
      }
    }
  }
  const double scale = fixed_point_.scale;
  for (size_t i = 0; i < values.size(); ++i) {
    sums_[i] += RoundToInt128(static_cast<double>(values[i]) * multiplier * scale);
  }
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
  for (size_t i = 0; i < sums_.size(); ++i) sums_[i] += other.sums_[i];
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
  std::string bytes(sizeof(header) + sums_.size() * 2 * sizeof(uint64_t), '\0');
  std::memcpy(bytes.data(), &header, sizeof(header));
  char* out = bytes.data() + sizeof(header);
  for (const absl::int128& v : sums_) {
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
  for (absl::int128& v : sum.sums_) {
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
  std::vector<double> out(sums_.size());
  for (size_t i = 0; i < sums_.size(); ++i) {
    out[i] = static_cast<double>(sums_[i]) / fixed_point_.scale;
  }
  return out;
}

}  // namespace fedkit::aggregation
