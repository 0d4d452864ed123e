#include "compression/download_codec.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compression/quantizer.h"
#include "compression/update_codec.h"
#include "compression/wire.h"

namespace fedkit::compression {
namespace {

constexpr float kMaxHalf = 65504.0f;

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

uint16_t FloatToHalf(float value) {
  const uint32_t bits = FloatBits(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (magnitude >= 0x38800000) {  // |value| >= 2^-14: a normal binary16, or too large
    // Drop 13 of the 23 mantissa bits, rounding to nearest even: add half an ulp minus one, plus
    // the kept lowest bit; a carry moves into the exponent, as it should.
    const uint32_t rounded = (magnitude + 0xfff + ((magnitude >> 13) & 1)) >> 13;
    // Rebias the exponent from 127 to 15.
    const uint32_t half = rounded - ((127 - 15) << 10);
    if (half >= 0x7c00) return static_cast<uint16_t>(sign | 0x7c00);  // overflow: infinity
    return static_cast<uint16_t>(sign | half);
  }
  // Subnormal binary16 (or zero): the value in units of 2^-24, rounded to nearest even; 1024 units
  // is the smallest normal, whose bits are 0x0400 as well. Exact in double.
  const double units = std::fabs(static_cast<double>(value)) * 0x1.0p24;
  double whole = std::floor(units);
  const double fraction = units - whole;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(whole, 2.0) != 0.0)) whole += 1.0;
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(whole));
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = uint32_t{half & 0x8000u} << 16;
  const uint32_t exponent = (half >> 10) & 0x1f;
  const uint32_t mantissa = half & 0x3ff;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(std::ldexp(static_cast<double>(mantissa), -24));
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return BitsFloat(sign | 0x7f800000 | (mantissa << 13));
  return BitsFloat(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

absl::StatusOr<DownloadEncoding> ParseDownloadEncoding(absl::string_view text) {
  if (text == "float32") return DownloadEncoding::kFloat32;
  if (text == "float16") return DownloadEncoding::kFloat16;
  if (text == "quantize:8") return DownloadEncoding::kQuantize8;
  return absl::InvalidArgumentError(
      absl::StrCat("download encoding \"", text, "\" is not one of: float32, float16, quantize:8"));
}

std::string FormatDownloadEncoding(DownloadEncoding encoding) {
  switch (encoding) {
    case DownloadEncoding::kFloat32:
      return "float32";
    case DownloadEncoding::kFloat16:
      return "float16";
    case DownloadEncoding::kQuantize8:
      return "quantize:8";
  }
  return "unknown";
}

int64_t DownloadBytes(DownloadEncoding encoding, int64_t count) {
  if (count < 0) return -1;
  switch (encoding) {
    case DownloadEncoding::kFloat32:
      return 4 * count;
    case DownloadEncoding::kFloat16:
      return 2 * count;
    case DownloadEncoding::kQuantize8:
      return internal::QuantizedBytes(count, 8);
  }
  return -1;
}

absl::StatusOr<std::string> EncodeDownload(DownloadEncoding encoding,
                                           absl::Span<const float> values) {
  const int64_t count = static_cast<int64_t>(values.size());
  if (count > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat(count, " values, more than the ", kMaxDimension, " the codec takes"));
  }
  const int64_t size = DownloadBytes(encoding, count);
  if (size < 0) return absl::InvalidArgumentError("unknown download encoding");
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " is not finite (", values[i], ")"));
    }
    if (encoding == DownloadEncoding::kFloat16 && std::fabs(values[i]) > kMaxHalf) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " = ", values[i],
                       " exceeds float16's largest magnitude 65504; use float32 or quantize:8"));
    }
  }
  std::string out;
  out.reserve(static_cast<size_t>(size));
  switch (encoding) {
    case DownloadEncoding::kFloat32:
      internal::PutF32s(&out, values.data(), values.size());
      break;
    case DownloadEncoding::kFloat16:
      for (float v : values) {
        const uint16_t h = FloatToHalf(v);
        out.push_back(static_cast<char>(h & 0xff));
        out.push_back(static_cast<char>(h >> 8));
      }
      break;
    case DownloadEncoding::kQuantize8:
      internal::AppendQuantized(values, 8, /*rng=*/nullptr, &out);
      break;
  }
  return out;
}

absl::StatusOr<std::vector<float>> DecodeDownload(DownloadEncoding encoding,
                                                  absl::string_view bytes, int64_t count) {
  if (count < 0 || count > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("count must be in [0, ", kMaxDimension, "], got ", count));
  }
  const int64_t expected = DownloadBytes(encoding, count);
  if (expected < 0) return absl::InvalidArgumentError("unknown download encoding");
  if (static_cast<int64_t>(bytes.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("malformed ", FormatDownloadEncoding(encoding),
                                                   " download: ", bytes.size(), " bytes, expected ",
                                                   expected, " for ", count, " values"));
  }
  std::vector<float> out(static_cast<size_t>(count));
  internal::ByteReader in(bytes);
  switch (encoding) {
    case DownloadEncoding::kFloat32:
      in.F32s(out.data(), out.size());
      break;
    case DownloadEncoding::kFloat16:
      for (float& v : out) {
        uint8_t low = 0, high = 0;
        in.U8(&low);
        in.U8(&high);
        v = HalfToFloat(static_cast<uint16_t>(low | (high << 8)));
      }
      break;
    case DownloadEncoding::kQuantize8: {
      absl::Status status = internal::ReadQuantized(bytes, 8, absl::MakeSpan(out));
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed quantize:8 download: ", status.message()));
      }
      break;
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      return absl::InvalidArgumentError(absl::StrCat("malformed ", FormatDownloadEncoding(encoding),
                                                     " download: value ", i, " is not finite"));
    }
  }
  return out;
}

}  // namespace fedkit::compression
