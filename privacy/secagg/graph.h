// Who masks with whom. SecAgg (Bonawitz et al. 2017) uses the complete graph; SecAgg+ (Bell et al.
// 2020) a random Harary graph H(n, k): clients placed on a ring in a random order (seeded by a
// public per-round seed the server chooses) each connect to the k/2 nearest on either side.
// Degree k and threshold t are chosen from n, the expected dropout rate and the fraction of
// corrupt clients so that (a) with probability >= 1 - 2^-40 no client has t corrupt neighbours and
// the honest surviving graph stays connected (security), and (b) with probability >= 1 - 2^-20
// every client keeps >= t surviving neighbours (correctness), following Bell et al. §3 and the
// construction of Google's federated-compute (fcp/secagg/server/graph_parameter_finder).
#ifndef FEDKIT_PRIVACY_SECAGG_GRAPH_H_
#define FEDKIT_PRIVACY_SECAGG_GRAPH_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedkit::secagg {

// Undirected neighbourhoods over protocol indices 0..n-1. A client is not its own neighbour.
class MaskingGraph {
 public:
  // Complete graph on n >= 2 nodes.
  static absl::StatusOr<MaskingGraph> Complete(int n);
  // Harary graph H(n, k) under the permutation drawn from `seed`: k even, 2 <= k <= n - 2.
  // INVALID_ARGUMENT otherwise (use Complete for k = n - 1).
  static absl::StatusOr<MaskingGraph> RandomHarary(int n, int k, uint64_t seed);

  // Only `node`'s (sorted) neighbours in RandomHarary(n, k, seed): O(n) time and O(k) memory, for
  // a client that needs its own neighbourhood, not the whole graph.
  static absl::StatusOr<std::vector<int>> RandomHararyNeighbours(int n, int k, uint64_t seed,
                                                                 int node);

  int num_nodes() const { return static_cast<int>(neighbours_.size()); }
  int degree() const { return degree_; }
  // Sorted ascending.
  const std::vector<int>& neighbours(int node) const { return neighbours_[node]; }
  bool AreNeighbours(int a, int b) const;

 private:
  MaskingGraph(std::vector<std::vector<int>> neighbours, int degree)
      : neighbours_(std::move(neighbours)), degree_(degree) {}
  std::vector<std::vector<int>> neighbours_;
  int degree_ = 0;
};

struct GraphParameters {
  int degree = 0;     // k: neighbours per client
  int threshold = 0;  // t: shares needed to reconstruct a client's secrets, 2 <= t <= k
};

// SecAgg+ degree and threshold for n clients (Bell et al.; see the file comment), for a semi-honest
// server with `corrupt_fraction` of clients colluding with it and an expected `dropout_rate`.
// FAILED_PRECONDITION when no k < n - 1 works (small n): callers then use the complete graph.
// INVALID_ARGUMENT for rates outside [0, 1) or corrupt_fraction + dropout_rate > 0.9.
absl::StatusOr<GraphParameters> SecAggPlusParameters(int n, double dropout_rate,
                                                     double corrupt_fraction);

// SecAgg (complete graph) threshold for n >= 2 clients: floor(n/2) + 1, the smallest t > n/2 the
// paper's semi-honest argument needs (two disjoint client sets can never both reach t, so the
// server can never obtain both a client's mask seed and its masking key). INVALID_ARGUMENT for n
// < 2.
absl::StatusOr<int> SecAggThreshold(int n);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_GRAPH_H_
