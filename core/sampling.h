// Uniform sampling of indices without replacement.
#ifndef FEDKIT_CORE_SAMPLING_H_
#define FEDKIT_CORE_SAMPLING_H_

#include <cstdint>
#include <vector>

namespace fedkit {

// min(k, population) distinct indices drawn uniformly from [0, population), in ascending order.
// Deterministic in `seed`; O(k) time and memory whatever the population (Floyd's algorithm).
std::vector<int64_t> SampleIndices(int64_t population, int64_t k, uint64_t seed);

}  // namespace fedkit

#endif  // FEDKIT_CORE_SAMPLING_H_
