#include "server/client_sampler.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/sampling.h"
#include "core/seeds.h"

namespace fedkit::server {

absl::StatusOr<std::vector<int64_t>> SampleClients(int64_t population, int64_t k, uint64_t seed) {
  if (k < 1 || k > population) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot sample ", k, " clients from a population of ", population));
  }
  return SampleIndices(population, k, seed);
}

namespace {
enum SeedStream : uint64_t { kModelInit = 1, kSampling = 2 };  // 3 = client::LocalTrainingSeed
}  // namespace

int64_t OverSelectedTarget(int64_t clients_per_round, double over_select) {
  return static_cast<int64_t>(
      std::ceil(static_cast<double>(clients_per_round) * (1.0 + over_select) - 1e-9));
}

uint64_t InitialModelSeed(uint64_t run_seed) { return DeriveSeed(run_seed, {kModelInit}); }

uint64_t SamplingSeed(uint64_t run_seed, int64_t round, int64_t attempt) {
  if (attempt == 0) return DeriveSeed(run_seed, {kSampling, static_cast<uint64_t>(round)});
  return DeriveSeed(run_seed,
                    {kSampling, static_cast<uint64_t>(round), static_cast<uint64_t>(attempt)});
}

std::vector<int64_t> CapPerIdentity(std::vector<int64_t> sample,
                                    const std::vector<std::string>& identities, uint64_t seed) {
  if (sample.empty()) return sample;
  // An identity key per client: the shared identity, or the client's own index.
  const auto key = [&](int64_t i) {
    return identities[i].empty() ? absl::StrCat("#", i) : identities[i];
  };
  absl::flat_hash_map<std::string, int64_t> waiting;
  for (int64_t i = 0; i < static_cast<int64_t>(identities.size()); ++i) ++waiting[key(i)];
  const int64_t target = static_cast<int64_t>(sample.size());
  int64_t share =
      (target + static_cast<int64_t>(waiting.size()) - 1) / static_cast<int64_t>(waiting.size());
  absl::flat_hash_map<std::string, int64_t> taken;
  bool over = false;
  for (int64_t i : sample) over |= ++taken[key(i)] > share;
  if (!over) return sample;

  taken.clear();
  std::vector<int64_t> kept;
  absl::flat_hash_set<int64_t> in_sample;
  for (int64_t i : sample) {
    if (taken[key(i)] < share) {
      ++taken[key(i)];
      kept.push_back(i);
      in_sample.insert(i);
    }
  }
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < static_cast<int64_t>(identities.size()); ++i) {
    if (!in_sample.contains(i)) candidates.push_back(i);
  }
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::shuffle(candidates.begin(), candidates.end(), rng);
  while (static_cast<int64_t>(kept.size()) < target && !candidates.empty()) {
    std::vector<int64_t> rest;
    for (int64_t i : candidates) {
      if (static_cast<int64_t>(kept.size()) < target && taken[key(i)] < share) {
        ++taken[key(i)];
        kept.push_back(i);
      } else {
        rest.push_back(i);
      }
    }
    candidates = std::move(rest);
    ++share;  // every identity below its share is exhausted: let the share grow
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace fedkit::server
