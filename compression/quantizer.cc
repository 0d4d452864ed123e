#include "compression/quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "compression/wire.h"

namespace fedkit::compression::internal {
namespace {

int64_t NumBlocks(int64_t count) { return (count + kQuantizationBlock - 1) / kQuantizationBlock; }

double MaxLevel(int bits) { return static_cast<double>((uint32_t{1} << bits) - 1); }

}  // namespace

int64_t QuantizedBytes(int64_t count, int bits) {
  return 8 * NumBlocks(count) + PackedBytes(count, bits);
}

void AppendQuantized(absl::Span<const float> values, int bits, Xoshiro256* rng, std::string* out) {
  const int64_t count = static_cast<int64_t>(values.size());
  const double max_level = MaxLevel(bits);
  out->reserve(out->size() + static_cast<size_t>(QuantizedBytes(count, bits)));
  for (int64_t start = 0; start < count; start += kQuantizationBlock) {
    const auto block = values.subspan(start, kQuantizationBlock);
    const auto [lo, hi] = std::minmax_element(block.begin(), block.end());
    PutF32(out, *lo);
    PutF32(out, *hi);
  }
  BitWriter writer(out, bits);
  for (int64_t start = 0; start < count; start += kQuantizationBlock) {
    const auto block = values.subspan(start, kQuantizationBlock);
    const auto [lo_it, hi_it] = std::minmax_element(block.begin(), block.end());
    const double lo = *lo_it;
    const double range = static_cast<double>(*hi_it) - lo;
    const double levels_per_unit = range > 0.0 ? max_level / range : 0.0;
    for (float value : block) {
      double level = 0.0;
      if (range > 0.0) {
        const double t =
            std::clamp((static_cast<double>(value) - lo) * levels_per_unit, 0.0, max_level);
        if (rng == nullptr) {
          level = std::floor(t + 0.5);
        } else {
          // One draw per value, added without a branch (the comparison is a coin flip the branch
          // predictor cannot learn).
          level = std::floor(t);
          level += static_cast<double>(rng->UniformUnit() < t - level);
        }
        level = std::min(level, max_level);
      }
      writer.Put(static_cast<uint32_t>(level));
    }
  }
  writer.Finish();
}

absl::Status ReadQuantized(absl::string_view bytes, int bits, absl::Span<float> out) {
  const int64_t count = static_cast<int64_t>(out.size());
  if (static_cast<int64_t>(bytes.size()) != QuantizedBytes(count, bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantized values: ", bytes.size(), " bytes, expected ", QuantizedBytes(count, bits)));
  }
  ByteReader ranges(bytes.substr(0, static_cast<size_t>(8 * NumBlocks(count))));
  BitReader levels(bytes.substr(static_cast<size_t>(8 * NumBlocks(count))), bits);
  const double max_level = MaxLevel(bits);
  for (int64_t start = 0, b = 0; start < count; start += kQuantizationBlock, ++b) {
    float lo = 0.0f, hi = 0.0f;
    ranges.F32(&lo);
    ranges.F32(&hi);
    if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) {
      return absl::InvalidArgumentError(absl::StrCat("quantization block ", b, " has range [", lo,
                                                     ", ", hi, "]: not finite or min > max"));
    }
    const double step = (static_cast<double>(hi) - lo) / max_level;
    const int64_t end = std::min(count, start + kQuantizationBlock);
    for (int64_t i = start; i < end; ++i) {
      // Within [lo, hi] up to double rounding, so finite as a float.
      out[i] = static_cast<float>(lo + static_cast<double>(levels.Get()) * step);
    }
  }
  if (!levels.PaddingIsZero()) {
    return absl::InvalidArgumentError(
        "quantized values: nonzero padding bits after the last value");
  }
  return absl::OkStatus();
}

}  // namespace fedkit::compression::internal
