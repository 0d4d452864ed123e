// Cross-client batched local training (fedkit-sim --client-batching N): a group of clients of one
// registered model trained together, their parameters stacked (models/grouped_model.h), one
// forward, backward and SGD step per minibatch step for the whole group. Small models at small
// batch sizes otherwise spend most of their time in LibTorch's per-operator overhead, paid once
// per client per step. For Linear-and-ReLU models (logreg, mlp, seed) the backward pass is a few
// batched products written out (GroupedModel::Gradients) rather than autograd's graph; the
// per-step row indices and loss weights are computed once for all steps.
//
// Each client still trains only on its own examples, from its own copy of the global model, with
// the minibatches LocalTrainer::Train draws for its seed (same shuffles, same step count, same
// budget), the same SGD with momentum and FedProx term, and the same clipping: the returned
// updates equal LocalTrainer's up to float summation order (batched matrix kernels add in another
// order), so they are close but not bit-identical to a device's. That is the trade the flag makes;
// with batching off the simulator reproduces devices bit for bit.
//
// Thread safety: a BatchedTrainer is used by one thread at a time; run one per worker.
#ifndef FEDKIT_SIMULATION_BATCHED_TRAINER_H_
#define FEDKIT_SIMULATION_BATCHED_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/local_trainer.h"
#include "data/examples.h"
#include "models/grouped_model.h"

namespace fedkit::simulation {

class BatchedTrainer {
 public:
  // For the registered model `model` on datasets described by `info`. Errors as
  // models::CreateGroupedModel (UNIMPLEMENTED for a TorchScript file).
  static absl::StatusOr<std::unique_ptr<BatchedTrainer>> Create(std::string model,
                                                                data::DatasetInfo info);

  // Trains clients[i] from `global_parameters` with seeds[i], all together, and returns their
  // updates in order: what LocalTrainer::Train(global_parameters, *clients[i], plan, seeds[i])
  // returns, up to float summation order. INVALID_ARGUMENT for a bad plan (ValidateTrainingPlan),
  // plan.max_seconds > 0 (a wall-clock budget has no meaning for a group), sizes of `clients` and
  // `seeds` that differ, an empty group, a client with no examples, regression examples (the
  // registered models are classifiers) or features of the wrong size, or a parameter vector of the
  // wrong size; INTERNAL if LibTorch fails. The clients' examples are
  // borrowed for the call.
  absl::StatusOr<std::vector<client::ClientUpdate>> Train(
      absl::Span<const float> global_parameters, absl::Span<const data::Examples* const> clients,
      const client::TrainingPlan& plan, absl::Span<const uint64_t> seeds);

 private:
  BatchedTrainer(std::string model, data::DatasetInfo info)
      : model_(std::move(model)), info_(std::move(info)) {}

  std::string model_;
  data::DatasetInfo info_;
  // The last group's stacked model, reused (reloaded) while groups keep its size: most of a
  // round's groups are full, and creating one builds the registered model to read its shapes.
  std::unique_ptr<models::GroupedModel> group_;
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_BATCHED_TRAINER_H_
