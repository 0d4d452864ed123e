// The client update: local SGD on a device's examples, returning the clipped model delta.
// Shared by the simulator's virtual clients and the real client library.
#ifndef FEDKIT_CLIENT_LOCAL_TRAINER_H_
#define FEDKIT_CLIENT_LOCAL_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
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
  // The round's compute budget (fedkit.v1.TrainingPlan max_steps / max_seconds): training stops
  // after this many minibatch steps, or once this much wall-clock time has passed since it
  // started, checked after each step (so at least one step runs); 0 = no limit. The update of the
  // steps done is returned as usual. max_seconds makes training depend on the machine's speed:
  // a run using it is not reproducible step for step.
  int64_t max_steps = 0;
  double max_seconds = 0.0;
  // How the delta is compressed for upload (compression/update_codec.h); LocalTrainer does not use
  // it: the device library and the simulator encode the delta it returns.
  compression::CompressionSpec compression;
};

struct ClientUpdate {
  std::vector<float> delta;  // trained parameters minus global parameters, clipped
  int64_t num_examples = 0;  // examples the client trained on (the FedAvg weight)
  double train_loss = 0.0;   // mean cross-entropy over all local minibatches (without prox term)
  double delta_norm = 0.0;   // L2 norm of the delta before clipping
  int64_t steps = 0;         // minibatch steps run
  bool budget_exhausted = false;  // stopped early by plan.max_steps or plan.max_seconds
};

// Called by LocalTrainer::Train after each minibatch step (on the training thread) with the steps
// done so far: OK to go on; any other status stops training at once and Train returns it as it is
// (e.g. ABORTED "stopped: device no longer eligible"). Must not throw.
using StopCheck = std::function<absl::Status(int64_t steps_done)>;

// Runs local training on one model instance. A LocalTrainer owns its model and is used by one
// thread at a time; run several trainers for parallelism.
class LocalTrainer {
 public:
  explicit LocalTrainer(std::shared_ptr<models::Model> model);

  // Loads `global_parameters` into the model, runs `plan.local_epochs` passes of minibatch SGD over
  // `examples` (shuffled each epoch by a generator seeded with `seed`), and returns the delta.
  // Stops early at the plan's budget (max_steps, max_seconds): the delta of the steps done, and
  // num_examples counts the examples those steps used (all of them once a whole epoch ran).
  // Deterministic in (global_parameters, examples, plan, seed) for single-threaded LibTorch
  // kernels (and without max_seconds). INVALID_ARGUMENT for a bad plan, no examples, features that
  // do not match the model, or a parameter vector of the wrong size; INTERNAL if LibTorch fails;
  // `should_stop`'s status when it stops training (the model then holds half-trained parameters:
  // do not use them as a global model).
  // `gradient_correction`: empty, or one value per parameter (in FlattenParameters order),
  // SCAFFOLD's c - c_i (Karimireddy et al. 2020): after every optimizer step the parameters also
  // move by -learning_rate x correction. With plain SGD that is y <- y - lr (grad(y) + c - c_i);
  // with momentum the correction stays outside the momentum buffer, as NIID-Bench's SCAFFOLD
  // applies it (c_i = (x - y) / (K lr) already carries the momentum's amplification). Borrowed for
  // the call. INVALID_ARGUMENT if its size is not the parameter count. Empty trains exactly as
  // without it.
  absl::StatusOr<ClientUpdate> Train(absl::Span<const float> global_parameters,
                                     const data::Examples& examples, const TrainingPlan& plan,
                                     uint64_t seed, const StopCheck& should_stop = {},
                                     absl::Span<const float> gradient_correction = {});

  models::Model& model() { return *model_; }

 private:
  std::shared_ptr<models::Model> model_;
};

// The seed of a client's local training (minibatch shuffling) in a round: a function of the run's
// seed, the round and the client's index only, so a simulated client and a real device with the
// same index train identically.
uint64_t LocalTrainingSeed(uint64_t run_seed, int64_t round, int64_t client_index);

// The example passes (minibatch rows, summed over the steps) local training makes over `examples`
// examples under `plan`: examples x local_epochs, or fewer when plan.max_steps stops it first
// (plan.max_seconds depends on the machine and is not counted). The simulator's virtual time
// (--device-speeds) uses it.
int64_t ExamplePasses(int64_t examples, const TrainingPlan& plan);

// Validates a plan's numbers (epochs >= 1, batch >= 1, lr > 0, momentum in [0, 1), mu >= 0,
// clip >= 0, max_steps >= 0, max_seconds finite and >= 0); the message names the field.
absl::Status ValidateTrainingPlan(const TrainingPlan& plan);

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_LOCAL_TRAINER_H_
