#include "models/model.h"

#include <torch/nn/functional.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/torch_status.h"
#include "models/torchscript_model.h"

namespace fedkit::models {
namespace {

namespace F = torch::nn::functional;

class LogisticRegression : public Model {
 public:
  LogisticRegression(int64_t in, int64_t classes)
      : linear_(register_module("linear", torch::nn::Linear(in, classes))) {}
  torch::Tensor forward(torch::Tensor x) override { return linear_(x); }

 private:
  torch::nn::Linear linear_;
};

// Two hidden ReLU layers; `hidden` = 200 gives the 2NN of McMahan et al.
class TwoHiddenLayerMlp : public Model {
 public:
  TwoHiddenLayerMlp(int64_t in, int64_t hidden, int64_t classes)
      : fc1_(register_module("fc1", torch::nn::Linear(in, hidden))),
        fc2_(register_module("fc2", torch::nn::Linear(hidden, hidden))),
        fc3_(register_module("fc3", torch::nn::Linear(hidden, classes))) {}
  torch::Tensor forward(torch::Tensor x) override {
    return fc3_(torch::relu(fc2_(torch::relu(fc1_(x)))));
  }

 private:
  torch::nn::Linear fc1_, fc2_, fc3_;
};

// One hidden ReLU layer (TFF tutorial model with hidden = 10).
class OneHiddenLayerMlp : public Model {
 public:
  OneHiddenLayerMlp(int64_t in, int64_t hidden, int64_t classes)
      : fc1_(register_module("fc1", torch::nn::Linear(in, hidden))),
        fc2_(register_module("fc2", torch::nn::Linear(hidden, classes))) {}
  torch::Tensor forward(torch::Tensor x) override { return fc2_(torch::relu(fc1_(x))); }

 private:
  torch::nn::Linear fc1_, fc2_;
};

class Cnn : public Model {
 public:
  Cnn(int64_t channels, int64_t height, int64_t width, int64_t classes)
      : channels_(channels),
        height_(height),
        width_(width),
        conv1_(register_module(
            "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 32, 5).padding(2)))),
        conv2_(register_module("conv2",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 5).padding(2)))),
        fc1_(register_module("fc1", torch::nn::Linear(64 * (height / 4) * (width / 4), 512))),
        fc2_(register_module("fc2", torch::nn::Linear(512, classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    x = x.view({-1, channels_, height_, width_});
    x = F::max_pool2d(torch::relu(conv1_(x)), F::MaxPool2dFuncOptions(2));
    x = F::max_pool2d(torch::relu(conv2_(x)), F::MaxPool2dFuncOptions(2));
    x = x.flatten(1);
    return fc2_(torch::relu(fc1_(x)));
  }

 private:
  int64_t channels_, height_, width_;
  torch::nn::Conv2d conv1_, conv2_;
  torch::nn::Linear fc1_, fc2_;
};

using Factory =
    std::function<absl::StatusOr<std::shared_ptr<Model>>(const data::DatasetInfo& info)>;

const std::map<std::string, Factory, std::less<>>& Registry() {
  static const auto* registry = new std::map<std::string, Factory, std::less<>>{
      {"logreg",
       [](const data::DatasetInfo& info) -> absl::StatusOr<std::shared_ptr<Model>> {
         return std::make_shared<LogisticRegression>(info.feature_dim(), info.num_classes);
       }},
      {"mlp",
       [](const data::DatasetInfo& info) -> absl::StatusOr<std::shared_ptr<Model>> {
         return std::make_shared<TwoHiddenLayerMlp>(info.feature_dim(), 200, info.num_classes);
       }},
      {"seed",
       [](const data::DatasetInfo& info) -> absl::StatusOr<std::shared_ptr<Model>> {
         return std::make_shared<OneHiddenLayerMlp>(info.feature_dim(), 10, info.num_classes);
       }},
      {"cnn",
       [](const data::DatasetInfo& info) -> absl::StatusOr<std::shared_ptr<Model>> {
         const auto& s = info.feature_shape;
         if (s.size() != 3 || s[1] < 4 || s[2] < 4) {
           return absl::InvalidArgumentError(
               absl::StrCat("model 'cnn' needs image features {channels, height, width} of at "
                            "least 4x4; this dataset's feature shape is [",
                            absl::StrJoin(s, ", "), "]"));
         }
         return std::make_shared<Cnn>(s[0], s[1], s[2], info.num_classes);
       }},
  };
  return *registry;
}

// PyTorch's default initialisation bounds for Linear/Conv (kaiming_uniform with a = sqrt(5) for
// weights gives 1/sqrt(fan_in); biases use the same bound), drawn from a local generator so that
// model creation is deterministic and thread-safe.
void InitializeParameters(Model& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  double bound = 1.0;
  for (auto& param : model.named_parameters(/*recurse=*/true)) {
    torch::Tensor& p = param.value();
    if (p.dim() >= 2) {
      const int64_t fan_in = p.numel() / p.size(0);
      bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    }
    // Biases (1-D) follow their weight, registered just before them.
    p.copy_(torch::rand(p.sizes(), generator, torch::kFloat32) * (2 * bound) - bound);
  }
}

}  // namespace

torch::Tensor Model::Loss(const torch::Tensor& output, const torch::Tensor& target) {
  if (target.is_floating_point()) return torch::nn::functional::mse_loss(output, target);
  return torch::nn::functional::cross_entropy(output, target);
}

absl::StatusOr<std::shared_ptr<Model>> CreateModel(absl::string_view name,
                                                   const data::DatasetInfo& info, uint64_t seed) {
  if (IsTorchScriptPath(name)) {
    absl::StatusOr<std::shared_ptr<TorchScriptModel>> loaded =
        TorchScriptModel::Load(std::string(name), info);
    if (!loaded.ok()) return loaded.status();
    return std::shared_ptr<Model>(std::move(*loaded));
  }
  const auto& registry = Registry();
  auto it = registry.find(name);
  if (it == registry.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown model '", name, "'; known models: ", absl::StrJoin(ModelNames(), ", ")));
  }
  if (info.feature_dim() <= 0 || info.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", name, "' needs a dataset with features and at least 2 classes"));
  }
  return CallTorch([&]() -> absl::StatusOr<std::shared_ptr<Model>> {
    absl::StatusOr<std::shared_ptr<Model>> model = it->second(info);
    if (model.ok()) InitializeParameters(**model, seed);
    return model;
  });
}

std::vector<std::string> ModelNames() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : Registry()) names.push_back(name);
  return names;
}

}  // namespace fedkit::models
