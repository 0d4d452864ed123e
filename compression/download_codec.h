// Compressed model downloads: the global model's parameters as float32, IEEE binary16, or 8-bit
// levels per block, for broadcast to every device of a round. Deterministic (every device gets the
// same model) and headerless: the bytes are the values only, their length fixed by the encoding
// and the count (DownloadBytes), so they can be chunked like float32. No I/O, no transport. Pure
// functions; any thread may call them.
//
//   kFloat32    count float32 values (little-endian). Exact.
//   kFloat16    count IEEE 754 binary16 values (little-endian), rounded to nearest, ties to even,
//               subnormals included. |x' - x| <= max(|x| * 2^-11, 2^-25). Values of magnitude
//               above 65504 (the largest binary16) are refused rather than made infinite.
//               The conversion is hand-written (no Debian package converts float to binary16 for
//               C++ short of a GPU or vision library).
//   kQuantize8  per block of 1024 values a float32 min and max (all blocks first), then one byte
//               per value: the NEAREST of the 256 levels min + j * (max - min) / 255.
//               |x' - x| <= (max - min) / 510 of the value's block, plus float rounding (a few
//               ulps of max(|min|, |max|)).
// For 199,210 parameters: 796,840 B, 398,420 B and 200,770 B.
#ifndef FEDKIT_COMPRESSION_DOWNLOAD_CODEC_H_
#define FEDKIT_COMPRESSION_DOWNLOAD_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedkit::compression {

enum class DownloadEncoding { kFloat32, kFloat16, kQuantize8 };

// "float32" | "float16" | "quantize:8". INVALID_ARGUMENT quoting the text and listing those.
absl::StatusOr<DownloadEncoding> ParseDownloadEncoding(absl::string_view text);
// The text ParseDownloadEncoding reads back.
std::string FormatDownloadEncoding(DownloadEncoding encoding);

// The encoded size of `count` values (-1 for count < 0 or an unknown encoding).
int64_t DownloadBytes(DownloadEncoding encoding, int64_t count);

// Model parameters for broadcast. INVALID_ARGUMENT for a non-finite value, for kFloat16 a value
// whose magnitude exceeds 65504, or more than kMaxDimension (compression/update_codec.h) values.
absl::StatusOr<std::string> EncodeDownload(DownloadEncoding encoding,
                                           absl::Span<const float> values);

// The `count` values the bytes stand for. INVALID_ARGUMENT for a count outside [0, kMaxDimension],
// a length other than DownloadBytes(encoding, count) (checked before anything is allocated),
// non-finite values (float32 NaN or infinity, binary16 infinity or NaN patterns, a quantization
// block's min or max), or a block with min > max.
absl::StatusOr<std::vector<float>> DecodeDownload(DownloadEncoding encoding,
                                                  absl::string_view bytes, int64_t count);

// The binary16 conversions behind kFloat16 (exposed for tests). FloatToHalf: round to nearest
// even; the caller ensures |value| <= 65504 or accepts infinity (0x7c00 with the sign) beyond.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_DOWNLOAD_CODEC_H_
