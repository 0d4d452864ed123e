#include "simulation/pool_evaluation.h"

#include <algorithm>

#include "core/status_macros.h"
#include "models/flat_params.h"
#include "models/model.h"

namespace fedkit::simulation {
namespace {

constexpr int64_t kEvalChunk = 1000;

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<client::LocalTrainer>>> MakeWorkerTrainers(
    const std::string& model, const data::DatasetInfo& info, uint64_t init_seed, int workers) {
  std::vector<std::unique_ptr<client::LocalTrainer>> trainers;
  for (int w = 0; w < workers; ++w) {
    FEDKIT_ASSIGN_OR_RETURN(auto instance, models::CreateModel(model, info, init_seed));
    trainers.push_back(std::make_unique<client::LocalTrainer>(std::move(instance)));
  }
  return trainers;
}

absl::StatusOr<models::EvalSums> EvaluateOnPool(
    WorkerPool& pool, const std::vector<std::unique_ptr<client::LocalTrainer>>& trainers,
    absl::Span<const float> parameters, const data::Examples& examples) {
  const int64_t chunks = (examples.size() + kEvalChunk - 1) / kEvalChunk;
  models::EvalSums total;
  FEDKIT_RETURN_IF_ERROR(RunOrdered<models::EvalSums>(
      pool, chunks, chunks,
      [&](int worker, int64_t chunk) -> absl::StatusOr<models::EvalSums> {
        models::Model& model = trainers[worker]->model();
        FEDKIT_RETURN_IF_ERROR(models::AssignParameters(parameters, model));
        return models::EvaluateRange(model, examples, chunk * kEvalChunk,
                                     std::min(examples.size(), (chunk + 1) * kEvalChunk));
      },
      [&](int64_t, models::EvalSums sums) -> absl::Status {
        total.Add(sums);
        return absl::OkStatus();
      }));
  return total;
}

}  // namespace fedkit::simulation
