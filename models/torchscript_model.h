// Models written in Python: a TorchScript file (torch.jit.script(m).save(path) or torch.jit.trace)
// loaded as a models::Model, so the simulator, the coordinator and the device library train it
// exactly like a registry model.
//
// The contract of a TorchScript model file:
//   - forward(x) takes features shaped [batch, *feature_shape] (the dataset's own shape, e.g.
//     [batch, 1, 28, 28] for Fashion-MNIST) as float32 and returns [batch, num_classes] logits for
//     a classification dataset, [batch, target_dim] float outputs for a regression dataset (float
//     targets; data::DatasetInfo::target_dim > 0).
//   - Optionally `def loss(self, output, target) -> Tensor` returning the mean loss of a minibatch;
//     without it, training uses cross-entropy (classification) or mean squared error (regression).
//   - Optionally a string attribute `fedkit_task`, "classification" or "regression": the task the
//     model is for, checked against the dataset's at load.
//   - The flat parameter layout (core/parameter_layout.h) is every parameter in the module's
//     named_parameters() order, then every floating-point buffer in named_buffers() order (e.g.
//     BatchNorm's running_mean and running_var): buffers travel and are averaged like parameters,
//     so the global model carries the population's statistics. Their deltas count towards the clip
//     norm. Integer buffers (BatchNorm's num_batches_tracked) stay local to each model instance and
//     are not part of the layout. Layout names are the module's names with '.' replaced by '/'
//     (LibTorch refuses dots in registered names); buffers' names start with "buffer:".
//   - The initial parameters are the file's own: the seed passed to CreateModel is not used.
//
// Thread safety: a TorchScriptModel is used by one thread at a time, like every Model; load one
// per thread (each load is an independent module).
#ifndef FEDKIT_MODELS_TORCHSCRIPT_MODEL_H_
#define FEDKIT_MODELS_TORCHSCRIPT_MODEL_H_

#include <torch/script.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/examples.h"
#include "models/model.h"

namespace fedkit::models {

// True if `name` names a TorchScript file rather than a registry model: it ends in ".pt", ".pth"
// or ".ptl", or contains a '/'.
bool IsTorchScriptPath(absl::string_view name);

class TorchScriptModel : public Model {
 public:
  // Loads `path` and checks it against `info`: a dry run of forward() on two zero examples shaped
  // [2, *info.feature_shape] in eval mode must return float logits [2, info.num_classes]; a loss()
  // method, if present, must take (output, target) and return a scalar.
  // Errors (each message names the path):
  //   NOT_FOUND         the file does not exist;
  //   INVALID_ARGUMENT  not a TorchScript archive (corrupt, truncated, a torch.save pickle), no
  //                     forward method, no parameters, a non-float32 parameter, or an output
  //                     that does not fit the dataset ("returns [2, 5] for 10 classes").
  static absl::StatusOr<std::shared_ptr<TorchScriptModel>> Load(const std::string& path,
                                                                const data::DatasetInfo& info);
  // The same from the archive's bytes already in memory (a downloaded, verified artifact: what
  // was checked is what is loaded). `name` stands for the path in messages and path().
  static absl::StatusOr<std::shared_ptr<TorchScriptModel>> LoadFromBytes(
      absl::string_view bytes, const std::string& name, const data::DatasetInfo& info);

  // features: [batch, feature_dim] (flattened, as every Model gets them) or already shaped; they
  // are viewed as [batch, *feature_shape] before the module sees them.
  torch::Tensor forward(torch::Tensor features) override;
  torch::Tensor Loss(const torch::Tensor& output, const torch::Tensor& target) override;
  bool HasOwnLoss() const override { return has_loss_; }
  void train(bool on = true) override;

  // Writes the module with its current parameters and buffers as a TorchScript file that Python's
  // torch.jit.load reads. INTERNAL naming the path on failure.
  absl::Status Save(const std::string& path) const;

  const std::string& path() const { return path_; }

 private:
  TorchScriptModel(std::string path, torch::jit::Module module, std::vector<int64_t> feature_shape);
  // Load's checks, on the module `load` returns (it may throw c10::Error).
  static absl::StatusOr<std::shared_ptr<TorchScriptModel>> LoadArchive(
      const std::string& path, const data::DatasetInfo& info,
      const std::function<torch::jit::Module()>& load);

  std::string path_;
  // mutable: torch::jit::Module's save() and methods are non-const, but do not change the model.
  mutable torch::jit::Module module_;
  std::vector<int64_t> view_shape_;  // {-1, *feature_shape}
  bool has_loss_ = false;
};

// The name under which a model travels in plans, assignments and checkpoints: a registry name as it
// is; for a TorchScript file (IsTorchScriptPath), "torchscript:sha256:<hex of the file's bytes>",
// so a coordinator and a device holding the same file under different paths agree, and a different
// file is told apart. NOT_FOUND naming the file if it cannot be read.
absl::StatusOr<std::string> ModelIdentity(absl::string_view name);

// Writes `model`'s current parameters to `path`: a TorchScript file for a TorchScriptModel, a
// torch::save archive (models::LoadModule reads it) for a registry model. Errors name the path.
absl::Status SaveModel(const Model& model, const std::string& path);

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_TORCHSCRIPT_MODEL_H_
