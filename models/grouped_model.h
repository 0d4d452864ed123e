// Several copies of one registered model, trained side by side: each parameter is stacked along a
// new leading "group" dimension, so one forward and one backward pass serve every member (batched
// matrix products for Linear layers, grouped convolutions for Conv2d). Member g's parameters are
// the slices [g] of the stacked tensors, and its outputs depend on its own slice and its own rows
// only. The simulator uses it to train a group of clients together (simulation/batched_trainer.h);
// a device always trains its one Model.
//
// Thread safety: a GroupedModel is used by one thread at a time.
#ifndef FEDKIT_MODELS_GROUPED_MODEL_H_
#define FEDKIT_MODELS_GROUPED_MODEL_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data/examples.h"

namespace fedkit::models {

class GroupedModel {
 public:
  virtual ~GroupedModel() = default;

  // features: [group_size, batch, feature_dim] float32. Returns the outputs
  // [group_size, batch, outputs], row b of member g computed from features[g][b] and member g's
  // parameters alone, as the registered model computes it (up to float summation order).
  virtual torch::Tensor Forward(const torch::Tensor& features) = 0;

  // Gradients without autograd, for models whose backward pass is a few batched products (Linear
  // layers with ReLU between them): autograd's graph and engine cost more than the arithmetic at
  // small batch sizes. ForwardForGradients is Forward (call it without gradient recording, under
  // torch::NoGradGuard) keeping what the backward pass needs; Gradients then returns, for each
  // stacked parameter in parameters() order, d/dp of sum over g, b of
  // output_grad[g][b] . outputs[g][b] (output_grad [group_size, batch, outputs]: the loss's
  // gradient with respect to the outputs), from the parameters as they were at the forward pass.
  // Models without it return false from has_manual_gradients() and must not be called.
  virtual bool has_manual_gradients() const { return false; }
  virtual torch::Tensor ForwardForGradients(const torch::Tensor& features) {
    return Forward(features);
  }
  virtual std::vector<torch::Tensor> Gradients(const torch::Tensor& output_grad) { return {}; }

  // The stacked parameters [group_size, <the model's parameter shape>], in the model's parameter
  // order (models/flat_params.h), except that Linear weights are stored transposed,
  // [group_size, in, out], so that neither the forward product nor its weight gradient needs a
  // transposed copy: member g's flat parameter vector is the concatenation of parameters()[i][g]
  // over i, each Linear weight transposed back (Member does it). Zero until Load.
  const std::vector<torch::Tensor>& parameters() const { return parameters_; }
  int64_t group_size() const { return group_size_; }
  int64_t num_parameters() const { return num_parameters_; }

  // Sets every member's parameters to the flat vector `flat` (the layout of
  // models::FlattenParameters). INVALID_ARGUMENT if its size is not num_parameters().
  absl::Status LoadAll(absl::Span<const float> flat);

  // Member g's flat parameter vector. Requires 0 <= g < group_size().
  std::vector<float> Member(int64_t g) const;

 protected:
  // Registers the stacked parameters for members of these shapes (in parameter order); the 2-D
  // ones are Linear weights [out, in], stored as [group_size, in, out].
  GroupedModel(int64_t group_size, const std::vector<std::vector<int64_t>>& shapes);

 private:
  int64_t group_size_;
  int64_t num_parameters_ = 0;
  std::vector<torch::Tensor> parameters_;
  std::vector<bool> transposed_;  // per parameter: a Linear weight stored [group_size, in, out]
};

// A group of `group_size` (>= 1) copies of the registered model `name` (models/model.h) for
// `info`. INVALID_ARGUMENT as CreateModel for a bad name or dataset, or for group_size < 1;
// UNIMPLEMENTED for a model with no grouped form (a TorchScript file: its forward is opaque).
absl::StatusOr<std::unique_ptr<GroupedModel>> CreateGroupedModel(absl::string_view name,
                                                                 const data::DatasetInfo& info,
                                                                 int64_t group_size);

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_GROUPED_MODEL_H_
