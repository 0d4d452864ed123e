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
      if (examples.is_regression()) {
        const int64_t t = examples.target_dim;
        auto y = torch::from_blob(const_cast<float*>(examples.targets.data() + start * t), {n, t});
        auto output = model.forward(x);
        // Summed over examples of each example's mean squared error over its targets.
        sums.loss_sum +=
            model.HasOwnLoss()
                ? model.Loss(output, y).item<double>() * static_cast<double>(n)
                : torch::nn::functional::mse_loss(
                      output, y, torch::nn::functional::MSELossFuncOptions().reduction(torch::kSum))
                          .item<double>() /
                      static_cast<double>(t);
        sums.count += n;
        continue;
      }
      auto y = torch::from_blob(const_cast<int64_t*>(examples.labels.data() + start), {n},
                                torch::kInt64);
      auto logits = model.forward(x);
      if (model.HasOwnLoss()) {
        // The model's own loss is a minibatch mean.
        sums.loss_sum += model.Loss(logits, y).item<double>() * static_cast<double>(n);
      } else {
        sums.loss_sum +=
            torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
      }
      sums.correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      sums.count += n;
    }
    model.train();
    return sums;
  });
}

}  // namespace fedkit::models
