#include "data/federated_dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/sampling.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "data/examples.h"
#include "data/idx.h"
#include "data/leaf.h"
#include "data/natural_dataset.h"
#include "data/partition.h"
#include "data/synthetic.h"

namespace fedkit::data {
namespace {

constexpr uint64_t kEvalClientsStream = 0x6576616c;  // "eval"

absl::Status BadDatasetSpec(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid dataset spec \"", text, "\": ", why,
                   " (expected fmnist, synthetic:ALPHA,BETA, leaf:PATH or tensors:PATH)"));
}

// A centralized dataset split by index lists; clients' examples are copied out on demand.
class PartitionedDataset : public FederatedDataset {
 public:
  // `partition` and `seed` only matter for noise:SIGMA, whose feature noise is added here.
  PartitionedDataset(DatasetInfo info, Examples train, std::vector<std::vector<int64_t>> indices,
                     Examples eval, PartitionSpec partition = {}, uint64_t seed = 0)
      : info_(std::move(info)),
        train_(std::move(train)),
        indices_(std::move(indices)),
        eval_(std::move(eval)),
        partition_(partition),
        seed_(seed) {}

  int64_t num_clients() const override { return static_cast<int64_t>(indices_.size()); }
  const DatasetInfo& info() const override { return info_; }
  int64_t NumTrainExamples(int64_t client) const override {
    if (client < 0 || client >= num_clients()) return 0;
    return static_cast<int64_t>(indices_[static_cast<size_t>(client)].size());
  }
  Examples TrainExamples(int64_t client) const override {
    if (client < 0 || client >= num_clients()) return Examples{train_.feature_dim, {}, {}};
    Examples out = train_.Select(indices_[static_cast<size_t>(client)]);
    AddClientFeatureNoise(partition_, client, num_clients(), seed_, &out.features);
    return out;
  }
  const Examples& EvalExamples() const override { return eval_; }

 private:
  DatasetInfo info_;
  Examples train_;
  std::vector<std::vector<int64_t>> indices_;
  Examples eval_;
  PartitionSpec partition_;
  uint64_t seed_;
};

class SyntheticDataset : public FederatedDataset {
 public:
  SyntheticDataset(SyntheticData data, Examples eval)
      : data_(std::move(data)), info_(data_.info()), eval_(std::move(eval)) {}

  int64_t num_clients() const override { return data_.num_clients(); }
  const DatasetInfo& info() const override { return info_; }
  int64_t NumTrainExamples(int64_t client) const override { return data_.NumTrainExamples(client); }
  Examples TrainExamples(int64_t client) const override { return data_.TrainExamples(client); }
  const Examples& EvalExamples() const override { return eval_; }
  bool has_client_test_examples() const override { return true; }
  Examples ClientTestExamples(int64_t client) const override {
    if (client < 0 || client >= num_clients()) return FederatedDataset::ClientTestExamples(client);
    return data_.TestExamples(client);
  }

 private:
  SyntheticData data_;
  DatasetInfo info_;
  Examples eval_;
};

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeSynthetic(
    const FederatedDatasetOptions& options) {
  if (options.partition.kind != PartitionSpec::Kind::kNatural) {
    return absl::InvalidArgumentError(
        "the synthetic dataset has its own per-device split; use --partition natural");
  }
  if (options.synthetic_eval_clients < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic_eval_clients must be >= 1, got ", options.synthetic_eval_clients));
  }
  SyntheticData::Options synth;
  synth.alpha = options.dataset.synthetic_alpha;
  synth.beta = options.dataset.synthetic_beta;
  synth.num_clients = options.num_clients;
  synth.seed = options.seed;
  FEDKIT_ASSIGN_OR_RETURN(SyntheticData data, SyntheticData::Create(synth));

  Examples eval;
  eval.feature_dim = SyntheticData::kFeatureDim;
  for (int64_t client : SampleIndices(options.num_clients, options.synthetic_eval_clients,
                                      DeriveSeed(options.seed, {kEvalClientsStream}))) {
    Examples test = data.TestExamples(client);
    eval.features.insert(eval.features.end(), test.features.begin(), test.features.end());
    eval.labels.insert(eval.labels.end(), test.labels.begin(), test.labels.end());
  }
  return std::make_unique<SyntheticDataset>(std::move(data), std::move(eval));
}

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeLeaf(const FederatedDatasetOptions& options) {
  if (options.partition.kind != PartitionSpec::Kind::kNatural) {
    return absl::InvalidArgumentError(
        "LEAF data has its own per-user split; use --partition natural");
  }
  FEDKIT_ASSIGN_OR_RETURN(NaturalDatasetParts parts, ReadLeaf(options.dataset.path));
  return MakeNaturalDataset(std::move(parts), options.num_clients);
}

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeFashionMnist(
    const FederatedDatasetOptions& options) {
  // Checked before loading so a bad flag fails fast.
  if (options.partition.kind == PartitionSpec::Kind::kNatural) {
    return absl::InvalidArgumentError(
        "Fashion-MNIST has no natural client split; use --partition iid, dirichlet:ALPHA, "
        "shards:S, labels:K, quantity:BETA or noise:SIGMA");
  }
  const std::string dir = options.data_dir.empty() ? kDefaultFashionMnistDir : options.data_dir;
  DatasetInfo info;
  FEDKIT_ASSIGN_OR_RETURN(Examples train, LoadFashionMnist(dir, Split::kTrain, &info));
  FEDKIT_ASSIGN_OR_RETURN(Examples test, LoadFashionMnist(dir, Split::kTest));
  auto indices = Partition(train.labels, info.num_classes, options.num_clients, options.partition,
                           options.seed);
  if (!indices.ok()) {
    return absl::Status(
        indices.status().code(),
        absl::StrCat("partitioning Fashion-MNIST from ", dir, ": ", indices.status().message()));
  }
  return std::make_unique<PartitionedDataset>(std::move(info), std::move(train),
                                              *std::move(indices), std::move(test),
                                              options.partition, options.seed);
}

}  // namespace

Examples FederatedDataset::ClientTestExamples(int64_t /*client*/) const {
  Examples none;
  none.feature_dim = info().feature_dim();
  none.target_dim = info().target_dim;
  return none;
}

absl::StatusOr<DatasetSpec> ParseDatasetSpec(std::string_view text_in) {
  // This absl build has its own string_view type, distinct from std::string_view.
  const absl::string_view text(text_in.data(), text_in.size());
  DatasetSpec spec;
  if (text == "fmnist") {
    spec.kind = DatasetSpec::Kind::kFashionMnist;
    return spec;
  }
  absl::string_view args = text;
  for (auto [prefix, kind] : {std::pair{"leaf:", DatasetSpec::Kind::kLeaf},
                              std::pair{"tensors:", DatasetSpec::Kind::kTensors}}) {
    if (absl::ConsumePrefix(&args, prefix)) {
      if (args.empty()) return BadDatasetSpec(text, "the path is empty");
      spec.kind = kind;
      spec.path = std::string(args);
      return spec;
    }
  }
  if (!absl::ConsumePrefix(&args, "synthetic:")) {
    return BadDatasetSpec(text, "unknown dataset");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(args, ',');
  if (parts.size() != 2) return BadDatasetSpec(text, "synthetic needs exactly ALPHA,BETA");
  double values[2];
  for (int i = 0; i < 2; ++i) {
    if (!absl::SimpleAtod(parts[i], &values[i]) || !std::isfinite(values[i])) {
      return BadDatasetSpec(text, absl::StrCat("\"", parts[i], "\" is not a number"));
    }
    if (values[i] < 0) return BadDatasetSpec(text, "ALPHA and BETA must be >= 0");
  }
  spec.kind = DatasetSpec::Kind::kSynthetic;
  spec.synthetic_alpha = values[0];
  spec.synthetic_beta = values[1];
  return spec;
}

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeFederatedDataset(
    const FederatedDatasetOptions& options) {
  const bool from_file = options.dataset.kind == DatasetSpec::Kind::kLeaf ||
                         options.dataset.kind == DatasetSpec::Kind::kTensors;
  if (options.num_clients < (from_file ? 0 : 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_clients must be >= 1, got ", options.num_clients));
  }
  switch (options.dataset.kind) {
    case DatasetSpec::Kind::kSynthetic:
      return MakeSynthetic(options);
    case DatasetSpec::Kind::kFashionMnist:
      return MakeFashionMnist(options);
    case DatasetSpec::Kind::kLeaf:
      return MakeLeaf(options);
    case DatasetSpec::Kind::kTensors:
      return absl::InvalidArgumentError(
          "tensors:PATH needs LibTorch to read; use models::MakeFederatedDatasetWithTensors");
  }
  return absl::InvalidArgumentError("unknown dataset kind");
}

}  // namespace fedkit::data
