#include "server/client_sampler.h"

#include <algorithm>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace fedkit::server {

absl::StatusOr<std::vector<int64_t>> SampleClients(int64_t population, int64_t k, uint64_t seed) {
  if (k < 1 || k > population) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot sample ", k, " clients from a population of ", population));
  }
  // Floyd: for j in [population - k, population), pick t in [0, j]; take t unless already taken,
  // else j.
  std::mt19937_64 rng(seed);
  absl::flat_hash_set<int64_t> chosen;
  chosen.reserve(k);
  std::vector<int64_t> sample;
  sample.reserve(k);
  for (int64_t j = population - k; j < population; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    const int64_t pick = chosen.insert(t).second ? t : j;
    if (pick == j) chosen.insert(j);
    sample.push_back(pick);
  }
  std::sort(sample.begin(), sample.end());
  return sample;
}

}  // namespace fedkit::server
