// Evaluating a classifier on labelled examples.
#ifndef FEDKIT_MODELS_EVALUATE_H_
#define FEDKIT_MODELS_EVALUATE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "data/examples.h"
#include "models/model.h"

namespace fedkit::models {

// Sums over a range of examples; sums from disjoint ranges add up (combine them in a fixed order
// for reproducible totals).
struct EvalSums {
  double loss_sum = 0.0;  // summed cross-entropy (regression: summed per-example mean squared error)
  int64_t correct = 0;  // classification only: regression leaves it 0, so accuracy() is 0
  int64_t count = 0;

  void Add(const EvalSums& other);
  double accuracy() const { return count ? static_cast<double>(correct) / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
};

// Evaluates `model` on examples [begin, end) in minibatches. INVALID_ARGUMENT for a bad range;
// INTERNAL if LibTorch fails (e.g. features that do not fit the model).
absl::StatusOr<EvalSums> EvaluateRange(Model& model, const data::Examples& examples, int64_t begin,
                                       int64_t end);

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_EVALUATE_H_
