#include "core/sampling.h"

#include <algorithm>
#include <random>

#include "absl/container/flat_hash_set.h"

namespace fedkit {

std::vector<int64_t> SampleIndices(int64_t population, int64_t k, uint64_t seed) {
  k = std::clamp<int64_t>(k, 0, std::max<int64_t>(population, 0));
  std::vector<int64_t> sample;
  sample.reserve(k);
  // Floyd: for j in [population - k, population), draw t in [0, j]; take t unless already taken, in
  // which case take j (new this step, so never taken before).
  std::mt19937_64 rng(seed);
  absl::flat_hash_set<int64_t> chosen;
  chosen.reserve(k);
  for (int64_t j = population - k; j < population; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    const int64_t pick = chosen.insert(t).second ? t : j;
    if (pick == j) chosen.insert(j);
    sample.push_back(pick);
  }
  std::sort(sample.begin(), sample.end());
  return sample;
}

}  // namespace fedkit
