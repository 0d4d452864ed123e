// Exact, order-independent summation of float vectors: each term is rounded once to a fixed-point
// integer and the integers are summed exactly, so the sum is the same bit for bit whatever order
// the terms arrive in and however they are split across threads, processes or machines and merged
// (integer addition is associative; floating-point addition is not). The first piece of the round
// engine's streaming aggregation (issue 10): a coordinator can fold each update in as it arrives
// instead of keeping every delta of the round to sum them in a fixed order.
//
// Representation. A term t = multiplier * values[i] (e.g. a client's weight times its delta) with
// |t| <= value_bound becomes q = round_to_nearest(t * scale), a signed 128-bit integer, and so are
// the per-coordinate sums. The scale is the largest power of two with value_bound * scale <=
// 2^94, so |q| <= 2^94, and 2^32 vectors (the most Add and MergeWith accept: kMaxVectors) sum to
// at most 2^126 in magnitude: no overflow is possible.
//
// Error. Rounding is the only loss: at most 0.5 / scale <= value_bound * 2^-94 per term (absolute),
// and the conversion of the final integer to double (relative 2^-53). For value_bound = 2^40 (a
// value bound of about 10^6 times a weight cap of 2^20) that is 2^-55 ~ 3e-17 per term: far below
// the float precision of any parameter. For a float value and an integer multiplier below 2^29 the
// term is exact in double, and a power-of-two scale keeps t * scale exact: the rounding to an
// integer is the only one (and none at all once |t * scale| >= 2^53).
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
#include <string>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
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

  static constexpr int64_t kMaxVectors = int64_t{1} << 32;

  // Adds multiplier * values (one term per coordinate). INVALID_ARGUMENT if values.size() !=
  // dimension(), the multiplier or a value is not finite, or a term exceeds the bound;
  // FAILED_PRECONDITION if the sum already holds kMaxVectors vectors.
  absl::Status Add(absl::Span<const float> values, double multiplier = 1.0);

  // Adds everything `other` holds. FAILED_PRECONDITION if its dimension or fixed point differ, or
  // the two hold more than kMaxVectors vectors together.
  absl::Status MergeWith(const ExactSum& other);

  // The whole state as bytes, for partial sums built in another process (MPI ranks): dimension,
  // fixed point, vector count and the integers, in this machine's byte order (processes of one
  // architecture).
  std::string Serialize() const;
  // The inverse. INVALID_ARGUMENT for bytes of the wrong length or with a sum larger than its
  // vector count allows (so a merged sum keeps the no-overflow guarantee).
  static absl::StatusOr<ExactSum> Deserialize(absl::string_view bytes);

  // The exact per-coordinate sums divided by the scale, as doubles (rounded once, here).
  std::vector<double> Sum() const;
  // The raw integers (tests, checkpoints): sum of round(term * scale) per coordinate.
  std::vector<absl::int128> fixed_point_sums() const;

  int64_t dimension() const { return static_cast<int64_t>(high_.size()); }
  // Calls to Add that succeeded, plus those of merged sums.
  int64_t num_vectors() const { return num_vectors_; }
  const FixedPoint& fixed_point() const { return fixed_point_; }

 private:
  // Moves the 64-bit parts into carried_ (allocated at the first carry) and zeroes them.
  void Carry();

  FixedPoint fixed_point_;
  // The sums of the vectors added since the last carry (at most internal::kTermsPerPart), in two
  // 64-bit parts: high * 2^47 + low. Two int64 additions per term, which vectorize, instead of one
  // 128-bit addition with carry, which does not (aggregation/exact_sum_kernels.h).
  std::vector<int64_t> high_;
  std::vector<int64_t> low_;
  int64_t batch_vectors_ = 0;
  std::vector<absl::int128> carried_;  // the earlier vectors' sums; empty until the first carry
  int64_t num_vectors_ = 0;
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_EXACT_SUM_H_
