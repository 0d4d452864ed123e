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
    // NIID-Bench (Li, Diao, Chen, He, ICDE 2022, "Federated Learning on Non-IID Data Silos"):
    kLabels,    // quantity-based label imbalance "#C=K": each client holds exactly K labels
    kQuantity,  // quantity skew: client sizes ~ Dir(beta) * N, examples IID
    kNoise,     // feature skew: IID split, client i's features + N(0, (sigma * i / clients)^2)
  };
  Kind kind = Kind::kIid;
  double alpha = 0.0;  // kDirichlet
  int shards = 0;      // kShards
  int labels = 0;      // kLabels: K, distinct labels per client
  double beta = 0.0;   // kQuantity
  double sigma = 0.0;  // kNoise
};

// Parses "iid", "dirichlet:ALPHA" (ALPHA > 0), "shards:S" (S >= 1), "labels:K" (K >= 1; K <=
// num_classes is checked by Partition()), "quantity:BETA" (BETA > 0), "noise:SIGMA" (SIGMA >= 0)
// or "natural". Numbers must be finite. INVALID_ARGUMENT with a message quoting the text on
// anything else.
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
// labels:K (NIID-Bench's "#C=K"): client i holds label i mod P first (P = the number of distinct
// labels present, taken in ascending order; P = num_classes for a dataset with every class), then
// K - 1 further distinct labels drawn uniformly from those it lacks, preferring labels no client
// holds yet, so every present label has a holder whenever num_clients * K >= P (for num_clients
// >= P this is exactly NIID-Bench's draw). Each label's examples are shuffled and split among its
// holders into parts differing by at most one. Every client has exactly K distinct labels as long
// as no label has fewer examples than holders.
//
// quantity:BETA (NIID-Bench's quantity skew): q ~ Dir(BETA, ..., BETA) over clients, examples
// shuffled (so each client's label mix is IID) and cut into consecutive runs of sizes m + n_i,
// where m = min(10, labels.size() / num_clients) is a floor every client gets and n_i is q_i's
// share of the rest, rounded by largest remainder so the sizes sum to labels.size(). (NIID-Bench
// re-draws q until every client has >= 10 examples, which for small BETA and many clients would
// practically never end; the floor always terminates and keeps every client non-empty.)
//
// noise:SIGMA: the same split as iid with the same seed; the noise is added to features later, by
// AddClientFeatureNoise when a client's training examples are produced.
//
// Errors: INVALID_ARGUMENT if num_clients < 1, num_clients > labels.size(), shards * num_clients >
// labels.size(), a label is out of range, the spec is kNatural, a spec field is out of its range
// (alpha, beta not finite and > 0; sigma not finite and >= 0; shards < 1), or for labels:K if K is
// outside [1, num_classes], K exceeds the number of distinct labels present, num_clients * K is
// less than that number (some label would have no holder), or a client would receive no example.
absl::StatusOr<std::vector<std::vector<int64_t>>> Partition(const std::vector<int64_t>& labels,
                                                            int num_classes, int64_t num_clients,
                                                            const PartitionSpec& spec,
                                                            uint64_t seed);

// The standard deviation of the feature noise client `client` of `num_clients` gets under `spec`:
// sigma * client / num_clients for kNoise (NIID-Bench's x + Gau(sigma * i / N); client 0 is
// clean), 0 for every other kind or a client outside [0, num_clients).
double ClientFeatureNoiseStd(const PartitionSpec& spec, int64_t client, int64_t num_clients);

// Adds i.i.d. N(0, ClientFeatureNoiseStd(spec, client, num_clients)^2) to every value of
// `features` (that client's training features, produced in a fixed order). Deterministic in
// (seed, client): the same client gets the same noise every time. Does nothing if the std is 0.
void AddClientFeatureNoise(const PartitionSpec& spec, int64_t client, int64_t num_clients,
                           uint64_t seed, std::vector<float>* features);

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_PARTITION_H_
