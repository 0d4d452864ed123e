#include "models/grouped_model.h"

#include <torch/nn/functional.h>
#include <torch/torch.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/model.h"
#include "models/torch_status.h"
#include "models/torchscript_model.h"

namespace fedkit::models {
namespace {

namespace F = torch::nn::functional;

// Linear layer of every member at once: x [G, B, in], weight [G, in, out] (stored transposed),
// bias [G, out].
torch::Tensor GroupedLinear(const torch::Tensor& x, const torch::Tensor& weight,
                            const torch::Tensor& bias) {
  return torch::baddbmm(bias.unsqueeze(1), x, weight);
}

// Linear layers with ReLU between them: logreg (one layer), mlp (three), seed (two).
class GroupedMlp : public GroupedModel {
 public:
  GroupedMlp(int64_t group_size, const std::vector<std::vector<int64_t>>& shapes)
      : GroupedModel(group_size, shapes) {}

  torch::Tensor Forward(const torch::Tensor& features) override {
    const auto& p = parameters();
    torch::Tensor x = features;
    for (size_t layer = 0; layer < p.size(); layer += 2) {
      if (layer > 0) x = torch::relu(x);
      x = GroupedLinear(x, p[layer], p[layer + 1]);
    }
    return x;
  }

  bool has_manual_gradients() const override { return true; }

  torch::Tensor ForwardForGradients(const torch::Tensor& features) override {
    const auto& p = parameters();
    inputs_.clear();
    torch::Tensor x = features;
    for (size_t layer = 0; layer < p.size(); layer += 2) {
      if (layer > 0) x = torch::relu(x);
      inputs_.push_back(x);  // layer's input: the features, or the previous layer's ReLU
      x = GroupedLinear(x, p[layer].detach(), p[layer + 1].detach());
    }
    return x;
  }

  std::vector<torch::Tensor> Gradients(const torch::Tensor& output_grad) override {
    const auto& p = parameters();
    std::vector<torch::Tensor> grads(p.size());
    torch::Tensor g = output_grad;  // d/d(layer output), [G, B, out]
    for (size_t layer = inputs_.size(); layer-- > 0;) {
      const torch::Tensor& in = inputs_[layer];              // [G, B, in]
      grads[2 * layer] = torch::bmm(in.transpose(1, 2), g);  // [G, in, out], as stored
      grads[2 * layer + 1] = g.sum(1);                       // [G, out]
      if (layer > 0) {
        // Through the weight [G, in, out] and the ReLU that made `in` (in > 0 where it passed).
        g = torch::bmm(g, p[2 * layer].detach().transpose(1, 2)).mul_(in.gt(0));
      }
    }
    inputs_.clear();
    return grads;
  }

 private:
  std::vector<torch::Tensor> inputs_;  // each layer's input from ForwardForGradients
};

// The registered cnn: two 5x5 "same" convolutions (each ReLU, 2x2 max-pool) then two Linear
// layers. The members' channels sit side by side in one image batch, convolved with groups = G.
class GroupedCnn : public GroupedModel {
 public:
  GroupedCnn(int64_t group_size, const std::vector<std::vector<int64_t>>& shapes, int64_t channels,
             int64_t height, int64_t width)
      : GroupedModel(group_size, shapes), channels_(channels), height_(height), width_(width) {}

  torch::Tensor Forward(const torch::Tensor& features) override {
    const auto& p = parameters();
    const int64_t g = group_size();
    const int64_t batch = features.size(1);
    // [G, B, C*H*W] -> [B, G*C, H, W]: member g's image channels are channels g*C .. g*C+C-1.
    torch::Tensor x = features.view({g, batch, channels_, height_, width_})
                          .transpose(0, 1)
                          .reshape({batch, g * channels_, height_, width_});
    x = Conv(x, p[0], p[1]);
    x = Conv(x, p[2], p[3]);
    // [B, G*64, h, w] -> [G, B, 64*h*w], each member's features flattened as Cnn's flatten(1).
    const int64_t per_member = x.size(1) / g * x.size(2) * x.size(3);
    x = x.reshape({batch, g, per_member}).transpose(0, 1);
    x = torch::relu(GroupedLinear(x, p[4], p[5]));
    return GroupedLinear(x, p[6], p[7]);
  }

 private:
  torch::Tensor Conv(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) const {
    const int64_t g = group_size();
    // weight [G, out, in, k, k] -> [G*out, in, k, k]; groups = G keeps each member's channels.
    torch::Tensor w =
        weight.reshape({g * weight.size(1), weight.size(2), weight.size(3), weight.size(4)});
    torch::Tensor y = torch::conv2d(x, w, bias.reshape({-1}), /*stride=*/1,
                                    /*padding=*/weight.size(3) / 2, /*dilation=*/1, /*groups=*/g);
    return F::max_pool2d(torch::relu(y), F::MaxPool2dFuncOptions(2));
  }

  int64_t channels_, height_, width_;
};

}  // namespace

GroupedModel::GroupedModel(int64_t group_size, const std::vector<std::vector<int64_t>>& shapes)
    : group_size_(group_size) {
  for (const auto& shape : shapes) {
    const bool linear_weight = shape.size() == 2;
    std::vector<int64_t> stacked = {group_size};
    if (linear_weight) {
      stacked.insert(stacked.end(), {shape[1], shape[0]});
    } else {
      stacked.insert(stacked.end(), shape.begin(), shape.end());
    }
    parameters_.push_back(torch::zeros(stacked, torch::kFloat32).requires_grad_(true));
    transposed_.push_back(linear_weight);
    num_parameters_ += parameters_.back().numel() / group_size;
  }
}

absl::Status GroupedModel::LoadAll(absl::Span<const float> flat) {
  if (static_cast<int64_t>(flat.size()) != num_parameters_) {
    return absl::InvalidArgumentError(absl::StrCat("parameter vector has ", flat.size(),
                                                   " values, the model has ", num_parameters_));
  }
  return CallTorch([&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      torch::Tensor& p = parameters_[i];
      const int64_t n = p.numel() / group_size_;
      torch::Tensor one =
          torch::from_blob(const_cast<float*>(flat.data()) + offset, {1, n}, torch::kFloat32);
      if (transposed_[i]) {
        // flat holds [out, in]; p[g] is [in, out].
        one = one.view({1, p.size(2), p.size(1)}).transpose(1, 2);
        p.copy_(one.expand({group_size_, p.size(1), p.size(2)}));
      } else {
        p.view({group_size_, n}).copy_(one.expand({group_size_, n}));
      }
      offset += n;
    }
    return absl::OkStatus();
  });
}

std::vector<float> GroupedModel::Member(int64_t g) const {
  std::vector<float> flat(static_cast<size_t>(num_parameters_));
  int64_t offset = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const torch::Tensor member = parameters_[i].detach()[g];
    const torch::Tensor slice = (transposed_[i] ? member.t() : member).contiguous();
    std::memcpy(flat.data() + offset, slice.data_ptr<float>(), slice.numel() * sizeof(float));
    offset += slice.numel();
  }
  return flat;
}

absl::StatusOr<std::unique_ptr<GroupedModel>> CreateGroupedModel(absl::string_view name,
                                                                 const data::DatasetInfo& info,
                                                                 int64_t group_size) {
  if (group_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a model group needs at least one member, got ", group_size));
  }
  if (IsTorchScriptPath(name)) {
    return absl::UnimplementedError(absl::StrCat(
        "model '", name,
        "' is a TorchScript file, whose forward cannot be batched across clients; use a "
        "registered model (logreg, mlp, seed or cnn)"));
  }
  // The registered model itself gives the shapes (and checks the name and the dataset).
  absl::StatusOr<std::shared_ptr<Model>> base = CreateModel(name, info, /*seed=*/0);
  if (!base.ok()) return base.status();
  std::vector<std::vector<int64_t>> shapes;
  for (const torch::Tensor& p : (*base)->parameters()) shapes.push_back(p.sizes().vec());
  return CallTorch([&]() -> absl::StatusOr<std::unique_ptr<GroupedModel>> {
    if (name == "cnn") {
      const auto& s = info.feature_shape;
      return std::unique_ptr<GroupedModel>(
          std::make_unique<GroupedCnn>(group_size, shapes, s[0], s[1], s[2]));
    }
    if (name == "logreg" || name == "mlp" || name == "seed") {
      return std::unique_ptr<GroupedModel>(std::make_unique<GroupedMlp>(group_size, shapes));
    }
    return absl::UnimplementedError(
        absl::StrCat("model '", name, "' has no grouped form for batched client training"));
  });
}

}  // namespace fedkit::models
