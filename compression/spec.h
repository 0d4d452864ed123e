// What an update upload is compressed with: the method and its one parameter, as a value type with
// a text form for flags and config files ("none", "quantize:8", "quantize-rotate:4", "topk:0.1",
// "randk:0.01"). Pure functions, no state: any thread may call them.
//
//   kNone            float32 values, 4 bytes per parameter.
//   kQuantize        per block of values a min and a max and each value stochastically rounded to
//                    one of 2^bits levels between them (unbiased).
//   kQuantizeRotate  the same after a randomized Hadamard rotation (compression/hadamard.h), which
//                    spreads the vector's energy so that a block's range is small (Suresh et al.
//                    2017, "Distributed Mean Estimation with Limited Communication").
//   kTopK            the KeptCoordinates largest |values| and their positions, with error feedback
//                    on the device (compression/update_codec.h).
//   kRandK           KeptCoordinates positions drawn from a seed (not sent), with error feedback.
#ifndef FEDKIT_COMPRESSION_SPEC_H_
#define FEDKIT_COMPRESSION_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::compression {

enum class CompressionMethod { kNone, kQuantize, kQuantizeRotate, kTopK, kRandK };

// The method's name in the text form: "none", "quantize", "quantize-rotate", "topk", "randk".
absl::string_view CompressionMethodName(CompressionMethod method);

// Bounds of the parameters.
inline constexpr int kMinBits = 1;
inline constexpr int kMaxBits = 16;

struct CompressionSpec {
  CompressionMethod method = CompressionMethod::kNone;
  int bits = 0;           // kQuantize, kQuantizeRotate: 1..16; 0 for the other methods
  double fraction = 0.0;  // kTopK, kRandK: (0, 1]; 0 for the other methods
  bool operator==(const CompressionSpec&) const = default;
};

// "none" | "quantize:BITS" | "quantize-rotate:BITS" | "topk:FRACTION" | "randk:FRACTION" (e.g.
// topk:0.1, randk:0.01; BITS an integer in [1, 16], FRACTION a decimal in (0, 1]). The result is
// valid (ValidateCompressionSpec). INVALID_ARGUMENT with a message quoting the text and saying what
// is allowed.
absl::StatusOr<CompressionSpec> ParseCompressionSpec(absl::string_view text);

// The text form of a spec: ParseCompressionSpec(FormatCompressionSpec(s)) == s for every valid s
// (the fraction is written in the shortest form that reads back to the same double). A spec that
// is not valid is formatted all the same, e.g. "quantize:99", and then does not parse.
std::string FormatCompressionSpec(const CompressionSpec& spec);

// OK for a usable spec: bits in [1, 16] for the quantizers, fraction in (0, 1] for the sparsifiers,
// and the field the method does not use left at 0 (so that equal behaviour means equal specs).
// INVALID_ARGUMENT naming the field otherwise.
absl::Status ValidateCompressionSpec(const CompressionSpec& spec);

// Number of coordinates a sparsifying spec (kTopK, kRandK) keeps of `dimension`:
// max(1, round(fraction * dimension)), at most `dimension`. For the other methods, and for
// dimension < 1, it is max(dimension, 0).
int64_t KeptCoordinates(const CompressionSpec& spec, int64_t dimension);

// Whether the method keeps a subset of the coordinates (kTopK, kRandK).
bool IsSparsifying(CompressionMethod method);
// Whether the method quantizes (kQuantize, kQuantizeRotate).
bool IsQuantizing(CompressionMethod method);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_SPEC_H_
