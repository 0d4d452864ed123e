// The client update: local SGD on a device's examples, returning the clipped model delta.
// Shared by the simulator's virtual clients and the real client library.
#ifndef FEDKIT_CLIENT_LOCAL_TRAINER_H_
#define FEDKIT_CLIENT_LOCAL_TRAINER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compression/spec.h"
#include "data/examples.h"
#include "models/model.h"

namespace fedkit::client {

// What the server asks a client to do in a round.
struct TrainingPlan {
  int local_epochs = 1;
  int batch_size = 10;
  double learning_rate = 0.1;
  double momentum = 0.0;
  // FedProx (Li et al. 2020): adds (mu/2) * ||w - w_global||^2 to the local objective. 0 = FedAvg.
  double prox_mu = 0.0;
  // L2 bound on the returned delta; 0 = no clipping.
  double clip_norm = 0.0;
  // How the delta is compressed for upload (compression/update_codec.h); LocalTrainer does not use
  // it: the device library and the simulator encode the delta it returns.
  compression::CompressionSpec compression;
};

struct ClientUpdate {
  std::vector<float> delta;  // trained parameters minus global parameters, clipped
  int64_t num_examples = 0;  // examples the client trained on (the FedAvg weight)
  double train_loss = 0.0;   // mean cross-entropy over all local minibatches (without prox term)
  double delta_norm = 0.0;   // L2 norm of the delta before clipping
};

// Runs local training on one model instance. A LocalTrainer owns its model and is used by one
// thread at a time; run several trainers for parallelism.
class LocalTrainer {
 public:
  explicit LocalTrainer(std::shared_ptr<models::Model> model);

  // Loads `global_parameters` into the model, runs `plan.local_epochs` passes of minibatch SGD over
  // `examples` (shuffled each epoch by a generator seeded with `seed`), and returns the delta.
  // Deterministic in (global_parameters, examples, plan, seed) for single-threaded LibTorch
  // kernels. INVALID_ARGUMENT for a bad plan, no examples, features that do not match the model, or
  // a parameter vector of the wrong size; INTERNAL if LibTorch fails.
  absl::StatusOr<ClientUpdate> Train(absl::Span<const float> global_parameters,
                                     const data::Examples& examples, const TrainingPlan& plan,
                                     uint64_t seed);

  models::Model& model() { return *model_; }

 private:
  std::shared_ptr<models::Model> model_;
};

// The seed of a client's local training (minibatch shuffling) in a round: a function of the run's
// seed, the round and the client's index only, so a simulated client and a real device with the
// same index train identically.
uint64_t LocalTrainingSeed(uint64_t run_seed, int64_t round, int64_t client_index);

// Validates a plan's numbers (epochs >= 1, batch >= 1, lr > 0, momentum in [0, 1), mu >= 0,
// clip >= 0); the message names the field.
absl::Status ValidateTrainingPlan(const TrainingPlan& plan);

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_LOCAL_TRAINER_H_
