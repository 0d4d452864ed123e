// Plain decimal numbers in command-line specs ("trimmed-mean:0.1", "scale:-4", "noise:1e-3"):
// parsing that takes only what a person types as a number, and the shortest text that reads back
// as the same double. Header-only, absl only; pure functions, any thread.
#ifndef FEDKIT_CORE_DECIMAL_H_
#define FEDKIT_CORE_DECIMAL_H_

#include <cmath>
#include <cstddef>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace fedkit {

// True for [sign] digits [. digits] [(e|E) [+|-] digits], with at least one digit before the
// exponent (".5" and "5." count), the sign only if `allow_sign`: no "inf", "nan", hex, spaces or
// empty text, which absl::SimpleAtod would take.
inline bool IsPlainDecimal(absl::string_view s, bool allow_sign) {
  size_t i = 0;
  if (allow_sign && i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t digits = 0;
  auto is_digit = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  while (is_digit(i)) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (is_digit(i)) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!is_digit(i)) return false;
    while (is_digit(i)) ++i;
  }
  return i == s.size();
}

// A plain decimal (IsPlainDecimal) whose value is finite ("1e999" is refused). False leaves
// *value unspecified.
inline bool ParsePlainDecimal(absl::string_view s, bool allow_sign, double* value) {
  return IsPlainDecimal(s, allow_sign) && absl::SimpleAtod(s, value) && std::isfinite(*value);
}

// The shortest text that ParsePlainDecimal reads back as `value` (finite): an integer as one
// ("10", not "1e+01"), else the shortest %g ("0.1", "1.5e-07").
inline std::string ShortestDecimal(double value) {
  if (std::trunc(value) == value && std::abs(value) < 1e15) return absl::StrFormat("%.0f", value);
  for (int precision = 1; precision < 17; ++precision) {
    std::string text = absl::StrFormat("%.*g", precision, value);
    double back = 0;
    if (absl::SimpleAtod(text, &back) && back == value) return text;
  }
  return absl::StrFormat("%.17g", value);
}

}  // namespace fedkit

#endif  // FEDKIT_CORE_DECIMAL_H_
