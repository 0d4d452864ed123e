// The pseudo-random generator behind every random choice of compression/: rotation signs,
// stochastic rounding and random-k positions. A device and the coordinator must draw the same
// numbers from the same seed on any platform and library version, so the generator and the ways
// numbers are drawn from it are written out here (std:: and absl distributions are
// implementation-defined): xoshiro256** 1.0 (Blackman and Vigna 2018, "Scrambled linear
// pseudorandom number generators"), its state filled from the seed by SplitMix64 (core/seeds.h's
// Mix64), as its authors recommend. Hand-written: Debian packages no generator whose output is
// specified. Not cryptographic.
//
// Thread safety: a generator is thread-compatible (one thread at a time); it owns its state.
#ifndef FEDKIT_COMPRESSION_RANDOM_H_
#define FEDKIT_COMPRESSION_RANDOM_H_

#include <cstdint>
#include <vector>

namespace fedkit::compression {

class Xoshiro256 {
 public:
  // State word j = Mix64(seed + j * 0x9e3779b97f4a7c15), j = 0..3 (SplitMix64's first four
  // outputs); never all zero.
  explicit Xoshiro256(uint64_t seed);

  // The next 64 bits.
  uint64_t Next();
  // Uniform in [0, 1): the top 53 bits of Next() times 2^-53.
  double UniformUnit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n) for n >= 1 (n == 0 returns 0): Lemire's multiply-and-reject method
  // (2019, "Fast random integer generation in an interval"), exactly uniform.
  uint64_t Below(uint64_t n);

 private:
  uint64_t s_[4];
};

// `k` distinct positions in [0, dimension), sorted, drawn uniformly without replacement from
// `seed` (Floyd's algorithm over Xoshiro256(seed).Below, marking a bitmap of `dimension` bits, then
// read in order: O(dimension / 64 + k) time, dimension / 8 bytes). k is clamped to [0, dimension].
// The positions of kRandK (compression/update_codec.h) and of random-k under secure aggregation
// (compression/secagg_quantization.h): a device and the coordinator given the same seed agree.
std::vector<int64_t> RandomKIndices(uint64_t seed, int64_t dimension, int64_t k);

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_RANDOM_H_
