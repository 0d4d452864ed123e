// The models FedKit trains: LibTorch modules with a fixed input convention, created by name.
#ifndef FEDKIT_MODELS_MODEL_H_
#define FEDKIT_MODELS_MODEL_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/examples.h"

namespace fedkit::models {

// A classifier over flattened features. Subclasses register their parameters in a fixed order,
// which defines the flat-vector layout (see flat_params.h).
class Model : public torch::nn::Module {
 public:
  // features: [batch, feature_dim] float32. Returns logits [batch, num_classes].
  virtual torch::Tensor forward(torch::Tensor features) = 0;

  // The mean training loss of a minibatch unless the model defines its own (HasOwnLoss()):
  // cross-entropy of logits against int64 class indices [batch]; mean squared error against float
  // regression targets [batch, target_dim].
  virtual torch::Tensor Loss(const torch::Tensor& output, const torch::Tensor& target);
  virtual bool HasOwnLoss() const { return false; }
};

// Creates the model registered as `name`, sized for `info`, with parameters initialised
// deterministically from `seed` alone: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default bounds
// for Linear and Conv2d, drawn from a generator local to this call. (LibTorch's module constructors
// still advance its global generator, but the values they draw are overwritten.)
//
// Registered names:
//   logreg  multinomial logistic regression: Linear(feature_dim, classes)
//   mlp     feature_dim-200-200-classes with ReLU (the "2NN" of McMahan et al. 2017)
//   cnn     Conv5x5(32)-ReLU-MaxPool2 - Conv5x5(64)-ReLU-MaxPool2 - FC512-ReLU - FC(classes),
//   "same"
//           padding (McMahan et al. 2017); needs an image-shaped dataset {C, H, W}
//   seed    feature_dim -> Dense 10 ReLU -> Dense(classes), the TensorFlow Federated tutorial model
// A `name` for which IsTorchScriptPath() holds (ends in .pt, .pth, .ptl or contains '/') is
// loaded as a TorchScript file instead (models/torchscript_model.h; `seed` is then unused).
// INVALID_ARGUMENT names the model and the reason (unknown name, dataset shape unsuitable);
// TorchScript files fail as TorchScriptModel::Load documents.
absl::StatusOr<std::shared_ptr<Model>> CreateModel(absl::string_view name,
                                                   const data::DatasetInfo& info, uint64_t seed);

// The registered names, sorted.
std::vector<std::string> ModelNames();

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_MODEL_H_
