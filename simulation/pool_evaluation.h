// The simulators' workers: one model per worker (MakeWorkerTrainers), and the evaluation of one
// parameter vector on a worker pool (EvaluateOnPool): the examples in chunks of 1,000, one chunk
// at a time per worker, each worker on its own trainer's model, the sums added in chunk order (so
// the result is the same for any number of workers).
//
// Thread safety: call from one thread at a time (the pool runs the chunks); `trainers` must have
// one entry per worker and is not used by anything else meanwhile.
#ifndef FEDKIT_SIMULATION_POOL_EVALUATION_H_
#define FEDKIT_SIMULATION_POOL_EVALUATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/local_trainer.h"
#include "data/examples.h"
#include "data/federated_dataset.h"
#include "models/evaluate.h"
#include "simulation/worker_pool.h"

namespace fedkit::simulation {

// One LocalTrainer per worker, each owning its own instance of `model` (models::CreateModel)
// initialized from `init_seed`. Errors as models::CreateModel (e.g. NOT_FOUND for an unknown model
// name or file).
absl::StatusOr<std::vector<std::unique_ptr<client::LocalTrainer>>> MakeWorkerTrainers(
    const std::string& model, const data::DatasetInfo& info, uint64_t init_seed, int workers);

// The summed loss and accuracy of `parameters` on `examples`. Errors as models::AssignParameters
// (INVALID_ARGUMENT for a vector of the wrong size) and models::EvaluateRange.
absl::StatusOr<models::EvalSums> EvaluateOnPool(
    WorkerPool& pool, const std::vector<std::unique_ptr<client::LocalTrainer>>& trainers,
    absl::Span<const float> parameters, const data::Examples& examples);

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_POOL_EVALUATION_H_
