#include "data/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/seeds.h"

namespace fedkit::data {
namespace {

using ClientIndices = std::vector<std::vector<int64_t>>;

// Keeps partition draws unrelated to other users of the same run seed.
constexpr uint64_t kPartitionStream = 0x7061727469746e;  // "partitn"

absl::Status BadSpec(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid partition spec \"", text, "\": ", why,
                   " (expected iid, dirichlet:ALPHA with ALPHA > 0, shards:S with S >= 1, "
                   "or natural)"));
}

// Size of part `i` when `n` items are split into `k` parts differing by at most one.
int64_t PartSize(int64_t n, int64_t k, int64_t i) { return n / k + (i < n % k ? 1 : 0); }

ClientIndices PartitionIid(int64_t n, int64_t num_clients, std::mt19937_64& rng) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  ClientIndices out(static_cast<size_t>(num_clients));
  auto it = order.begin();
  for (int64_t c = 0; c < num_clients; ++c) {
    const int64_t size = PartSize(n, num_clients, c);
    out[static_cast<size_t>(c)].assign(it, it + size);
    it += size;
  }
  return out;
}

// log of a Gamma(shape, 1) draw. Shapes like alpha * p = 0.01 make the plain draw underflow to 0
// for every class; in log space we use Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang).
double LogGamma(double shape, std::mt19937_64& rng) {
  if (shape >= 1.0) {
    std::gamma_distribution<double> gamma(shape, 1.0);
    return std::log(std::max(gamma(rng), std::numeric_limits<double>::min()));
  }
  std::gamma_distribution<double> gamma(shape + 1.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double u = uniform(rng);
  while (u <= 0.0) u = uniform(rng);
  return std::log(std::max(gamma(rng), std::numeric_limits<double>::min())) + std::log(u) / shape;
}

ClientIndices PartitionDirichlet(const std::vector<int64_t>& labels, int num_classes,
                                 int64_t num_clients, double alpha, std::mt19937_64& rng) {
  const int64_t n = static_cast<int64_t>(labels.size());
  // Per-class pools, shuffled so that drawing without replacement is popping from the back.
  std::vector<std::vector<int64_t>> pools(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < n; ++i) pools[static_cast<size_t>(labels[i])].push_back(i);
  for (auto& pool : pools) std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<double> prior(static_cast<size_t>(num_classes));
  for (int k = 0; k < num_classes; ++k) {
    prior[k] = static_cast<double>(pools[k].size()) / static_cast<double>(n);
  }

  ClientIndices out(static_cast<size_t>(num_clients));
  std::vector<double> q(static_cast<size_t>(num_classes));
  std::vector<double> weight(static_cast<size_t>(num_classes));
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int64_t c = 0; c < num_clients; ++c) {
    // q ~ Dir(alpha * K * p) via normalised Gammas; classes absent from the data get no mass.
    double max_log = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < num_classes; ++k) {
      q[k] = prior[k] > 0 ? LogGamma(alpha * num_classes * prior[k], rng)
                          : -std::numeric_limits<double>::infinity();
      max_log = std::max(max_log, q[k]);
    }
    for (int k = 0; k < num_classes; ++k) q[k] = std::exp(q[k] - max_log);

    const int64_t size = PartSize(n, num_clients, c);
    std::vector<int64_t>& mine = out[static_cast<size_t>(c)];
    mine.reserve(static_cast<size_t>(size));
    for (int64_t j = 0; j < size; ++j) {
      // Renormalise q over the classes that still have examples. If q has no mass left there,
      // fall back to what remains, so every example is still assigned.
      double total = 0;
      for (int k = 0; k < num_classes; ++k) {
        weight[k] = pools[k].empty() ? 0.0 : q[k];
        total += weight[k];
      }
      if (!(total > 0)) {
        total = 0;
        for (int k = 0; k < num_classes; ++k) {
          weight[k] = static_cast<double>(pools[k].size());
          total += weight[k];
        }
      }
      const double target = uniform(rng) * total;
      int chosen = -1;
      double acc = 0;
      for (int k = 0; k < num_classes; ++k) {
        if (weight[k] <= 0) continue;
        chosen = k;  // rounding can leave target >= the final sum; take the last candidate then
        acc += weight[k];
        if (target < acc) break;
      }
      mine.push_back(pools[chosen].back());
      pools[chosen].pop_back();
    }
  }
  return out;
}

ClientIndices PartitionShards(const std::vector<int64_t>& labels, int64_t num_clients, int shards,
                              std::mt19937_64& rng) {
  const int64_t n = static_cast<int64_t>(labels.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&labels](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  const int64_t num_shards = num_clients * shards;
  std::vector<int64_t> shard_ids(static_cast<size_t>(num_shards));
  std::iota(shard_ids.begin(), shard_ids.end(), 0);
  std::shuffle(shard_ids.begin(), shard_ids.end(), rng);

  ClientIndices out(static_cast<size_t>(num_clients));
  for (int64_t c = 0; c < num_clients; ++c) {
    for (int s = 0; s < shards; ++s) {
      const int64_t shard = shard_ids[static_cast<size_t>(c * shards + s)];
      // Contiguous shards of near-equal size: the first n % num_shards are one longer.
      const int64_t begin = shard * (n / num_shards) + std::min(shard, n % num_shards);
      const int64_t end = begin + PartSize(n, num_shards, shard);
      out[static_cast<size_t>(c)].insert(out[static_cast<size_t>(c)].end(), order.begin() + begin,
                                         order.begin() + end);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<PartitionSpec> ParsePartitionSpec(std::string_view text_in) {
  // This absl build has its own string_view type, distinct from std::string_view.
  const absl::string_view text(text_in.data(), text_in.size());
  PartitionSpec spec;
  if (text == "iid") {
    spec.kind = PartitionSpec::Kind::kIid;
    return spec;
  }
  if (text == "natural") {
    spec.kind = PartitionSpec::Kind::kNatural;
    return spec;
  }
  absl::string_view arg = text;
  if (absl::ConsumePrefix(&arg, "dirichlet:")) {
    double alpha = 0;
    if (!absl::SimpleAtod(arg, &alpha) || !std::isfinite(alpha)) {
      return BadSpec(text, "ALPHA is not a number");
    }
    if (!(alpha > 0)) return BadSpec(text, "ALPHA must be > 0");
    spec.kind = PartitionSpec::Kind::kDirichlet;
    spec.alpha = alpha;
    return spec;
  }
  if (absl::ConsumePrefix(&arg, "shards:")) {
    int shards = 0;
    if (!absl::SimpleAtoi(arg, &shards)) return BadSpec(text, "S is not an integer");
    if (shards < 1) return BadSpec(text, "S must be >= 1");
    spec.kind = PartitionSpec::Kind::kShards;
    spec.shards = shards;
    return spec;
  }
  return BadSpec(text, "unknown partition kind");
}

absl::StatusOr<std::vector<std::vector<int64_t>>> Partition(const std::vector<int64_t>& labels,
                                                            int num_classes, int64_t num_clients,
                                                            const PartitionSpec& spec,
                                                            uint64_t seed) {
  const int64_t n = static_cast<int64_t>(labels.size());
  if (spec.kind == PartitionSpec::Kind::kNatural) {
    return absl::InvalidArgumentError(
        "partition \"natural\" uses a dataset's own client split and cannot re-partition a "
        "centralized dataset; use iid, dirichlet:ALPHA or shards:S");
  }
  if (num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_clients must be >= 1, got ", num_clients));
  }
  if (num_clients > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_clients (", num_clients, ") exceeds the number of examples (", n, ")"));
  }
  if (num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_classes must be >= 1, got ", num_classes));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", labels[i], " at index ", i, " is outside [0, ", num_classes, ")"));
    }
  }

  std::mt19937_64 rng(DeriveSeed(seed, {kPartitionStream}));
  ClientIndices out;
  switch (spec.kind) {
    case PartitionSpec::Kind::kIid:
      out = PartitionIid(n, num_clients, rng);
      break;
    case PartitionSpec::Kind::kDirichlet:
      if (!(spec.alpha > 0) || !std::isfinite(spec.alpha)) {
        return absl::InvalidArgumentError(
            absl::StrCat("dirichlet alpha must be a finite number > 0, got ", spec.alpha));
      }
      out = PartitionDirichlet(labels, num_classes, num_clients, spec.alpha, rng);
      break;
    case PartitionSpec::Kind::kShards:
      if (spec.shards < 1) {
        return absl::InvalidArgumentError(absl::StrCat("shards must be >= 1, got ", spec.shards));
      }
      if (spec.shards > n / num_clients) {
        return absl::InvalidArgumentError(
            absl::StrCat("shards:", spec.shards, " x ", num_clients, " clients needs at least ",
                         spec.shards * num_clients, " examples, have ", n));
      }
      out = PartitionShards(labels, num_clients, spec.shards, rng);
      break;
    case PartitionSpec::Kind::kNatural:
      break;  // rejected above
  }
  // Ascending indices: cheaper Select() and an order independent of the draw sequence.
  for (auto& client : out) std::sort(client.begin(), client.end());
  return out;
}

}  // namespace fedkit::data
