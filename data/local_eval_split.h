// Per-client held-out splits, for evaluating a model on each client's own data (personalization
// and fairness studies) rather than only on the dataset's central eval set.
//
// Where the dataset brings each client's own test examples (FederatedDataset::
// has_client_test_examples: Synthetic, LEAF, tensor files) those are the client's held-out split
// and its training examples are unchanged. Otherwise (Fashion-MNIST partitions) each client's
// training examples are split, by a seeded draw per client, into a held-out part of
// LocalHeldOutCount(n, fraction) rows and a training part of the rest, as Flower's examples split
// every partition locally; the client then trains on the training part only.
#ifndef FEDKIT_DATA_LOCAL_EVAL_SPLIT_H_
#define FEDKIT_DATA_LOCAL_EVAL_SPLIT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/examples.h"
#include "data/federated_dataset.h"

namespace fedkit::data {

struct LocalEvalSplitOptions {
  // The share of a client's examples held out, in (0, 1); unused when the dataset has its own
  // per-client test examples.
  double fraction = 0.2;
  uint64_t seed = 0;  // the run's seed: which rows each client holds out
};

// INVALID_ARGUMENT naming `fraction` unless it is in the open interval (0, 1).
absl::Status ValidateLocalEvalSplitOptions(const LocalEvalSplitOptions& options);

// How many of a client's n examples it holds out: 0 when n < 2, else round(fraction * n) kept
// within [1, n - 1], so every client with two or more examples keeps at least one example for
// training and one for evaluation. Requires a valid fraction.
int64_t LocalHeldOutCount(int64_t n, double fraction);

// A client's rows split in two, each list ascending; together they are [0, n) and disjoint.
struct ClientRowSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> held_out;
};

// The split of client `client`'s n rows: LocalHeldOutCount(n, fraction) rows drawn uniformly
// without replacement by a generator seeded from (seed, client), the others for training. A pure
// function of its arguments (the same split on every thread, process and run).
ClientRowSplit SplitClientRows(int64_t n, double fraction, uint64_t seed, int64_t client);

// The base dataset with each client's training examples reduced to their training part (when it
// splits them), plus each client's held-out examples. Borrows `base`, which must outlive it. All
// methods are const and safe to call concurrently (as the base's).
class LocalEvalDataset : public FederatedDataset {
 public:
  // INVALID_ARGUMENT for a null base or an invalid fraction (ValidateLocalEvalSplitOptions).
  static absl::StatusOr<std::unique_ptr<LocalEvalDataset>> Create(
      const FederatedDataset* base, const LocalEvalSplitOptions& options);

  int64_t num_clients() const override { return base_->num_clients(); }
  const DatasetInfo& info() const override { return base_->info(); }
  // Splitting: the training part's size, computed without copying the examples.
  int64_t NumTrainExamples(int64_t client) const override;
  Examples TrainExamples(int64_t client) const override;
  const Examples& EvalExamples() const override { return base_->EvalExamples(); }
  bool has_client_test_examples() const override { return true; }
  // The client's held-out examples (empty for a client with fewer than two examples when
  // splitting).
  Examples ClientTestExamples(int64_t client) const override;

  // Whether the training examples are split (false: the base's own test examples are used).
  bool splits_training_examples() const { return split_; }

 private:
  LocalEvalDataset(const FederatedDataset* base, const LocalEvalSplitOptions& options)
      : base_(base), options_(options), split_(!base->has_client_test_examples()) {}

  const FederatedDataset* base_;
  LocalEvalSplitOptions options_;
  bool split_;
};

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_LOCAL_EVAL_SPLIT_H_
