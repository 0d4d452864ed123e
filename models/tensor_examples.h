// Bridging an app's LibTorch data to FedKit's Examples.
#ifndef FEDKIT_MODELS_TENSOR_EXAMPLES_H_
#define FEDKIT_MODELS_TENSOR_EXAMPLES_H_

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "data/examples.h"
#include "models/torch_status.h"

namespace fedkit::models {

// Copies features [N, ...] (any floating type; flattened per example) and targets into Examples:
// integer class labels [N] (classification), or floating-point targets [N] or [N, k] (regression:
// Examples::target_dim = 1 or k). INVALID_ARGUMENT for mismatched counts, negative labels,
// non-finite regression targets, or complex/bool targets.
absl::StatusOr<data::Examples> ExamplesFromTensors(const torch::Tensor& features,
                                                   const torch::Tensor& labels);

// Reads every example of a map-style LibTorch dataset (one whose get(i) returns
// torch::data::Example<> of a feature tensor and a scalar label tensor) into Examples.
template <typename Dataset>
absl::StatusOr<data::Examples> ExamplesFromDataset(Dataset& dataset) {
  return CallTorch([&]() -> absl::StatusOr<data::Examples> {
    const auto size = dataset.size();
    if (!size.has_value() || *size == 0) {
      return absl::InvalidArgumentError("the dataset has no known, non-zero size");
    }
    std::vector<torch::Tensor> features, labels;
    features.reserve(*size);
    labels.reserve(*size);
    for (size_t i = 0; i < *size; ++i) {
      torch::data::Example<> example = dataset.get(i);
      features.push_back(example.data.unsqueeze(0));
      labels.push_back(example.target.reshape({1}));
    }
    return ExamplesFromTensors(torch::cat(features), torch::cat(labels));
  });
}

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_TENSOR_EXAMPLES_H_
