#include "data/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <utility>
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
                   "labels:K with K >= 1, quantity:BETA with BETA > 0, noise:SIGMA with SIGMA >= "
                   "0, or natural)"));
}

// Feature noise draws: one stream per client, unrelated to the partition draws.
constexpr uint64_t kFeatureNoiseStream = 0x6e6f697365;  // "noise"

// NIID-Bench's quantity skew re-draws until every client has at least this many examples; we
// give every client this floor instead (or labels.size() / num_clients if that is smaller).
constexpr int64_t kQuantityMinSize = 10;

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

// NIID-Bench's "#C=K". `present` lists the labels that occur, ascending; K <= present.size() and
// num_clients * K >= present.size() have been checked.
ClientIndices PartitionLabels(const std::vector<int64_t>& labels, int num_classes,
                              int64_t num_clients, int k, const std::vector<int>& present,
                              std::mt19937_64& rng) {
  const size_t p = present.size();
  // held[c]: the labels client c holds (positions in `present`); first i mod P for every client,
  // so that the extra draws below can tell which labels still lack a holder.
  std::vector<std::vector<size_t>> held(static_cast<size_t>(num_clients));
  std::vector<int64_t> holders(p, 0);
  for (int64_t c = 0; c < num_clients; ++c) {
    const size_t first = static_cast<size_t>(c) % p;
    held[static_cast<size_t>(c)].push_back(first);
    ++holders[first];
  }
  std::vector<size_t> candidates;
  candidates.reserve(p);
  for (int64_t c = 0; c < num_clients; ++c) {
    std::vector<size_t>& mine = held[static_cast<size_t>(c)];
    for (int j = 1; j < k; ++j) {
      // Labels nobody holds first (none once num_clients >= P), else any label this client lacks.
      candidates.clear();
      for (size_t l = 0; l < p; ++l) {
        if (holders[l] == 0) candidates.push_back(l);
      }
      if (candidates.empty()) {
        for (size_t l = 0; l < p; ++l) {
          if (std::find(mine.begin(), mine.end(), l) == mine.end()) candidates.push_back(l);
        }
      }
      std::uniform_int_distribution<size_t> pick(0, candidates.size() - 1);
      const size_t chosen = candidates[pick(rng)];
      mine.push_back(chosen);
      ++holders[chosen];
    }
  }

  std::vector<std::vector<int64_t>> pools(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < static_cast<int64_t>(labels.size()); ++i) {
    pools[static_cast<size_t>(labels[static_cast<size_t>(i)])].push_back(i);
  }
  ClientIndices out(static_cast<size_t>(num_clients));
  std::vector<int64_t> next_part(p, 0);  // how many holders of each label have had their part
  std::vector<int64_t> offset(p, 0);     // where in the label's shuffled pool the next part starts
  for (size_t l = 0; l < p; ++l) {
    auto& pool = pools[static_cast<size_t>(present[l])];
    std::shuffle(pool.begin(), pool.end(), rng);
  }
  for (int64_t c = 0; c < num_clients; ++c) {
    for (size_t l : held[static_cast<size_t>(c)]) {
      const auto& pool = pools[static_cast<size_t>(present[l])];
      const int64_t size = PartSize(static_cast<int64_t>(pool.size()), holders[l], next_part[l]++);
      out[static_cast<size_t>(c)].insert(out[static_cast<size_t>(c)].end(),
                                         pool.begin() + offset[l], pool.begin() + offset[l] + size);
      offset[l] += size;
    }
  }
  return out;
}

ClientIndices PartitionQuantity(int64_t n, int64_t num_clients, double beta, std::mt19937_64& rng) {
  // q ~ Dir(beta, ..., beta) via normalised Gammas in log space (beta = 0.01 would underflow).
  std::vector<double> q(static_cast<size_t>(num_clients));
  double max_log = -std::numeric_limits<double>::infinity();
  for (auto& v : q) {
    v = LogGamma(beta, rng);
    max_log = std::max(max_log, v);
  }
  double total = 0;
  for (auto& v : q) {
    v = std::exp(v - max_log);
    total += v;
  }
  const int64_t floor_size = std::min(kQuantityMinSize, n / num_clients);
  const int64_t rest = n - floor_size * num_clients;
  // Largest-remainder rounding of q * rest; ties go to the lower client index.
  std::vector<int64_t> sizes(static_cast<size_t>(num_clients), floor_size);
  std::vector<std::pair<double, int64_t>> remainders(static_cast<size_t>(num_clients));
  int64_t assigned = 0;
  for (int64_t c = 0; c < num_clients; ++c) {
    const double share = q[static_cast<size_t>(c)] / total * static_cast<double>(rest);
    const int64_t whole = std::min(static_cast<int64_t>(std::floor(share)), rest - assigned);
    sizes[static_cast<size_t>(c)] += whole;
    assigned += whole;
    remainders[static_cast<size_t>(c)] = {share - static_cast<double>(whole), c};
  }
  std::sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  // rest - assigned < num_clients, since every floor loses less than one.
  for (int64_t j = 0; assigned < rest; ++j, ++assigned) {
    ++sizes[static_cast<size_t>(remainders[static_cast<size_t>(j % num_clients)].second)];
  }

  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  ClientIndices out(static_cast<size_t>(num_clients));
  auto it = order.begin();
  for (int64_t c = 0; c < num_clients; ++c) {
    out[static_cast<size_t>(c)].assign(it, it + sizes[static_cast<size_t>(c)]);
    it += sizes[static_cast<size_t>(c)];
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
  if (absl::ConsumePrefix(&arg, "labels:")) {
    int k = 0;
    if (!absl::SimpleAtoi(arg, &k)) return BadSpec(text, "K is not an integer");
    if (k < 1) return BadSpec(text, "K must be >= 1");
    spec.kind = PartitionSpec::Kind::kLabels;
    spec.labels = k;
    return spec;
  }
  if (absl::ConsumePrefix(&arg, "quantity:")) {
    double beta = 0;
    if (!absl::SimpleAtod(arg, &beta) || !std::isfinite(beta)) {
      return BadSpec(text, "BETA is not a number");
    }
    if (!(beta > 0)) return BadSpec(text, "BETA must be > 0");
    spec.kind = PartitionSpec::Kind::kQuantity;
    spec.beta = beta;
    return spec;
  }
  if (absl::ConsumePrefix(&arg, "noise:")) {
    double sigma = 0;
    if (!absl::SimpleAtod(arg, &sigma) || !std::isfinite(sigma)) {
      return BadSpec(text, "SIGMA is not a number");
    }
    if (!(sigma >= 0)) return BadSpec(text, "SIGMA must be >= 0");
    spec.kind = PartitionSpec::Kind::kNoise;
    spec.sigma = sigma;
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
        "centralized dataset; use iid, dirichlet:ALPHA, shards:S, labels:K, quantity:BETA or "
        "noise:SIGMA");
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
    case PartitionSpec::Kind::kLabels: {
      if (spec.labels < 1 || spec.labels > num_classes) {
        return absl::InvalidArgumentError(absl::StrCat("labels:", spec.labels,
                                                       ": K must be in [1, ", num_classes,
                                                       "] (the number of classes)"));
      }
      std::vector<bool> occurs(static_cast<size_t>(num_classes), false);
      for (int64_t label : labels) occurs[static_cast<size_t>(label)] = true;
      std::vector<int> present;
      for (int k = 0; k < num_classes; ++k) {
        if (occurs[static_cast<size_t>(k)]) present.push_back(k);
      }
      const int64_t p = static_cast<int64_t>(present.size());
      if (spec.labels > p) {
        return absl::InvalidArgumentError(absl::StrCat("labels:", spec.labels, ": only ", p,
                                                       " distinct labels occur in the data"));
      }
      if (num_clients * spec.labels < p) {
        return absl::InvalidArgumentError(
            absl::StrCat("labels:", spec.labels, " x ", num_clients, " clients holds at most ",
                         num_clients * spec.labels, " of the ", p,
                         " labels present; some examples would have no client"));
      }
      out = PartitionLabels(labels, num_classes, num_clients, spec.labels, present, rng);
      for (size_t c = 0; c < out.size(); ++c) {
        if (out[c].empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("labels:", spec.labels, ": client ", c,
                           " gets no example (its labels have fewer examples than holders)"));
        }
      }
      break;
    }
    case PartitionSpec::Kind::kQuantity:
      if (!(spec.beta > 0) || !std::isfinite(spec.beta)) {
        return absl::InvalidArgumentError(
            absl::StrCat("quantity beta must be a finite number > 0, got ", spec.beta));
      }
      out = PartitionQuantity(n, num_clients, spec.beta, rng);
      break;
    case PartitionSpec::Kind::kNoise:
      if (!(spec.sigma >= 0) || !std::isfinite(spec.sigma)) {
        return absl::InvalidArgumentError(
            absl::StrCat("noise sigma must be a finite number >= 0, got ", spec.sigma));
      }
      out = PartitionIid(n, num_clients, rng);
      break;
    case PartitionSpec::Kind::kNatural:
      break;  // rejected above
  }
  // Ascending indices: cheaper Select() and an order independent of the draw sequence.
  for (auto& client : out) std::sort(client.begin(), client.end());
  return out;
}

double ClientFeatureNoiseStd(const PartitionSpec& spec, int64_t client, int64_t num_clients) {
  if (spec.kind != PartitionSpec::Kind::kNoise || client < 0 || client >= num_clients) return 0.0;
  return spec.sigma * static_cast<double>(client) / static_cast<double>(num_clients);
}

void AddClientFeatureNoise(const PartitionSpec& spec, int64_t client, int64_t num_clients,
                           uint64_t seed, std::vector<float>* features) {
  const double stddev = ClientFeatureNoiseStd(spec, client, num_clients);
  if (!(stddev > 0) || !std::isfinite(stddev) || features == nullptr) return;
  std::mt19937_64 rng(
      DeriveSeed(seed, {kPartitionStream, kFeatureNoiseStream, static_cast<uint64_t>(client)}));
  std::normal_distribution<double> noise(0.0, stddev);
  for (float& x : *features) x = static_cast<float>(x + noise(rng));
}

}  // namespace fedkit::data
