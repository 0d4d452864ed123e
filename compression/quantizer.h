// Block-wise uniform quantization shared by the update and download codecs (internal to
// compression/). A span of values is cut into blocks of kQuantizationBlock (the last may be
// shorter); each block is described by its float32 min and max, and each value by its level
// j in [0, 2^bits - 1], standing for min + j * (max - min) / (2^bits - 1). Bytes: every block's
// (min, max) pair in order, then the levels bit-packed at `bits` bits each (compression/wire.h's
// BitWriter: least significant bit first, the last byte padded with zeros).
// Pure functions; any thread may call them.
#ifndef FEDKIT_COMPRESSION_QUANTIZER_H_
#define FEDKIT_COMPRESSION_QUANTIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/random.h"

namespace fedkit::compression::internal {

inline constexpr int64_t kQuantizationBlock = 1024;

// The bytes AppendQuantized writes for `count` values at `bits` (1..16) bits.
int64_t QuantizedBytes(int64_t count, int bits);

// Appends the quantized `values` (finite, checked by the caller) to *out. With `rng`, each value is
// rounded stochastically and without bias (floor of its level plus a Bernoulli of the fraction,
// one rng.UniformUnit() per value, in order); without, to the nearest level.
void AppendQuantized(absl::Span<const float> values, int bits, Xoshiro256* rng, std::string* out);

// Decodes exactly QuantizedBytes(out.size(), bits) bytes into `out`. INVALID_ARGUMENT for another
// length, a non-finite min or max, min > max, or nonzero padding bits.
absl::Status ReadQuantized(absl::string_view bytes, int bits, absl::Span<float> out);

}  // namespace fedkit::compression::internal

#endif  // FEDKIT_COMPRESSION_QUANTIZER_H_
