// The randomized Hadamard rotation of compression/'s kQuantizeRotate and of quantization under
// secure aggregation: x -> H D x per block, where D flips the sign of each coordinate by a bit
// drawn from the seed (compression/random.h) and H is the Walsh-Hadamard matrix of the block's
// size scaled by 1/sqrt(size), so the rotation is orthonormal (it preserves the L2 norm) and
// InverseRotateInPlace (D H, since H is symmetric and its own inverse) undoes it. A rotated
// coordinate is then a sum of many +/- coordinates, about norm / sqrt(size) in magnitude whatever
// the input's shape, so a quantizer's range shrinks (Suresh et al. 2017).
//
// Blocks instead of padding: a vector of n values is split, from its start, into full blocks of
// kMaxRotationBlock values and then the remainder's binary digits, largest first (n = 199,210 =
// 3 * 65536 + 2^11 + 2^9 + 2^5 + 2^3 + 2^1), each rotated on its own: the output
// has the input's length, where padding to 2^18 would have grown it by 32%. The last blocks are
// small (a block of 1 is only a sign flip), so most of the spreading happens in the large ones.
//
// The transform is the fast Walsh-Hadamard transform (n log n additions), hand-written (no Debian
// package provides one), computed in double per block so that a round trip loses only the final
// rounding to float. All functions are pure apart from the span they rewrite; any thread may call
// them on spans no other thread touches meanwhile.
#ifndef FEDKIT_COMPRESSION_HADAMARD_H_
#define FEDKIT_COMPRESSION_HADAMARD_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace fedkit::compression {

// The largest rotation block: 2^16 values.
inline constexpr int64_t kMaxRotationBlock = int64_t{1} << 16;

// The block sizes a vector of `dimension` values is rotated in, in order (each a power of two,
// summing to dimension; empty for dimension < 1).
std::vector<int64_t> RotationBlockSizes(int64_t dimension);

// Rotates `values` in place with the signs drawn from `seed`. A value that grows beyond float's
// range becomes infinite (only inputs near FLT_MAX can); the caller checks if it matters.
void RotateInPlace(absl::Span<float> values, uint64_t seed);
// Undoes RotateInPlace with the same seed and length (up to float rounding: about 1e-7 of the
// vector's norm per coordinate).
void InverseRotateInPlace(absl::Span<float> values, uint64_t seed);

// The same in double (the coordinator's decoded sums).
void RotateInPlace(absl::Span<double> values, uint64_t seed);
void InverseRotateInPlace(absl::Span<double> values, uint64_t seed);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_HADAMARD_H_
