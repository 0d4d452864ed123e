// Assigning a centralized dataset's examples to federated clients.
#ifndef FEDKIT_DATA_PARTITION_H_
#define FEDKIT_DATA_PARTITION_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace fedkit::data {

struct PartitionSpec {
  enum class Kind {
    kIid,        // uniform shuffle, split into near-equal parts
    kDirichlet,  // label skew: client class mix ~ Dirichlet(alpha * prior)
    kShards,     // McMahan et al. 2017: sort by label, cut into num_clients * shards shards,
                 // each client gets `shards` random shards
    kNatural,    // the dataset's own per-client split (Synthetic); not valid for Partition()
  };
  Kind kind = Kind::kIid;
  double alpha = 0.0;  // kDirichlet
  int shards = 0;      // kShards
};

// Parses "iid", "dirichlet:ALPHA" (ALPHA > 0), "shards:S" (S >= 1) or "natural".
// INVALID_ARGUMENT with a message quoting the text on anything else.
absl::StatusOr<PartitionSpec> ParsePartitionSpec(std::string_view text);

// Assigns every index in [0, labels.size()) to exactly one of `num_clients` clients and returns,
// for each client, its example indices. Deterministic in `seed`. Requires labels in [0,
// num_classes).
//
// Dirichlet follows Hsu et al. 2019 ("Measuring the effects of non-identical data distribution"):
// each client draws class proportions q ~ Dir(alpha * K * p) (K classes, p = the label prior) and
// receives an equal share of examples (sizes differ by at most one) drawn class by class from q
// without replacement; when a class runs out, q is renormalised over the classes left. For a
// balanced dataset the concentration is alpha per class, Dir(alpha, ..., alpha), which is what
// "Dirichlet alpha" means in NIID-Bench and Flower; Hsu et al.'s own alpha is ours times K. No
// client is empty if num_clients <= labels.size().
//
// Errors: INVALID_ARGUMENT if num_clients < 1, num_clients > labels.size(), shards * num_clients >
// labels.size(), a label is out of range, or the spec is kNatural.
absl::StatusOr<std::vector<std::vector<int64_t>>> Partition(const std::vector<int64_t>& labels,
                                                            int num_classes, int64_t num_clients,
                                                            const PartitionSpec& spec,
                                                            uint64_t seed);

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_PARTITION_H_
