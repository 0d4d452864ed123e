#include "data/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/seeds.h"

namespace fedkit::data {
namespace {

// Independent random streams per client, so counts can be drawn without touching the rest.
constexpr uint64_t kCountStream = 1;
constexpr uint64_t kModelStream = 2;
constexpr uint64_t kExampleStream = 3;

uint64_t Mix(uint64_t seed, uint64_t client, uint64_t stream, uint64_t index = 0) {
  return DeriveSeed(seed, {client, stream, index});
}

}  // namespace

absl::StatusOr<SyntheticData> SyntheticData::Create(const Options& options) {
  // Written as !(x >= 0) so NaN is refused too.
  if (!(options.alpha >= 0) || !std::isfinite(options.alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic alpha must be a finite number >= 0, got ", options.alpha));
  }
  if (!(options.beta >= 0) || !std::isfinite(options.beta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic beta must be a finite number >= 0, got ", options.beta));
  }
  if (options.num_clients < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic num_clients must be >= 1, got ", options.num_clients));
  }
  if (options.max_examples_per_client < 50) {
    return absl::InvalidArgumentError(absl::StrCat(
        "synthetic max_examples_per_client must be >= 50 (the per-device minimum), got ",
        options.max_examples_per_client));
  }
  return SyntheticData(options);
}

int64_t SyntheticData::NumExamples(int64_t client) const {
  if (client < 0 || client >= options_.num_clients) return 0;
  std::mt19937_64 rng(Mix(options_.seed, static_cast<uint64_t>(client), kCountStream));
  std::lognormal_distribution<double> lognormal(4.0, 2.0);
  // Clamp in floating point first: the lognormal tail can exceed int64.
  const double extra = std::floor(lognormal(rng));
  const double cap = static_cast<double>(options_.max_examples_per_client);
  if (!(extra + 50.0 < cap)) return options_.max_examples_per_client;
  return static_cast<int64_t>(extra) + 50;
}

int64_t SyntheticData::NumTrainExamples(int64_t client) const {
  const int64_t n = NumExamples(client);
  if (n == 0) return 0;
  return std::max<int64_t>(1, n * 8 / 10);
}

Examples SyntheticData::TrainExamples(int64_t client) const { return Generate(client, true); }

Examples SyntheticData::TestExamples(int64_t client) const { return Generate(client, false); }

Examples SyntheticData::Generate(int64_t client, bool train) const {
  Examples out;
  out.feature_dim = kFeatureDim;
  if (client < 0 || client >= options_.num_clients) return out;  // contract violation: no data
  const uint64_t c = static_cast<uint64_t>(client);
  const int64_t n = NumExamples(client);
  const int64_t n_train = NumTrainExamples(client);
  const int64_t begin = train ? 0 : n_train;
  const int64_t end = train ? n_train : n;

  // The device's model: W (10x60), b (10) ~ N(u, 1); v (60) ~ N(B, 1).
  std::normal_distribution<double> normal(0.0, 1.0);
  std::mt19937_64 model_rng(Mix(options_.seed, c, kModelStream));
  const double u = std::sqrt(options_.alpha) * normal(model_rng);
  const double big_b = std::sqrt(options_.beta) * normal(model_rng);
  std::array<double, kNumClasses * kFeatureDim> w;
  std::array<double, kNumClasses> b;
  std::array<double, kFeatureDim> v;
  for (double& x : w) x = u + normal(model_rng);
  for (double& x : b) x = u + normal(model_rng);
  for (double& x : v) x = big_b + normal(model_rng);
  std::array<double, kFeatureDim> stddev;
  for (int j = 0; j < kFeatureDim; ++j) stddev[j] = std::pow(j + 1.0, -0.6);  // sqrt(j^-1.2)

  out.features.resize(static_cast<size_t>((end - begin) * kFeatureDim));
  out.labels.resize(static_cast<size_t>(end - begin));
  std::array<double, kFeatureDim> x;
  for (int64_t i = begin; i < end; ++i) {
    // One stream per example, so the test split does not have to replay the training split.
    std::mt19937_64 rng(Mix(options_.seed, c, kExampleStream, static_cast<uint64_t>(i)));
    normal.reset();
    float* row = out.features.data() + (i - begin) * kFeatureDim;
    for (int j = 0; j < kFeatureDim; ++j) {
      // Label from the stored (float) features, so labels are exactly consistent with them.
      row[j] = static_cast<float>(v[j] + stddev[j] * normal(rng));
      x[j] = row[j];
    }
    // argmax of softmax(Wx + b) is the argmax of the logits.
    int best = 0;
    double best_logit = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < kNumClasses; ++k) {
      double logit = b[k];
      for (int j = 0; j < kFeatureDim; ++j) logit += w[k * kFeatureDim + j] * x[j];
      if (logit > best_logit) {
        best_logit = logit;
        best = k;
      }
    }
    out.labels[static_cast<size_t>(i - begin)] = best;
  }
  return out;
}

}  // namespace fedkit::data
