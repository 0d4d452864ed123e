// Compressed model-update uploads: UpdateEncoder on the device turns a float32 delta into bytes
// under a CompressionSpec (compression/spec.h); DecodeUpdate on the coordinator turns the bytes
// back into the float vector they stand for, which it then folds into its exact aggregator
// (aggregation/aggregator.h) like any uncompressed update. No I/O, no transport.
//
// Format 1 (little-endian throughout):
//   offset 0   u8   0xC1: format byte (magic and version in one)
//          1   u8   method: 0 none, 1 quantize, 2 quantize-rotate, 3 topk, 4 randk
//          2   u8   bits (quantize, quantize-rotate), else 0
//          3   u8   0
//          4   u64  dimension
//          12  u64  seed (quantize-rotate: the rotation's; randk: the positions'), only for those
//              u64  k = KeptCoordinates(spec, dimension) (topk, randk), only for those
//   then the payload:
//   none             dimension float32 values.
//   quantize         (compression/quantizer.h) per block of 1024 values a float32 min and max, all
//                    blocks first, then every value's level in [0, 2^bits - 1] packed at `bits`
//                    bits (least significant bit first, the last byte zero-padded). A level is
//                    drawn by unbiased stochastic rounding: floor(t) + Bernoulli(t - floor(t)) for
//                    t = (x - min) / step, step = (max - min) / (2^bits - 1), so the decoded
//                    min + level * step has expectation x (up to float rounding).
//   quantize-rotate  the same of the randomized Hadamard rotation (compression/hadamard.h) of the
//                    vector with the header's seed; the decoder rotates back.
//   topk             the k positions of the largest |values| (ties to the lower position), then
//                    their float32 values in position order. Positions are a bitmap of dimension
//                    bits (bit i of the stream set iff i is kept; LSB first, zero-padded) when that
//                    takes fewer bytes than the sorted positions packed at ceil(log2(dimension))
//                    bits each, and those packed positions otherwise (which one follows from k and
//                    dimension).
//   randk            k float32 values at RandomKIndices(seed, dimension, k) (compression/random.h;
//                    the decoder draws the same positions), not rescaled.
// Sizes are fixed by the spec and dimension (MaxEncodedSize); for 199,210 parameters: none
// 796,852 B; quantize:8 200,782 B and quantize-rotate:8 200,790 B (3.97x fewer than float32's
// 796,840); quantize:4 101,177 B; topk:0.01 12,470 B (1,992 values); topk:0.1 104,606 B;
// randk:0.01 7,996 B.
//
// Randomness: everything random comes from Encode's `seed` through compression/random.h (the same
// numbers on every platform): the rotation signs from `seed`, the random-k positions from `seed`,
// the stochastic rounding from DeriveSeed(seed, {kRoundingStream}) (core/seeds.h). Give each upload
// its own seed, e.g. DeriveSeed(run_seed, {round, client_index}): with one seed for every round,
// randk would keep the same coordinates each time and the rest would wait in the residual forever.
#ifndef FEDKIT_COMPRESSION_UPDATE_CODEC_H_
#define FEDKIT_COMPRESSION_UPDATE_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/spec.h"

namespace fedkit::compression {

// The format byte at offset 0.
inline constexpr uint8_t kUpdateFormatByte = 0xC1;
// The largest dimension the codecs take (2^31 values: 8 GiB as float32).
inline constexpr int64_t kMaxDimension = int64_t{1} << 31;
// The stream of the stochastic rounding: DeriveSeed(seed, {kRoundingStream}).
inline constexpr uint64_t kRoundingStream = 0x726f756e64;  // "round"

// The device side. One per device and compression spec: for topk/randk it keeps the error-feedback
// residual (the part of past updates not yet sent), which it adds to the next delta before
// sparsifying. Thread-compatible: one thread at a time; it owns its residual.
class UpdateEncoder {
 public:
  // INVALID_ARGUMENT for a bad spec (ValidateCompressionSpec) or dimension outside
  // [1, kMaxDimension]. kNone is allowed (then Encode packs raw float32).
  static absl::StatusOr<UpdateEncoder> Create(const CompressionSpec& spec, int64_t dimension);

  // Encodes one upload. `clip_norm` > 0: the vector to send (delta + residual) is first clipped to
  // that L2 norm (so sparsified output never exceeds it; the clipped-away part stays in the
  // residual); 0: no clipping. `seed` drives everything random (rotation signs, random-k indices,
  // stochastic rounding) and goes into the bytes where the decoder needs it. Afterwards, for
  // topk/randk, residual = delta + old residual - DecodeUpdate(result). INVALID_ARGUMENT for a
  // wrong length, a non-finite value, a negative or non-finite clip_norm, a vector that overflows
  // float once the residual is added, or (quantize-rotate) a rotated value beyond 2^100 in
  // magnitude, so that the decoder's rotation back cannot overflow; then the residual is unchanged.
  // Quantized output is unbiased but may exceed clip_norm by the rounding (sparsified output
  // cannot, beyond float rounding).
  absl::StatusOr<std::string> Encode(absl::Span<const float> delta, double clip_norm,
                                     uint64_t seed);

  // The error-feedback residual: `dimension` values for topk/randk (zeros at first), else empty.
  const std::vector<float>& residual() const { return residual_; }
  const CompressionSpec& spec() const { return spec_; }
  int64_t dimension() const { return dimension_; }

 private:
  UpdateEncoder(const CompressionSpec& spec, int64_t dimension);

  CompressionSpec spec_;
  int64_t dimension_;
  std::vector<float> residual_;
};

// The coordinator side: the float vector the bytes stand for. INVALID_ARGUMENT for anything
// malformed (wrong format byte, a header that does not match `spec` or `dimension`, truncated or
// trailing bytes, positions out of range or not strictly increasing, a bitmap with other than k
// bits set, nonzero padding bits, non-finite floats or quantization ranges, a result that is not
// finite), and for a bad spec or dimension outside [1, kMaxDimension]. Never crashes and never
// allocates more than O(dimension) whatever the bytes say: the length is checked against
// MaxEncodedSize before anything else is read. Pure; any thread may call it.
absl::StatusOr<std::vector<float>> DecodeUpdate(const CompressionSpec& spec,
                                                absl::string_view encoded, int64_t dimension);

// The exact encoded size in bytes (for every method in format 1; the contract promises only an
// upper bound for kTopK): the coordinator refuses longer uploads before buffering them. -1 for a
// bad spec or a dimension outside [1, kMaxDimension].
int64_t MaxEncodedSize(const CompressionSpec& spec, int64_t dimension);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_UPDATE_CODEC_H_
