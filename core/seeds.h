// Deriving independent, reproducible seeds from a run's seed and coordinates (round, client, ...).
#ifndef FEDKIT_CORE_SEEDS_H_
#define FEDKIT_CORE_SEEDS_H_

#include <cstdint>
#include <initializer_list>

namespace fedkit {

// SplitMix64's finaliser (Steele et al. 2014): a bijection on 64 bits with full avalanche.
constexpr uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A seed for the stream identified by `coordinates` under `seed`, e.g. DeriveSeed(seed, {round,
// client}). Different coordinates give unrelated streams, so results never depend on which thread
// ran what.
constexpr uint64_t DeriveSeed(uint64_t seed, std::initializer_list<uint64_t> coordinates) {
  uint64_t h = Mix64(seed);
  for (uint64_t c : coordinates) h = Mix64(h ^ Mix64(c + 0x632be59bd9b4e019ULL));
  return h;
}

}  // namespace fedkit

#endif  // FEDKIT_CORE_SEEDS_H_
