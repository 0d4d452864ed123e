#include "server/client_sampler.h"

#include "absl/strings/str_cat.h"
#include "core/sampling.h"

namespace fedkit::server {

absl::StatusOr<std::vector<int64_t>> SampleClients(int64_t population, int64_t k, uint64_t seed) {
  if (k < 1 || k > population) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot sample ", k, " clients from a population of ", population));
  }
  return SampleIndices(population, k, seed);
}

}  // namespace fedkit::server
