// The inner loops of ExactSum::Add (aggregation/exact_sum.h), kept in their own file because it is
// compiled for vectorization (-O3 -fno-trapping-math; see CMakeLists.txt) and, on x86-64, also for
// AVX2, chosen at run time. Every variant computes bit for bit the same integers; the tests
// compare them. Internal to fedkit::aggregation.
//
// A term t = value * multiplier * scale (|t| <= 2^94, the caller checked) is rounded to the
// nearest integer, halves away from zero (std::llround's rule), and added as two 64-bit parts:
// round(t) = high * 2^47 + low with |high| <= 2^47 and |low| <= 2^46 + 1, so that 2^15 terms fit
// in each part (kTermsPerPart) before the caller must carry them into wider integers.
//
// Thread safety: pure functions; the arrays must not overlap `values` or each other.
#ifndef FEDKIT_AGGREGATION_EXACT_SUM_KERNELS_H_
#define FEDKIT_AGGREGATION_EXACT_SUM_KERNELS_H_

#include <cstdint>

#include "absl/types/span.h"

namespace fedkit::aggregation::internal {

inline constexpr int kLowBits = 47;                         // high counts units of 2^47
inline constexpr int64_t kTermsPerPart = int64_t{1} << 15;  // |part| <= 2^62 after this many

// True if some !(|values[i]| * magnitude <= limit): a term beyond the bound, or not finite.
bool AnyTermOutside(absl::Span<const float> values, double magnitude, double limit);

// high[i] += high part, low[i] += low part of round(values[i] * multiplier * scale).
void AddRoundedTerms(absl::Span<const float> values, double multiplier, double scale, int64_t* high,
                     int64_t* low);

// The same, without the run-time choice of instruction set: the portable build of the loop, and
// whether AddRoundedTerms uses another one (tests compare the two).
void AddRoundedTermsPortable(absl::Span<const float> values, double multiplier, double scale,
                             int64_t* high, int64_t* low);
bool UsesWiderVectors();

}  // namespace fedkit::aggregation::internal

#endif  // FEDKIT_AGGREGATION_EXACT_SUM_KERNELS_H_
