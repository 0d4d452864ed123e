// The seeds of update compression, derived from a run's seed like every other seed of a run
// (core/seeds.h), so that a simulated client and a real device compress identically.
#ifndef FEDKIT_COMPRESSION_SEEDS_H_
#define FEDKIT_COMPRESSION_SEEDS_H_

#include <cstdint>

#include "core/seeds.h"

namespace fedkit::compression {

// A client's update compression in a round (rotation signs, random-k positions, stochastic
// rounding: UpdateEncoder::Encode's seed): a function of the run's seed, the round and the
// client's index only.
inline uint64_t UpdateCompressionSeed(uint64_t run_seed, int64_t round, int64_t client_index) {
  constexpr uint64_t kUpdateCompressionStream = 4;
  return DeriveSeed(run_seed, {kUpdateCompressionStream, static_cast<uint64_t>(round),
                               static_cast<uint64_t>(client_index)});
}

// Under secure aggregation the clients of a round share their compression's randomness (the
// rotation of quantize-rotate, the coordinates random-k keeps): the round's seed, from the run's
// seed and the round only. It is public (devices know the run's seed) and decides nothing a device
// could exploit.
inline uint64_t SharedCompressionSeed(uint64_t run_seed, int64_t round) {
  constexpr uint64_t kSharedCompressionStream = 5;
  return DeriveSeed(run_seed, {kSharedCompressionStream, static_cast<uint64_t>(round)});
}

}  // namespace fedkit::compression

#endif  // FEDKIT_COMPRESSION_SEEDS_H_
