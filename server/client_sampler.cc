#include "server/client_sampler.h"

#include <cmath>

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

}  // namespace fedkit::server
