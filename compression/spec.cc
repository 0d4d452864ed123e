#include "compression/spec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace fedkit::compression {
namespace {

constexpr absl::string_view kAllowed =
    "allowed: none, quantize:BITS, quantize-rotate:BITS (BITS an integer in [1, 16]), "
    "topk:FRACTION, randk:FRACTION (FRACTION in (0, 1], e.g. topk:0.1)";

absl::Status ParseError(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("compression spec \"", text, "\": ", why, "; ", kAllowed));
}

}  // namespace

absl::string_view CompressionMethodName(CompressionMethod method) {
  switch (method) {
    case CompressionMethod::kNone:
      return "none";
    case CompressionMethod::kQuantize:
      return "quantize";
    case CompressionMethod::kQuantizeRotate:
      return "quantize-rotate";
    case CompressionMethod::kTopK:
      return "topk";
    case CompressionMethod::kRandK:
      return "randk";
  }
  return "unknown";
}

bool IsSparsifying(CompressionMethod method) {
  return method == CompressionMethod::kTopK || method == CompressionMethod::kRandK;
}

bool IsQuantizing(CompressionMethod method) {
  return method == CompressionMethod::kQuantize || method == CompressionMethod::kQuantizeRotate;
}

absl::StatusOr<CompressionSpec> ParseCompressionSpec(absl::string_view text) {
  if (text == "none") return CompressionSpec{};
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    return ParseError(text, "expected METHOD:PARAMETER or none");
  }
  const absl::string_view name = text.substr(0, colon);
  const absl::string_view parameter = text.substr(colon + 1);
  CompressionSpec spec;
  if (name == "quantize" || name == "quantize-rotate") {
    spec.method =
        name == "quantize" ? CompressionMethod::kQuantize : CompressionMethod::kQuantizeRotate;
    // SimpleAtoi accepts surrounding whitespace and a sign; the text form has neither.
    int bits = 0;
    if (parameter.empty() ||
        !std::all_of(parameter.begin(), parameter.end(),
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(parameter, &bits)) {
      return ParseError(text, "BITS is not an integer");
    }
    if (bits < kMinBits || bits > kMaxBits) return ParseError(text, "BITS is outside [1, 16]");
    spec.bits = bits;
    return spec;
  }
  if (name == "topk" || name == "randk") {
    spec.method = name == "topk" ? CompressionMethod::kTopK : CompressionMethod::kRandK;
    double fraction = 0.0;
    if (parameter.empty() || parameter.front() == ' ' || parameter.back() == ' ' ||
        !absl::SimpleAtod(parameter, &fraction)) {
      return ParseError(text, "FRACTION is not a number");
    }
    if (!(fraction > 0.0 && fraction <= 1.0)) {
      return ParseError(text, "FRACTION is outside (0, 1]");
    }
    spec.fraction = fraction;
    return spec;
  }
  return ParseError(text, "unknown method");
}

std::string FormatCompressionSpec(const CompressionSpec& spec) {
  switch (spec.method) {
    case CompressionMethod::kNone:
      return "none";
    case CompressionMethod::kQuantize:
    case CompressionMethod::kQuantizeRotate:
      return absl::StrCat(CompressionMethodName(spec.method), ":", spec.bits);
    case CompressionMethod::kTopK:
    case CompressionMethod::kRandK: {
      // std::to_chars without a precision writes the shortest text that reads back exactly.
      char buffer[64];
      const std::to_chars_result result =
          std::to_chars(buffer, buffer + sizeof(buffer), spec.fraction);
      const std::string number =
          result.ec == std::errc() ? std::string(buffer, result.ptr) : std::string("?");
      return absl::StrCat(CompressionMethodName(spec.method), ":", number);
    }
  }
  return "unknown";
}

absl::Status ValidateCompressionSpec(const CompressionSpec& spec) {
  switch (spec.method) {
    case CompressionMethod::kNone:
      break;
    case CompressionMethod::kQuantize:
    case CompressionMethod::kQuantizeRotate:
      if (spec.bits < kMinBits || spec.bits > kMaxBits) {
        return absl::InvalidArgumentError(
            absl::StrCat("CompressionSpec.bits must be in [1, 16] for ",
                         CompressionMethodName(spec.method), ", got ", spec.bits));
      }
      if (spec.fraction != 0.0) {
        return absl::InvalidArgumentError(absl::StrCat("CompressionSpec.fraction must be 0 for ",
                                                       CompressionMethodName(spec.method), ", got ",
                                                       spec.fraction));
      }
      return absl::OkStatus();
    case CompressionMethod::kTopK:
    case CompressionMethod::kRandK:
      if (!(spec.fraction > 0.0 && spec.fraction <= 1.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("CompressionSpec.fraction must be in (0, 1] for ",
                         CompressionMethodName(spec.method), ", got ", spec.fraction));
      }
      if (spec.bits != 0) {
        return absl::InvalidArgumentError(absl::StrCat("CompressionSpec.bits must be 0 for ",
                                                       CompressionMethodName(spec.method), ", got ",
                                                       spec.bits));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat("CompressionSpec.method is not a method (",
                                                     static_cast<int>(spec.method), ")"));
  }
  if (spec.bits != 0 || spec.fraction != 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CompressionSpec.bits and CompressionSpec.fraction must be 0 for none, got ",
                     spec.bits, " and ", spec.fraction));
  }
  return absl::OkStatus();
}

int64_t KeptCoordinates(const CompressionSpec& spec, int64_t dimension) {
  if (dimension < 1) return 0;
  if (!IsSparsifying(spec.method) || !(spec.fraction > 0.0)) return dimension;
  const double wanted = std::round(spec.fraction * static_cast<double>(dimension));
  if (!(wanted < static_cast<double>(dimension))) return dimension;
  return std::max<int64_t>(1, static_cast<int64_t>(wanted));
}

}  // namespace fedkit::compression
