#include "aggregation/exact_sum_kernels.h"

#include <cstring>

namespace fedkit::aggregation::internal {
namespace {

// Adding 1.5 * 2^52 to a double of magnitude below 2^51 leaves its value rounded to the nearest
// integer (ties to even, the default rounding mode) in the low bits of the sum's representation:
// the classic conversion without a double-to-int64 instruction, which SSE2 and AVX2 lack and which
// therefore keeps compilers from vectorizing a plain cast.
constexpr double kMagic = 0x1.8p52;

inline int64_t Bits(double d) {
  int64_t bits;
  std::memcpy(&bits, &d, sizeof(bits));
  return bits;
}

// t = v * multiplier * scale (|t| <= 2^94). h = nearest(t / 2^47) and l = t - h * 2^47 are exact
// (|h| <= 2^47, |l| <= 2^46). Then q = nearest-even(l), and a tie (l - q = +/-0.5) goes away from
// zero by the sign of t (which is the sign of h, or of l when h = 0): h * 2^47 + q = round(t).
// Inlined into each variant below, which the compiler then vectorizes for its instruction set.
#define FEDKIT_ALWAYS_INLINE inline __attribute__((always_inline))

FEDKIT_ALWAYS_INLINE void AddLoop(absl::Span<const float> values, double multiplier, double scale,
                                  int64_t* __restrict high, int64_t* __restrict low) {
  const int64_t magic_bits = Bits(kMagic);
  const float* __restrict v = values.data();
  for (size_t i = 0; i < values.size(); ++i) {
    const double t = static_cast<double>(v[i]) * multiplier * scale;
    const double h_magic = t * 0x1p-47 + kMagic;
    const double l = t - (h_magic - kMagic) * 0x1p47;
    const double q_magic = l + kMagic;
    const double fraction = l - (q_magic - kMagic);
    const int64_t q = (Bits(q_magic) - magic_bits) +
                      static_cast<int64_t>((fraction == 0.5) & (t > 0)) -
                      static_cast<int64_t>((fraction == -0.5) & (t < 0));
    high[i] += Bits(h_magic) - magic_bits;
    low[i] += q;
  }
}

FEDKIT_ALWAYS_INLINE bool OutsideLoop(absl::Span<const float> values, double magnitude,
                                      double limit) {
  int64_t outside = 0;  // an integer OR, which vectorizes (a bool does not)
  const float* __restrict v = values.data();
  for (size_t i = 0; i < values.size(); ++i) {
    outside |=
        static_cast<int64_t>(!(__builtin_fabs(static_cast<double>(v[i])) * magnitude <= limit));
  }
  return outside != 0;
}

void AddPortable(absl::Span<const float> values, double multiplier, double scale,
                 int64_t* __restrict high, int64_t* __restrict low) {
  AddLoop(values, multiplier, scale, high, low);
}
bool OutsidePortable(absl::Span<const float> values, double magnitude, double limit) {
  return OutsideLoop(values, magnitude, limit);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FEDKIT_HAVE_AVX2_VARIANT 1
__attribute__((target("avx2"))) void AddAvx2(absl::Span<const float> values, double multiplier,
                                             double scale, int64_t* __restrict high,
                                             int64_t* __restrict low) {
  AddLoop(values, multiplier, scale, high, low);
}
__attribute__((target("avx2"))) bool OutsideAvx2(absl::Span<const float> values, double magnitude,
                                                 double limit) {
  return OutsideLoop(values, magnitude, limit);
}
bool HaveAvx2() {
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return have;
}
#else
bool HaveAvx2() { return false; }
#endif

}  // namespace

bool UsesWiderVectors() { return HaveAvx2(); }

bool AnyTermOutside(absl::Span<const float> values, double magnitude, double limit) {
#ifdef FEDKIT_HAVE_AVX2_VARIANT
  if (HaveAvx2()) return OutsideAvx2(values, magnitude, limit);
#endif
  return OutsidePortable(values, magnitude, limit);
}

void AddRoundedTerms(absl::Span<const float> values, double multiplier, double scale, int64_t* high,
                     int64_t* low) {
#ifdef FEDKIT_HAVE_AVX2_VARIANT
  if (HaveAvx2()) return AddAvx2(values, multiplier, scale, high, low);
#endif
  AddPortable(values, multiplier, scale, high, low);
}

void AddRoundedTermsPortable(absl::Span<const float> values, double multiplier, double scale,
                             int64_t* high, int64_t* low) {
  AddPortable(values, multiplier, scale, high, low);
}

}  // namespace fedkit::aggregation::internal
