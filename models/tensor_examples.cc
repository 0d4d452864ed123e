#include "models/tensor_examples.h"

#include "absl/strings/str_cat.h"

namespace fedkit::models {

absl::StatusOr<data::Examples> ExamplesFromTensors(const torch::Tensor& features,
                                                   const torch::Tensor& labels) {
  return CallTorch([&]() -> absl::StatusOr<data::Examples> {
    if (features.dim() < 1 || labels.dim() != 1 || features.size(0) != labels.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("features [N, ...] and labels [N] must agree on N; got ", features.dim(),
                       "-d features and ", labels.dim(), "-d labels"));
    }
    if (!features.is_floating_point()) {
      return absl::InvalidArgumentError("features must be a floating-point tensor");
    }
    if (labels.is_floating_point() || labels.is_complex() || labels.scalar_type() == torch::kBool) {
      return absl::InvalidArgumentError("labels must be an integer tensor of class indices");
    }
    const int64_t n = features.size(0);
    if (n > 0 && labels.min().item<int64_t>() < 0) {
      return absl::InvalidArgumentError("labels must be non-negative class indices");
    }
    const torch::Tensor x = features.reshape({n, -1}).to(torch::kFloat32).contiguous();
    const torch::Tensor y = labels.to(torch::kInt64).contiguous();
    data::Examples out;
    out.feature_dim = n > 0 ? x.size(1) : 0;
    out.features.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
    out.labels.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    return out;
  });
}

}  // namespace fedkit::models
