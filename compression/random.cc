#include "compression/random.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/seeds.h"

namespace fedkit::compression {
namespace {

constexpr uint64_t RotateLeft(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Xoshiro256::Xoshiro256(uint64_t seed) {
  // Mix64 adds the golden-ratio increment before mixing, so Mix64(seed + j * increment) is
  // SplitMix64's output j + 1 from state `seed`. Mix64 is a bijection: the four words are distinct,
  // so at most one is zero.
  for (int j = 0; j < 4; ++j)
    s_[j] = Mix64(seed + static_cast<uint64_t>(j) * 0x9e3779b97f4a7c15ULL);
}

uint64_t Xoshiro256::Next() {
  const uint64_t result = RotateLeft(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = RotateLeft(s_[3], 45);
  return result;
}

uint64_t Xoshiro256::Below(uint64_t n) {
  if (n == 0) return 0;
  unsigned __int128 m = static_cast<unsigned __int128>(Next()) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    while (low < threshold) {
      m = static_cast<unsigned __int128>(Next()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

std::vector<int64_t> RandomKIndices(uint64_t seed, int64_t dimension, int64_t k) {
  std::vector<int64_t> indices;
  if (dimension < 1) return indices;
  k = std::clamp<int64_t>(k, 0, dimension);
  // Floyd (Bentley and Floyd 1987): for j = dimension - k .. dimension - 1, draw t in [0, j]; take
  // t unless already taken, then take j. Every k-subset is equally likely.
  std::vector<uint64_t> taken(static_cast<size_t>((dimension + 63) / 64), 0);
  auto is_taken = [&](int64_t i) { return ((taken[i / 64] >> (i % 64)) & 1) != 0; };
  auto take = [&](int64_t i) { taken[i / 64] |= uint64_t{1} << (i % 64); };
  Xoshiro256 rng(seed);
  for (int64_t j = dimension - k; j < dimension; ++j) {
    const int64_t t = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(j) + 1));
    take(is_taken(t) ? j : t);
  }
  indices.reserve(static_cast<size_t>(k));
  for (size_t w = 0; w < taken.size(); ++w) {
    for (uint64_t bits = taken[w]; bits != 0; bits &= bits - 1) {
      indices.push_back(static_cast<int64_t>(w) * 64 + __builtin_ctzll(bits));
    }
  }
  return indices;
}

}  // namespace fedkit::compression
