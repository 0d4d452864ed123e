#include "models/evaluate.h"

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "models/torch_status.h"

namespace fedkit::models {

void EvalSums::Add(const EvalSums& other) {
  loss_sum += other.loss_sum;
  correct += other.correct;
  count += other.count;
}

absl::StatusOr<EvalSums> EvaluateRange(Model& model, const data::Examples& examples, int64_t begin,
                                       int64_t end) {
  if (begin < 0 || end > examples.size() || begin > end) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation range [", begin, ", ", end, ") outside 0..", examples.size()));
  }
  return CallTorch([&]() -> absl::StatusOr<EvalSums> {
    torch::NoGradGuard no_grad;
    model.eval();
    constexpr int64_t kBatch = 500;
    EvalSums sums;
    const int64_t dim = examples.feature_dim;
    for (int64_t start = begin; start < end; start += kBatch) {
      const int64_t n = std::min(kBatch, end - start);
      auto x =
          torch::from_blob(const_cast<float*>(examples.features.data() + start * dim), {n, dim});
      namespace F = torch::nn::functional;
      const bool regression = examples.is_regression();
      const int64_t t = examples.target_dim;
      // Class indices [n], or float targets [n, t] for regression.
      const torch::Tensor y =
          regression
              ? torch::from_blob(const_cast<float*>(examples.targets.data() + start * t), {n, t})
              : torch::from_blob(const_cast<int64_t*>(examples.labels.data() + start), {n},
                                 torch::kInt64);
      const torch::Tensor output = model.forward(x);
      if (model.HasOwnLoss()) {
        // The model's own loss is a minibatch mean.
        sums.loss_sum += model.Loss(output, y).item<double>() * static_cast<double>(n);
      } else if (regression) {
        // Each example's mean squared error over its targets, summed over examples.
        sums.loss_sum +=
            F::mse_loss(output, y, F::MSELossFuncOptions().reduction(torch::kSum)).item<double>() /
            static_cast<double>(t);
      } else {
        sums.loss_sum +=
            F::cross_entropy(output, y, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
      }
      if (!regression) sums.correct += output.argmax(1).eq(y).sum().item<int64_t>();
      sums.count += n;
    }
    model.train();
    return sums;
  });
}

}  // namespace fedkit::models
