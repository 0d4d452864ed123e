// Randomness for differential-privacy noise, and the central Gaussian mechanism of DP-FedAvg
// (McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018): the
// server adds N(0, (z * S)^2) to each coordinate of the sum of updates clipped to L2 norm S and
// divides by a fixed denominator (the expected number of participants, not the actual count, which
// would itself depend on who took part).
//
// Every sampler here is written on top of RandomSource::NextUint64 with our own arithmetic rather
// than std:: distributions, whose output is implementation-defined: a seeded source gives the same
// words, uniforms and discrete samples on every standard library, so simulator runs are
// reproducible from their seed (Gaussians also go through libm's log: identical for a given libm).
//
// Floating-point caveat (Mironov, "On Significance of the Least Significant Bits for Differential
// Privacy", CCS 2012): noise computed in floating point from a finite uniform (here via log and
// sqrt) does not take every double value, and which values x + noise can take depends on x, so an
// observer of the exact double result can sometimes tell neighbouring inputs apart, breaking the DP
// guarantee the real-valued analysis promises. The Gaussian here is therefore right for simulation
// but not a hardened implementation: there is no snapping mechanism, and rounding the release to
// float32 blurs the effect without provably removing it. The discrete Gaussian of
// privacy/discrete_gaussian.h, sampled exactly with integer arithmetic, does not have this
// problem; use it where the noisy values are exposed exactly. The coordinator's and the
// simulator's central DP release does (privacy/central_discrete_noise.h, on the exact integer sum),
// as does distributed DP under secure aggregation; CentralDpAverage below with noise_stddev 0 is
// their division by the fixed denominator, and adaptive clipping's count noise is discrete too.
#ifndef FEDKIT_PRIVACY_NOISE_H_
#define FEDKIT_PRIVACY_NOISE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::privacy {

// A source of independent, uniformly distributed 64-bit words. Not thread-safe: use one source per
// thread (for the seeded source, derive per-thread seeds with fedkit::DeriveSeed).
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual uint64_t NextUint64() = 0;
};

// Deterministic: the stream is std::mt19937_64 seeded with `seed`, whose output the C++ standard
// fixes bit for bit. For the simulator and tests; never for noise a real deployment releases
// (anyone who learns the seed can subtract the noise).
class SeededRandomSource final : public RandomSource {
 public:
  explicit SeededRandomSource(uint64_t seed) : engine_(seed) {}
  uint64_t NextUint64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// Cryptographically secure: words from OpenSSL's CSPRNG (RAND_bytes), fetched 4 KiB at a time.
// Create() fails with INTERNAL if the generator cannot produce bytes (e.g. not seeded). A later
// refill failure aborts the process: there is no safe way to continue adding privacy noise
// without randomness, and NextUint64 has no error channel. The buffer is per object: do not carry
// an instance across fork(), or parent and child would reuse the same buffered words.
class SecureRandomSource final : public RandomSource {
 public:
  static absl::StatusOr<std::unique_ptr<SecureRandomSource>> Create();
  uint64_t NextUint64() override;

 private:
  SecureRandomSource() = default;
  bool Refill();

  static constexpr size_t kBufferWords = 512;
  std::array<uint64_t, kBufferWords> buffer_;
  size_t next_ = kBufferWords;
};

// A double uniform on [0, 1) with 53 random bits (every multiple of 2^-53 equally likely).
double UniformDouble(RandomSource& random);

// An integer uniform on [0, n), exactly (rejection sampling on masked words, no modulo bias).
// n must be >= 1.
uint64_t UniformBelow(RandomSource& random, uint64_t n);

// One N(0, 1) sample by the Marsaglia polar method over 53-bit uniforms (each call draws a pair
// and discards the second value; FillStandardGaussian uses both).
double StandardGaussian(RandomSource& random);

// Fills `out` with independent N(0, 1) samples.
void FillStandardGaussian(RandomSource& random, absl::Span<double> out);

// values[i] += N(0, stddev^2) independently. stddev must be finite and >= 0 (0 adds nothing and
// draws nothing).
void AddGaussianNoise(absl::Span<double> values, double stddev, RandomSource& random);

// The central DP-FedAvg release: (clipped_sum[i] + N(0, noise_stddev^2)) / fixed_denominator for
// each coordinate, as floats. noise_stddev is z * S (noise multiplier times clip norm; with
// adaptive clipping use the value noise multiplier of privacy/adaptive_clipping.h and the clip norm
// of this round). fixed_denominator is the expected number of participants, fixed before the round
// (dividing by the actual count would make the sensitivity depend on it).
// INVALID_ARGUMENT if noise_stddev is negative or not finite, fixed_denominator is not positive
// and finite, or clipped_sum has a non-finite value.
absl::StatusOr<std::vector<float>> CentralDpAverage(absl::Span<const double> clipped_sum,
                                                    double noise_stddev, double fixed_denominator,
                                                    RandomSource& random);

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_NOISE_H_
