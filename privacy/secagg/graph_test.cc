#include "privacy/secagg/graph.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::secagg {
namespace {

// Checks the invariants every masking graph must have; `degree` neighbours each.
void ExpectWellFormed(const MaskingGraph& graph, int n, int degree) {
  ASSERT_EQ(graph.num_nodes(), n);
  EXPECT_EQ(graph.degree(), degree);
  for (int a = 0; a < n; ++a) {
    const std::vector<int>& list = graph.neighbours(a);
    ASSERT_EQ(static_cast<int>(list.size()), degree) << "node " << a;
    for (size_t i = 0; i < list.size(); ++i) {
      const int b = list[i];
      ASSERT_GE(b, 0);
      ASSERT_LT(b, n);
      EXPECT_NE(b, a) << "self loop at " << a;
      if (i > 0) {
        EXPECT_LT(list[i - 1], b) << "neighbours of " << a << " not strictly ascending";
      }
      EXPECT_TRUE(graph.AreNeighbours(a, b));
      EXPECT_TRUE(graph.AreNeighbours(b, a)) << a << " lists " << b << " but not vice versa";
    }
  }
}

// Nodes reachable from 0.
int ReachableFromZero(const MaskingGraph& graph) {
  std::vector<bool> seen(graph.num_nodes(), false);
  std::vector<int> stack = {0};
  seen[0] = true;
  int count = 1;
  while (!stack.empty()) {
    const int a = stack.back();
    stack.pop_back();
    for (int b : graph.neighbours(a)) {
      if (!seen[b]) {
        seen[b] = true;
        ++count;
        stack.push_back(b);
      }
    }
  }
  return count;
}

TEST(MaskingGraphTest, CompleteGraph) {
  for (int n : {2, 3, 7, 50}) {
    auto graph = MaskingGraph::Complete(n);
    ASSERT_TRUE(graph.ok()) << graph.status();
    ExpectWellFormed(*graph, n, n - 1);
    for (int a = 0; a < n; ++a) {
      EXPECT_FALSE(graph->AreNeighbours(a, a));
      for (int b = 0; b < n; ++b) EXPECT_EQ(graph->AreNeighbours(a, b), a != b);
    }
  }
  EXPECT_EQ(MaskingGraph::Complete(1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MaskingGraph::Complete(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MaskingGraphTest, HararyGraphIsRegularSymmetricAndConnected) {
  for (int n : {4, 5, 10, 33, 200}) {
    for (int k = 2; k <= n - 2; k += 2) {
      if (k > 20) break;
      auto graph = MaskingGraph::RandomHarary(n, k, 1234 + n);
      ASSERT_TRUE(graph.ok()) << graph.status();
      ExpectWellFormed(*graph, n, k);
      EXPECT_EQ(ReachableFromZero(*graph), n) << "n " << n << " k " << k;
    }
  }
}

TEST(MaskingGraphTest, DegreeTwoIsOneHamiltonianCycle) {
  // H(n, 2) is the ring itself: walking it from 0 must visit all n nodes before returning.
  const int n = 97;
  auto graph = MaskingGraph::RandomHarary(n, 2, 7);
  ASSERT_TRUE(graph.ok());
  int previous = -1, current = 0, steps = 0;
  do {
    const std::vector<int>& list = graph->neighbours(current);
    const int next = list[0] != previous ? list[0] : list[1];
    previous = current;
    current = next;
    ++steps;
  } while (current != 0 && steps <= n);
  EXPECT_EQ(steps, n);
}

TEST(MaskingGraphTest, AreNeighboursAgreesWithListsAndRejectsOutOfRange) {
  const int n = 60;
  auto graph = MaskingGraph::RandomHarary(n, 8, 99);
  ASSERT_TRUE(graph.ok());
  for (int a = 0; a < n; ++a) {
    std::vector<bool> listed(n, false);
    for (int b : graph->neighbours(a)) listed[b] = true;
    for (int b = 0; b < n; ++b) EXPECT_EQ(graph->AreNeighbours(a, b), listed[b]);
  }
  EXPECT_FALSE(graph->AreNeighbours(-1, 0));
  EXPECT_FALSE(graph->AreNeighbours(0, n));
  EXPECT_FALSE(graph->AreNeighbours(n, 0));
}

TEST(MaskingGraphTest, SameSeedSameGraphDifferentSeedDifferentGraph) {
  const int n = 500, k = 10;
  auto a = MaskingGraph::RandomHarary(n, k, 2024);
  auto b = MaskingGraph::RandomHarary(n, k, 2024);
  auto c = MaskingGraph::RandomHarary(n, k, 2025);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  bool any_difference = false;
  for (int node = 0; node < n; ++node) {
    EXPECT_EQ(a->neighbours(node), b->neighbours(node));
    any_difference |= a->neighbours(node) != c->neighbours(node);
  }
  EXPECT_TRUE(any_difference);
}

// Server and clients each rebuild the graph from the seed, so the permutation algorithm (Mix64 ->
// mt19937_64 -> explicit Fisher-Yates with rejection sampling) must never change silently. These
// lists were produced by this implementation and cross-checked against an independent Python
// re-implementation of the same algorithm (including mt19937_64).
TEST(MaskingGraphTest, GoldenGraphForSeed42) {
  auto graph = MaskingGraph::RandomHarary(10, 4, 42);
  ASSERT_TRUE(graph.ok());
  const std::vector<std::vector<int>> expected = {
      {2, 3, 7, 9}, {2, 4, 8, 9}, {0, 1, 8, 9}, {0, 5, 6, 7}, {1, 5, 6, 8},
      {3, 4, 6, 8}, {3, 4, 5, 7}, {0, 3, 6, 9}, {1, 2, 4, 5}, {0, 1, 2, 7}};
  for (int node = 0; node < 10; ++node) {
    EXPECT_EQ(graph->neighbours(node), expected[node]) << "node " << node;
  }
}

TEST(MaskingGraphTest, RejectsInvalidDegree) {
  for (auto [n, k] : std::vector<std::pair<int, int>>{
           {10, 0}, {10, -2}, {10, 3}, {10, 9}, {10, 10}, {10, 12}, {3, 2}, {2, 2}, {0, 2}}) {
    EXPECT_EQ(MaskingGraph::RandomHarary(n, k, 1).status().code(),
              absl::StatusCode::kInvalidArgument)
        << "n " << n << " k " << k;
  }
  EXPECT_TRUE(MaskingGraph::RandomHarary(10, 8, 1).ok());  // k = n - 2 is the largest allowed
  EXPECT_TRUE(MaskingGraph::RandomHarary(4, 2, 1).ok());
}

TEST(SecAggThresholdTest, StrictMajority) {
  EXPECT_EQ(*SecAggThreshold(2), 2);
  EXPECT_EQ(*SecAggThreshold(3), 2);
  EXPECT_EQ(*SecAggThreshold(4), 3);
  EXPECT_EQ(*SecAggThreshold(10), 6);
  EXPECT_EQ(*SecAggThreshold(101), 51);
  EXPECT_EQ(SecAggThreshold(1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SecAggThreshold(0).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// SecAggPlusParameters.

TEST(SecAggPlusParamsTest, RejectsInvalidRates) {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(SecAggPlusParameters(1000, -0.1, 0.0).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 1.0, 0.0).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 0.0, 1.0).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 0.0, -0.01).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, NAN, 0.0).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 0.0, NAN).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 0.5, 0.5).status().code(), kInvalid);
  EXPECT_EQ(SecAggPlusParameters(1000, 0.6, 0.31).status().code(), kInvalid);
  EXPECT_TRUE(SecAggPlusParameters(1000, 0.45, 0.45).ok());  // exactly 0.9 is allowed
}

TEST(SecAggPlusParamsTest, SmallNFallsBackToCompleteGraph) {
  // k must be even and < n - 1, so there is no candidate at all for n <= 3.
  for (int n : {2, 3}) {
    EXPECT_EQ(SecAggPlusParameters(n, 0.0, 0.0).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  // Too many bad clients for 12 nodes: every Harary graph disconnects too easily.
  EXPECT_EQ(SecAggPlusParameters(12, 0.45, 0.45).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SecAggPlusParamsTest, ThousandClientsGetLogarithmicDegree) {
  auto params = SecAggPlusParameters(1000, 0.1, 0.05);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_LE(params->degree, 100);  // versus 999 for the complete graph
  EXPECT_EQ(params->degree % 2, 0);
  EXPECT_GE(params->threshold, 2);
  EXPECT_LE(params->threshold, params->degree);
  EXPECT_TRUE(MaskingGraph::RandomHarary(1000, params->degree, 5).ok());
}

// federated-compute's graph_parameter_finder_test.cc (CURIOUS_SERVER and NONE rows; its
// arguments are (n, adversarial rate, dropout rate)). It asserts the degree exactly and the
// threshold as an upper bound; we match both exactly, except in two rows. For n = 10 and 33%
// dropout, federated-compute accepts k = 4 with t_max = 1 and then raises t to 2 without
// re-checking: a client keeps < 2 of its 4 neighbours with probability 7/210, far above 2^-20.
// We check the raised t, so k = 4 fails there and k = 6 is chosen.
struct KnownAnswer {
  int n;
  double corrupt;
  double dropout;
  int degree;
  int threshold;
};

TEST(SecAggPlusParamsTest, MatchesFederatedComputeKnownAnswers) {
  const std::vector<KnownAnswer> cases = {
      {100, 0.45, 0.45, 92, 46},
      {1000, 0.45, 0.45, 822, 417},
      {10000, 0.45, 0.45, 3494, 1771},
      {100000, 0.45, 0.45, 5508, 2788},
      {1000000, 0.45, 0.45, 6240, 3156},
      {10, 0.33, 0.33, 8, 4},
      {100, 0.33, 0.33, 68, 34},
      {1000, 0.33, 0.33, 286, 150},
      {10000, 0.33, 0.33, 422, 221},
      {100000, 0.33, 0.33, 480, 251},
      {1000000, 0.33, 0.33, 518, 270},
      {10, 0.05, 0.33, 6, 2},  // federated-compute: (4, 2); see below
      {100, 0.05, 0.33, 28, 6},
      {1000, 0.05, 0.33, 72, 24},
      {10000, 0.05, 0.33, 86, 29},
      {100000, 0.05, 0.33, 96, 32},
      {1000000, 0.05, 0.33, 102, 34},
      {10, 0.33, 0.05, 4, 4},
      {100, 0.33, 0.05, 34, 29},
      {1000, 0.33, 0.05, 78, 60},
      {10000, 0.33, 0.05, 92, 70},
      {100000, 0.33, 0.05, 102, 77},
      {1000000, 0.33, 0.05, 110, 83},
      {10, 0.05, 0.05, 2, 2},
      {100, 0.05, 0.05, 12, 6},
      {1000, 0.05, 0.05, 30, 17},
      {10000, 0.05, 0.05, 34, 20},
      {100000, 0.05, 0.05, 36, 21},
      {1000000, 0.05, 0.05, 38, 22},
      {10, 0.33, 0.0, 4, 4},
      {100, 0.33, 0.0, 26, 25},
      {1000, 0.33, 0.0, 38, 36},
      {10000, 0.33, 0.0, 42, 40},
      {100000, 0.33, 0.0, 46, 44},
      {1000000, 0.33, 0.0, 50, 47},
      {10, 0.0, 0.33, 6, 2},  // federated-compute: (4, 2); see below
      {100, 0.0, 0.33, 26, 2},
      {1000, 0.0, 0.33, 38, 2},
      {10000, 0.0, 0.33, 42, 2},
      {100000, 0.0, 0.33, 46, 2},
      {1000000, 0.0, 0.33, 50, 2},
      {10, 0.0, 0.0, 2, 2},
      {100, 0.0, 0.0, 2, 2},
      {1000, 0.0, 0.0, 2, 2},
      {10000, 0.0, 0.0, 2, 2},
      {100000, 0.0, 0.0, 2, 2},
      {1000000, 0.0, 0.0, 2, 2},
  };
  for (const KnownAnswer& c : cases) {
    auto params = SecAggPlusParameters(c.n, c.dropout, c.corrupt);
    ASSERT_TRUE(params.ok()) << params.status();
    EXPECT_EQ(params->degree, c.degree)
        << "n " << c.n << " corrupt " << c.corrupt << " dropout " << c.dropout;
    EXPECT_EQ(params->threshold, c.threshold)
        << "n " << c.n << " corrupt " << c.corrupt << " dropout " << c.dropout;
  }
}

// An independent, definition-level reference for small n: exact binomial coefficients, the pmf
// summed directly, the union bound as a product of ratios. Agreement for every small n and a
// grid of rates checks the hypergeometric quantiles and the search together.
class Reference {
 public:
  explicit Reference(int max_n) : binomial_(max_n + 1, std::vector<long double>(max_n + 1, 0)) {
    for (int a = 0; a <= max_n; ++a) {
      binomial_[a][0] = 1;
      for (int b = 1; b <= a; ++b) binomial_[a][b] = binomial_[a - 1][b - 1] + binomial_[a - 1][b];
    }
  }

  long double Choose(int64_t a, int64_t b) const { return (b < 0 || b > a) ? 0 : binomial_[a][b]; }

  // Pr[X = x] for X hypergeometric: x marked among `sampled` drawn from `total` with `marked`.
  long double Pmf(int total, int marked, int sampled, int x) const {
    return Choose(marked, x) * Choose(total - marked, sampled - x) / Choose(total, sampled);
  }

  // {degree, threshold}, or {0, 0} when no degree works.
  std::pair<int, int> Parameters(int n, double dropout, double corrupt) const {
    const int bad_corrupt = static_cast<int>(std::floor((corrupt + 1e-14) * n));
    const int bad_dropped = static_cast<int>(std::floor((dropout + 1e-14) * n));
    const int surviving = static_cast<int>(std::ceil((1 - dropout - 1e-14) * n));
    const int bad = bad_corrupt + bad_dropped;
    const long double security = std::pow(2.0L, -41) / n;
    const long double failure = std::pow(2.0L, -20) / n;
    for (int k = 2; k < n - 1; k += 2) {
      // n (n - k - 1) / 2 pairs of runs, each all bad with probability prod (bad - i) / (n - i).
      long double disconnect = n * (n - k - 1) / 2.0L;
      for (int i = 0; i < k; ++i)
        disconnect *= std::max(0, bad - i) / static_cast<long double>(n - i);
      if (disconnect >= std::pow(2.0L, -41)) continue;  // a bound for the whole graph
      // Smallest t with Pr[corrupt neighbours >= t] < security.
      int t_min = k + 1;
      long double upper = 0;  // Pr[A >= t_min]
      while (t_min > 0 && upper + Pmf(n, bad_corrupt, k, t_min - 1) < security) {
        upper += Pmf(n, bad_corrupt, k, t_min - 1);
        --t_min;
      }
      // Largest t with Pr[surviving neighbours < t] < failure.
      int t_max = 0;
      long double lower = 0;  // Pr[S < t_max + 1]
      while (t_max < k && lower + Pmf(n, surviving, k, t_max) < failure) {
        lower += Pmf(n, surviving, k, t_max);
        ++t_max;
      }
      const int t = std::max(t_min, 2);
      if (t <= t_max) return {k, t};
    }
    return {0, 0};
  }

 private:
  std::vector<std::vector<long double>> binomial_;
};

TEST(SecAggPlusParamsTest, MatchesBruteForceForSmallN) {
  const int max_n = 80;
  const Reference reference(max_n);
  int found = 0;
  for (int n = 2; n <= max_n; ++n) {
    for (double dropout : {0.0, 0.05, 0.1, 0.2, 0.3, 0.45}) {
      for (double corrupt : {0.0, 0.02, 0.05, 0.1, 0.2, 0.33, 0.45}) {
        if (dropout + corrupt > 0.9) continue;
        const std::pair<int, int> expected = reference.Parameters(n, dropout, corrupt);
        auto params = SecAggPlusParameters(n, dropout, corrupt);
        const std::string where = "n " + std::to_string(n) + " dropout " + std::to_string(dropout) +
                                  " corrupt " + std::to_string(corrupt);
        if (expected.first == 0) {
          EXPECT_EQ(params.status().code(), absl::StatusCode::kFailedPrecondition) << where;
          continue;
        }
        ++found;
        ASSERT_TRUE(params.ok()) << where << ": " << params.status();
        EXPECT_EQ(params->degree, expected.first) << where;
        EXPECT_EQ(params->threshold, expected.second) << where;
      }
    }
  }
  EXPECT_GT(found, 500);  // the comparison is not vacuous
}

// Not an assertion: the (k, t) table for the record.
TEST(SecAggPlusParamsTest, PrintsTable) {
  std::printf("%8s %8s %8s %8s %8s\n", "n", "dropout", "corrupt", "k", "t");
  for (int n : {100, 500, 1000, 10000}) {
    for (double corrupt : {0.0, 0.05}) {
      for (double dropout : {0.0, 0.1, 0.3}) {
        auto params = SecAggPlusParameters(n, dropout, corrupt);
        if (params.ok()) {
          std::printf("%8d %8.2f %8.2f %8d %8d\n", n, dropout, corrupt, params->degree,
                      params->threshold);
        } else {
          std::printf("%8d %8.2f %8.2f %s\n", n, dropout, corrupt,
                      std::string(params.status().message()).c_str());
        }
      }
    }
  }
}

}  // namespace
}  // namespace fedkit::secagg
