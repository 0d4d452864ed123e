#include "privacy/secagg/graph.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/seeds.h"

namespace fedkit::secagg {
namespace {

// Uniform integer in [0, bound) by rejection, so the result is exact and identical on every
// platform (std::uniform_int_distribution's algorithm is implementation-defined).
uint64_t UniformBelow(std::mt19937_64& gen, uint64_t bound) {
  // Values below `reject` would make r % bound biased towards small results.
  const uint64_t reject = (0 - bound) % bound;  // 2^64 mod bound
  uint64_t r = gen();
  while (r < reject) r = gen();
  return r % bound;
}

// ring[p] = the node at ring position p. Fisher-Yates written out: server and clients must derive
// the same ring from the public seed, and std::shuffle's algorithm is implementation-defined.
std::vector<int> RingOrder(int n, uint64_t seed) {
  std::vector<int> ring(n);
  for (int i = 0; i < n; ++i) ring[i] = i;
  std::mt19937_64 gen(Mix64(seed));
  for (int i = n - 1; i > 0; --i) {
    const int j = static_cast<int>(UniformBelow(gen, static_cast<uint64_t>(i) + 1));
    std::swap(ring[i], ring[j]);
  }
  return ring;
}

// Hypergeometric distribution: the number of marked items among `sampled` drawn without
// replacement from `total` of which `marked` are marked. Only the two tail quantiles the parameter
// search needs. The pmf is built by its ratio recurrence outwards from the mode and normalised by
// its sum, so it is accurate in the far tails (where the decisions are made) without
// factorials; terms below 1e-300 of the mode are dropped, which caps the work at O(sqrt(sampled))
// per distribution in practice and changes no decision (the tails compared are >= ~1e-25).
class Hypergeometric {
 public:
  Hypergeometric(int64_t total, int64_t marked, int64_t sampled) {
    const int64_t lo = std::max<int64_t>(0, sampled + marked - total);
    const int64_t hi = std::min(sampled, marked);
    // The mode of the hypergeometric distribution.
    int64_t mode = (sampled + 1) * (marked + 1) / (total + 2);
    mode = std::clamp(mode, lo, hi);
    std::vector<double> below;  // weights at mode-1, mode-2, ...
    double w = 1.0;
    for (int64_t x = mode; x > lo; --x) {
      // p(x-1)/p(x) = x (total - marked - sampled + x) / ((marked - x + 1)(sampled - x + 1)).
      w *= static_cast<double>(x) * static_cast<double>(total - marked - sampled + x) /
           (static_cast<double>(marked - x + 1) * static_cast<double>(sampled - x + 1));
      if (w < kNegligible) break;
      below.push_back(w);
    }
    std::vector<double> above;  // weights at mode+1, mode+2, ...
    w = 1.0;
    for (int64_t x = mode; x < hi; ++x) {
      // p(x+1)/p(x) = (marked - x)(sampled - x) / ((x + 1)(total - marked - sampled + x + 1)).
      w *= static_cast<double>(marked - x) * static_cast<double>(sampled - x) /
           (static_cast<double>(x + 1) * static_cast<double>(total - marked - sampled + x + 1));
      if (w < kNegligible) break;
      above.push_back(w);
    }
    first_ = mode - static_cast<int64_t>(below.size());
    pmf_.assign(below.rbegin(), below.rend());
    pmf_.push_back(1.0);
    pmf_.insert(pmf_.end(), above.begin(), above.end());
    // Sum smallest first for accuracy.
    double sum = 0.0;
    for (size_t i = 0; i < below.size(); ++i) sum += below[below.size() - 1 - i];
    double sum_above = 0.0;
    for (size_t i = 0; i < above.size(); ++i) sum_above += above[above.size() - 1 - i];
    sum += sum_above + 1.0;
    for (double& p : pmf_) p /= sum;
  }

  // The smallest x with P(X > x) < q (0 < q < 1).
  int64_t SmallestWithUpperTailBelow(double q) const {
    // Walk down from the largest retained value; everything above it is negligible.
    int64_t x = first_ + static_cast<int64_t>(pmf_.size()) - 1;
    double tail = 0.0;  // P(X > x)
    while (x >= first_) {
      const double next = tail + pmf_[x - first_];  // P(X > x - 1)
      if (next >= q) break;
      tail = next;
      --x;
    }
    return x;
  }

  // The smallest x with P(X <= x) >= q (0 < q < 1).
  int64_t SmallestWithCdfAtLeast(double q) const {
    double cdf = 0.0;
    for (size_t i = 0; i < pmf_.size(); ++i) {
      cdf += pmf_[i];
      if (cdf >= q) return first_ + static_cast<int64_t>(i);
    }
    return first_ + static_cast<int64_t>(pmf_.size()) - 1;  // only by rounding: the cdf is 1 here
  }

 private:
  static constexpr double kNegligible = 1e-300;
  int64_t first_ = 0;        // the value pmf_[0] is the probability of
  std::vector<double> pmf_;  // the non-negligible part of the support
};

// Bell et al.'s parameters: 40 bits of statistical security split evenly between its two bad
// events (so 41 bits each), 20 bits of correctness, all union-bounded over the n clients.
constexpr double kSecurityBitsPerEvent = 41.0;
constexpr double kCorrectnessBits = 20.0;
// Keeps rate * n from rounding down a whole client when it is an exact integer in reals (e.g.
// 0.05 * 100); federated-compute does the same.
constexpr double kSmall = 1e-14;

// log of a union bound on Pr[the Harary graph minus the bad (corrupt or dropped) clients is
// disconnected]. Disconnecting H(n, k) takes two disjoint runs of k/2 consecutive bad clients on
// the ring: about n (n - k - 1) / 2 pairs of runs, each all bad with probability
// C(bad, k) / C(n, k) = bad! (n - k)! / ((bad - k)! n!).
double LogDisconnectionBound(int n, int k, int64_t bad) {
  if (k > bad) return -INFINITY;
  return std::log(static_cast<double>(n)) + std::log(static_cast<double>(n - k - 1)) -
         std::log(2.0) + std::lgamma(static_cast<double>(bad) + 1) +
         std::lgamma(static_cast<double>(n - k) + 1) - std::lgamma(static_cast<double>(n) + 1) -
         std::lgamma(static_cast<double>(bad - k) + 1);
}

}  // namespace

absl::StatusOr<MaskingGraph> MaskingGraph::Complete(int n) {
  if (n < 2) {
    return absl::InvalidArgumentError(absl::StrCat("complete graph needs n >= 2, got ", n));
  }
  std::vector<std::vector<int>> neighbours(n);
  for (int a = 0; a < n; ++a) {
    neighbours[a].reserve(n - 1);
    for (int b = 0; b < n; ++b) {
      if (b != a) neighbours[a].push_back(b);
    }
  }
  return MaskingGraph(std::move(neighbours), n - 1);
}

absl::StatusOr<MaskingGraph> MaskingGraph::RandomHarary(int n, int k, uint64_t seed) {
  if (k < 2 || k % 2 != 0 || k > n - 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Harary graph degree must be even with 2 <= k <= n - 2 (use the complete graph for k = "
        "n - 1), got n = ",
        n, ", k = ", k));
  }
  const std::vector<int> ring = RingOrder(n, seed);
  const int half = k / 2;
  std::vector<std::vector<int>> neighbours(n);
  for (int p = 0; p < n; ++p) {
    std::vector<int>& list = neighbours[ring[p]];
    list.reserve(k);
    // k < n, so the k ring positions p +- 1..k/2 are distinct and exclude p.
    for (int d = 1; d <= half; ++d) {
      list.push_back(ring[(p + d) % n]);
      list.push_back(ring[(p - d + n) % n]);
    }
    std::sort(list.begin(), list.end());
  }
  return MaskingGraph(std::move(neighbours), k);
}

absl::StatusOr<std::vector<int>> MaskingGraph::RandomHararyNeighbours(int n, int k, uint64_t seed,
                                                                      int node) {
  if (k < 2 || k % 2 != 0 || k > n - 2 || node < 0 || node >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("Harary neighbourhood: bad n = ", n, ", k = ", k, " or node = ", node));
  }
  const std::vector<int> ring = RingOrder(n, seed);
  const int p = static_cast<int>(std::find(ring.begin(), ring.end(), node) - ring.begin());
  std::vector<int> list;
  list.reserve(k);
  for (int d = 1; d <= k / 2; ++d) {
    list.push_back(ring[(p + d) % n]);
    list.push_back(ring[(p - d + n) % n]);
  }
  std::sort(list.begin(), list.end());
  return list;
}

bool MaskingGraph::AreNeighbours(int a, int b) const {
  if (a < 0 || a >= num_nodes() || b < 0 || b >= num_nodes()) return false;
  return std::binary_search(neighbours_[a].begin(), neighbours_[a].end(), b);
}

absl::StatusOr<GraphParameters> SecAggPlusParameters(int n, double dropout_rate,
                                                     double corrupt_fraction) {
  // Written so that NaN fails too.
  if (!(dropout_rate >= 0.0 && dropout_rate < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout_rate must be in [0, 1), got ", dropout_rate));
  }
  if (!(corrupt_fraction >= 0.0 && corrupt_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("corrupt_fraction must be in [0, 1), got ", corrupt_fraction));
  }
  if (corrupt_fraction + dropout_rate > 0.9) {
    return absl::InvalidArgumentError(absl::StrCat(
        "corrupt_fraction + dropout_rate must be <= 0.9 for a semi-honest server, got ",
        corrupt_fraction, " + ", dropout_rate));
  }
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("n must be >= 1, got ", n));

  // Worst cases the bounds are computed for.
  const int64_t corrupt = static_cast<int64_t>(std::floor((corrupt_fraction + kSmall) * n));
  const int64_t dropped = static_cast<int64_t>(std::floor((dropout_rate + kSmall) * n));
  const int64_t surviving = static_cast<int64_t>(std::ceil((1.0 - dropout_rate - kSmall) * n));
  const double log_security_bound = -kSecurityBitsPerEvent * std::log(2.0);
  const double per_client_security = std::pow(2.0, -kSecurityBitsPerEvent) / n;
  const double per_client_failure = std::pow(2.0, -kCorrectnessBits) / n;

  for (int k = 2; k < n - 1; k += 2) {
    if (LogDisconnectionBound(n, k, corrupt + dropped) >= log_security_bound) continue;
    // A client's k neighbours modelled as a uniform sample of the n clients.
    // Security: t exceeds, except with probability < 2^-41 / n, the client's corrupt neighbours.
    const int64_t t_min =
        Hypergeometric(n, corrupt, k).SmallestWithUpperTailBelow(per_client_security) + 1;
    // Correctness: Pr[surviving neighbours < t] = Pr[S <= t - 1] < 2^-20 / n for all t <= t_max.
    const int64_t t_max =
        Hypergeometric(n, surviving, k).SmallestWithCdfAtLeast(per_client_failure);
    // Shamir sharing needs t >= 2. Unlike federated-compute (which checks t_min <= t_max before
    // raising t to 2) the correctness bound is checked for the t returned.
    const int64_t t = std::max<int64_t>(t_min, 2);
    if (t <= t_max) return GraphParameters{k, static_cast<int>(t)};
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no Harary degree k < n - 1 = ", n - 1, " meets 2^-40 security and 2^-20 ",
                   "correctness for corrupt_fraction ", corrupt_fraction, " and dropout_rate ",
                   dropout_rate, "; use the complete graph"));
}

absl::StatusOr<int> SecAggThreshold(int n) {
  if (n < 2) {
    return absl::InvalidArgumentError(absl::StrCat("secure aggregation needs n >= 2, got ", n));
  }
  return n / 2 + 1;
}

}  // namespace fedkit::secagg
