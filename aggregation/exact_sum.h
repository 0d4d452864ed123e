// Exact, order-independent summation of float vectors: each term is rounded once to a fixed-point
// integer and the integers are summed exactly, so the sum is the same bit for bit whatever order
// the terms arrive in and however they are split across threads, processes or machines and merged
// (integer addition is associative; floating-point addition is not). The first piece of the round
// engine's streaming aggregation (issue 10): a coordinator can fold each update in as it arrives
// instead of keeping every delta of the round to sum them in a fixed order.
//
// Representation. A term t = multiplier * values[i] (e.g. a client's weight times its delta) with
// |t| <= value_bound becomes q = round_to_nearest(t * scale), a signed 64-bit integer, and the
// per-coordinate sums are signed 128-bit integers. The scale is the largest power of two with
// value_bound * scale <= 2^62, so every q fits in 63 bits, and 2^63 - 1 vectors (the most Add
// and MergeWith accept) sum to at most 2^125 in magnitude: no overflow is possible.
//
// Error. Rounding is the only loss: at most 0.5 / scale <= value_bound * 2^-62 per term, and the
// conversion of the final integer to double (relative 2^-53). With value_bound = clip norm *
// max weight that is 2^-62 of the largest possible term: far below float precision (2^-24).
// For a float value and an integer multiplier below 2^29 the term is exact in double, and a
// power-of-two scale keeps t * scale exact: the rounding to an integer is the only one.
//
// Errors (absl/status/status.h): INVALID_ARGUMENT for a bad bound, a dimension mismatch, a value
// that is not finite or exceeds the bound (the caller clips or refuses first: a term over the
// bound would void the no-overflow guarantee); FAILED_PRECONDITION for merging sums of another
// shape or scale. On error the sum is unchanged.
//
// Thread safety: thread-compatible. Give each thread its own ExactSum and MergeWith at the end.
#ifndef FEDKIT_AGGREGATION_EXACT_SUM_H_
#define FEDKIT_AGGREGATION_EXACT_SUM_H_

#include <cstdint>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::aggregation {

// The fixed point of an ExactSum: value_bound and the power-of-two scale chosen for it.
struct FixedPoint {
  double value_bound = 0.0;  // every term satisfies |multiplier * value| <= value_bound
  double scale = 0.0;        // integer steps per unit; a power of two
  bool operator==(const FixedPoint&) const = default;
};

// INVALID_ARGUMENT unless value_bound is finite and positive (and not so small or large that no
// power-of-two scale in double's range fits).
absl::StatusOr<FixedPoint> ChooseFixedPoint(double value_bound);

class ExactSum {
 public:
  ExactSum(int64_t dimension, FixedPoint fixed_point);

  // Adds multiplier * values (one term per coordinate). INVALID_ARGUMENT if values.size() !=
  // dimension(), the multiplier or a value is not finite, or a term exceeds the bound.
  absl::Status Add(absl::Span<const float> values, double multiplier = 1.0);

  // Adds everything `other` holds. FAILED_PRECONDITION if its dimension or fixed point differ.
  absl::Status MergeWith(const ExactSum& other);

  // The exact per-coordinate sums divided by the scale, as doubles (rounded once, here).
  std::vector<double> Sum() const;
  // The raw integers (tests, checkpoints): sum of round(term * scale) per coordinate.
  const std::vector<absl::int128>& fixed_point_sums() const { return sums_; }

  int64_t dimension() const { return static_cast<int64_t>(sums_.size()); }
  // Calls to Add that succeeded, plus those of merged sums.
  int64_t num_vectors() const { return num_vectors_; }
  const FixedPoint& fixed_point() const { return fixed_point_; }

 private:
  FixedPoint fixed_point_;
  std::vector<absl::int128> sums_;
  int64_t num_vectors_ = 0;
  std::vector<int64_t> scratch_;  // one vector's integers, reused by Add
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_EXACT_SUM_H_
