// A population of clients, each holding training examples, plus a central evaluation set.
#ifndef FEDKIT_DATA_FEDERATED_DATASET_H_
#define FEDKIT_DATA_FEDERATED_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "data/examples.h"
#include "data/partition.h"

namespace fedkit::data {

// Clients are indices in [0, num_clients()). All methods are const and safe to call concurrently.
class FederatedDataset {
 public:
  virtual ~FederatedDataset() = default;

  virtual int64_t num_clients() const = 0;
  virtual const DatasetInfo& info() const = 0;
  virtual int64_t NumTrainExamples(int64_t client) const = 0;
  // A copy of the client's training examples (generated on demand where the dataset is synthetic).
  virtual Examples TrainExamples(int64_t client) const = 0;
  // The held-out set the global model is evaluated on.
  virtual const Examples& EvalExamples() const = 0;

  // Whether the data brings each client's own test examples (Synthetic's per-device test split,
  // LEAF's per-user test data, the natural datasets' held-out rows), which per-client evaluation
  // (data/local_eval_split.h) then uses instead of splitting the training examples. Default: no.
  virtual bool has_client_test_examples() const { return false; }
  // A copy of the client's own test examples: empty when has_client_test_examples() is false, for
  // a client without any, and for an index out of range.
  virtual Examples ClientTestExamples(int64_t client) const;
};

// Which dataset to build and how to split it.
struct DatasetSpec {
  // kLeaf: LEAF JSON (data/leaf.h). kTensors: a torch.save file of x/y/client tensors, read by
  // models/tensor_file.h (LibTorch), not by MakeFederatedDataset.
  enum class Kind { kFashionMnist, kSynthetic, kLeaf, kTensors };
  Kind kind = Kind::kFashionMnist;
  double synthetic_alpha = 0.0;  // kSynthetic
  double synthetic_beta = 0.0;   // kSynthetic
  std::string path;              // kLeaf, kTensors: the file or directory
};

// Parses "fmnist", "synthetic:ALPHA,BETA" (both >= 0), "leaf:PATH" or "tensors:PATH" (PATH
// non-empty). INVALID_ARGUMENT quoting the text otherwise.
absl::StatusOr<DatasetSpec> ParseDatasetSpec(std::string_view text);

struct FederatedDatasetOptions {
  DatasetSpec dataset;
  std::string data_dir;  // Fashion-MNIST directory; empty = kDefaultFashionMnistDir
  // LEAF and tensor files: at most this many clients (the first ones), 0 = all of them.
  int64_t num_clients = 100;
  PartitionSpec partition;  // Fashion-MNIST: iid/dirichlet/shards; the others: natural only
  uint64_t seed = 0;
  // Synthetic only: the eval set is the union of the test splits of this many clients (chosen by
  // seed; all clients if the population is smaller), so evaluation cost does not grow with
  // population.
  int64_t synthetic_eval_clients = 1000;
};

// Builds the dataset. Fashion-MNIST: the train split partitioned, the test split as the eval set.
// LEAF: one client per user (data/leaf.h, data/natural_dataset.h). kTensors needs LibTorch:
// INVALID_ARGUMENT here, use models::MakeFederatedDatasetWithTensors. Errors name the file or the
// option at fault.
absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeFederatedDataset(
    const FederatedDatasetOptions& options);

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_FEDERATED_DATASET_H_
