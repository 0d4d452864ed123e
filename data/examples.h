// In-memory labelled examples and the description of a dataset's shape.
#ifndef FEDKIT_DATA_EXAMPLES_H_
#define FEDKIT_DATA_EXAMPLES_H_

#include <cstdint>
#include <vector>

namespace fedkit::data {

// What a model needs to know to fit a dataset.
struct DatasetInfo {
  // Shape of one example's features, without the batch dimension: {1, 28, 28} for Fashion-MNIST,
  // {60} for Synthetic. Features are stored flattened; models reshape as they need.
  std::vector<int64_t> feature_shape;
  // Classification: the number of classes (>= 2). 0 for regression.
  int num_classes = 0;
  // Regression: the number of float targets per example (> 0); 0 for classification.
  int64_t target_dim = 0;

  // Product of feature_shape.
  int64_t feature_dim() const;
};

// A batch of labelled examples stored row-major: example i's features are
// features[i * feature_dim, (i + 1) * feature_dim). Classification: labels are class indices in
// [0, num_classes) and targets is empty. Regression (target_dim > 0): example i's float targets are
// targets[i * target_dim, (i + 1) * target_dim) and labels is empty.
struct Examples {
  int64_t feature_dim = 0;
  std::vector<float> features;
  std::vector<int64_t> labels;
  int64_t target_dim = 0;
  std::vector<float> targets;

  bool is_regression() const { return target_dim > 0; }
  int64_t size() const {
    return is_regression() ? static_cast<int64_t>(targets.size()) / target_dim
                           : static_cast<int64_t>(labels.size());
  }

  // Copies the given rows (in the given order) into a new Examples.
  Examples Select(const std::vector<int64_t>& rows) const;
};

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_EXAMPLES_H_
