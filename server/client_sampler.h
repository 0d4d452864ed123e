// Choosing a round's participants.
#ifndef FEDKIT_SERVER_CLIENT_SAMPLER_H_
#define FEDKIT_SERVER_CLIENT_SAMPLER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedkit::server {

// k distinct indices drawn uniformly from [0, population), returned in ascending order (the order
// in which their updates are aggregated). Deterministic in `seed`. Costs O(k) memory whatever the
// population (Floyd's algorithm). INVALID_ARGUMENT unless 1 <= k <= population.
absl::StatusOr<std::vector<int64_t>> SampleClients(int64_t population, int64_t k, uint64_t seed);

// Caps what one identity (a token shared by many ids, server/identity.h) gets of a sample, so that
// sybils in the waiting pool cannot crowd out other callers: `sample` (ascending indices into
// `identities`, one entry per waiting client; an empty identity is the client's own) is returned
// unchanged when no identity holds more than its fair share, ceil(|sample| / distinct identities
// waiting). Otherwise each over-share identity keeps its first fair-share picks and the freed
// places go, uniformly at random (deterministic in `seed`), to clients of identities below their
// share; only when those run out does the share grow. Returns ascending indices, as many as
// `sample` had (fewer only if the pool has fewer clients).
std::vector<int64_t> CapPerIdentity(std::vector<int64_t> sample,
                                    const std::vector<std::string>& identities, uint64_t seed);

// How many clients a round assigns with over-selection: ceil(clients_per_round * (1 +
// over_select)) (the coordinator and the simulator alike).
int64_t OverSelectedTarget(int64_t clients_per_round, double over_select);

// Seeds shared by the coordinator and the simulator, so that both start from the same model and
// pick the same clients. `attempt` counts restarts of an abandoned round (0 for the first try).
uint64_t InitialModelSeed(uint64_t run_seed);
uint64_t SamplingSeed(uint64_t run_seed, int64_t round, int64_t attempt = 0);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_CLIENT_SAMPLER_H_
