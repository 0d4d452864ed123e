#include "models/tensor_examples.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedkit::models {

absl::StatusOr<data::Examples> ExamplesFromTensors(const torch::Tensor& features,
                                                   const torch::Tensor& labels) {
  return CallTorch([&]() -> absl::StatusOr<data::Examples> {
    if (!features.is_floating_point()) {
      return absl::InvalidArgumentError("features must be a floating-point tensor");
    }
    if (labels.is_floating_point()) {  // regression targets [N] or [N, k]
      if (features.dim() < 1 || labels.dim() < 1 || labels.dim() > 2 ||
          features.size(0) != labels.size(0) || (labels.dim() == 2 && labels.size(1) < 1)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "features [N, ...] and float regression targets [N] or [N, k] must agree on N; got ",
            features.dim(), "-d features [", absl::StrJoin(features.sizes(), ", "), "] and ",
            labels.dim(), "-d targets [", absl::StrJoin(labels.sizes(), ", "), "]"));
      }
      const int64_t n = features.size(0);
      const torch::Tensor x = features.reshape({n, -1}).to(torch::kFloat32).contiguous();
      const torch::Tensor y = labels.reshape({n, -1}).to(torch::kFloat32).contiguous();
      if (!torch::isfinite(y).all().item<bool>()) {
        return absl::InvalidArgumentError("regression targets must be finite");
      }
      data::Examples out;
      out.feature_dim = n > 0 ? x.size(1) : 0;
      out.features.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
      out.target_dim = labels.dim() == 2 ? labels.size(1) : 1;
      out.targets.assign(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
      return out;
    }
    if (features.dim() < 1 || labels.dim() != 1 || features.size(0) != labels.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("features [N, ...] and labels [N] must agree on N; got ", features.dim(),
                       "-d features and ", labels.dim(), "-d labels"));
    }
    if (labels.is_complex() || labels.scalar_type() == torch::kBool) {
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
