#include "client/local_trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/seeds.h"
#include "core/status_macros.h"
#include "models/flat_params.h"
#include "models/torch_status.h"
#include "privacy/clipping.h"

namespace fedkit::client {

absl::Status ValidateTrainingPlan(const TrainingPlan& plan) {
  if (plan.local_epochs < 1) return absl::InvalidArgumentError("local_epochs must be >= 1");
  if (plan.batch_size < 1) return absl::InvalidArgumentError("batch_size must be >= 1");
  if (!(plan.learning_rate > 0)) return absl::InvalidArgumentError("learning_rate must be > 0");
  if (!(plan.momentum >= 0 && plan.momentum < 1)) {
    return absl::InvalidArgumentError("momentum must be in [0, 1)");
  }
  if (!(plan.prox_mu >= 0)) return absl::InvalidArgumentError("prox_mu must be >= 0");
  if (!(plan.clip_norm >= 0)) return absl::InvalidArgumentError("clip_norm must be >= 0");
  if (plan.max_steps < 0) return absl::InvalidArgumentError("max_steps must be >= 0");
  if (!(plan.max_seconds >= 0) || std::isinf(plan.max_seconds)) {
    return absl::InvalidArgumentError("max_seconds must be finite and >= 0");
  }
  return absl::OkStatus();
}

uint64_t LocalTrainingSeed(uint64_t run_seed, int64_t round, int64_t client_index) {
  constexpr uint64_t kLocalTrainingStream = 3;
  return DeriveSeed(run_seed, {kLocalTrainingStream, static_cast<uint64_t>(round),
                               static_cast<uint64_t>(client_index)});
}

int64_t ExamplePasses(int64_t examples, const TrainingPlan& plan) {
  const int64_t all = examples * plan.local_epochs;
  if (plan.max_steps <= 0 || examples <= 0 || plan.batch_size <= 0) return all;
  const int64_t steps_per_epoch = (examples + plan.batch_size - 1) / plan.batch_size;
  const int64_t full_epochs = plan.max_steps / steps_per_epoch;
  if (full_epochs >= plan.local_epochs) return all;
  const int64_t rest = plan.max_steps % steps_per_epoch;
  return full_epochs * examples + std::min(examples, rest * plan.batch_size);
}

LocalTrainer::LocalTrainer(std::shared_ptr<models::Model> model) : model_(std::move(model)) {}

absl::StatusOr<ClientUpdate> LocalTrainer::Train(absl::Span<const float> global_parameters,
                                                 const data::Examples& examples,
                                                 const TrainingPlan& plan, uint64_t seed,
                                                 const StopCheck& should_stop,
                                                 absl::Span<const float> gradient_correction) {
  FEDKIT_RETURN_IF_ERROR(ValidateTrainingPlan(plan));
  const int64_t n = examples.size();
  if (n == 0) return absl::InvalidArgumentError("client has no training examples");
  if (examples.is_regression() && examples.labels.size() > 0) {
    return absl::InvalidArgumentError("regression examples must not carry class labels");
  }
  if (static_cast<int64_t>(examples.features.size()) != n * examples.feature_dim) {
    return absl::InvalidArgumentError(absl::StrCat("examples hold ", examples.features.size(),
                                                   " feature values, expected ", n, " x ",
                                                   examples.feature_dim));
  }
  FEDKIT_RETURN_IF_ERROR(models::AssignParameters(global_parameters, *model_));
  if (!gradient_correction.empty() && gradient_correction.size() != global_parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient correction has ",
                                                   gradient_correction.size(), " values for ",
                                                   global_parameters.size(), " parameters"));
  }

  return models::CallTorch([&]() -> absl::StatusOr<ClientUpdate> {
    // Views over the caller's buffers: no copy of the client's data.
    const torch::Tensor features = torch::from_blob(const_cast<float*>(examples.features.data()),
                                                    {n, examples.feature_dim}, torch::kFloat32);
    // Class indices [n], or float targets [n, target_dim] for regression.
    const torch::Tensor labels =
        examples.is_regression()
            ? torch::from_blob(const_cast<float*>(examples.targets.data()),
                               {n, examples.target_dim}, torch::kFloat32)
            : torch::from_blob(const_cast<int64_t*>(examples.labels.data()), {n}, torch::kInt64);

    std::vector<torch::Tensor> params = model_->parameters();
    std::vector<torch::Tensor> global_copies;
    if (plan.prox_mu > 0) {
      for (const auto& p : params) global_copies.push_back(p.detach().clone());
    }
    // Views of the caller's correction, one per parameter (no copy).
    std::vector<torch::Tensor> corrections;
    if (!gradient_correction.empty()) {
      int64_t offset = 0;
      for (const auto& p : params) {
        corrections.push_back(torch::from_blob(
            const_cast<float*>(gradient_correction.data()) + offset, p.sizes(), torch::kFloat32));
        offset += p.numel();
      }
    }
    torch::optim::SGD optimizer(
        params, torch::optim::SGDOptions(plan.learning_rate).momentum(plan.momentum));
    auto generator = at::detail::createCPUGenerator(seed);
    model_->train();

    // Summed as a tensor and read once at the end: a per-step item() is a synchronising read.
    torch::Tensor loss_sum = torch::zeros({}, torch::kFloat64);
    int64_t steps = 0;
    int64_t examples_used = 0;  // minibatch rows, summed: distinct examples up to one epoch
    bool budget_exhausted = false;
    // The budget's clock: monotonic, read once per step.
    const auto started = std::chrono::steady_clock::now();
    const auto over_time = [&] {
      if (plan.max_seconds <= 0) return false;
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() >=
             plan.max_seconds;
    };
    for (int epoch = 0; epoch < plan.local_epochs && !budget_exhausted; ++epoch) {
      const torch::Tensor order = torch::randperm(n, generator, torch::kInt64);
      for (int64_t start = 0; start < n; start += plan.batch_size) {
        const int64_t end = std::min(n, start + plan.batch_size);
        const torch::Tensor idx = order.slice(0, start, end);
        const torch::Tensor x = features.index_select(0, idx);
        const torch::Tensor y = labels.index_select(0, idx);
        optimizer.zero_grad();
        torch::Tensor loss = model_->Loss(model_->forward(x), y);
        loss.backward();
        if (plan.prox_mu > 0) {
          // Gradient of (mu/2)||w - w_g||^2 is mu (w - w_g); added directly rather than through
          // autograd, which would build a graph over every parameter each step.
          torch::NoGradGuard no_grad;
          for (size_t i = 0; i < params.size(); ++i) {
            params[i].mutable_grad().add_(params[i] - global_copies[i], plan.prox_mu);
          }
        }
        optimizer.step();
        if (!corrections.empty()) {
          // Outside the optimizer: momentum does not amplify the correction a second time.
          torch::NoGradGuard no_grad;
          for (size_t i = 0; i < params.size(); ++i) {
            // A buffer carried in the layout (TorchScript models) has no gradient to correct.
            if (params[i].grad().defined()) params[i].add_(corrections[i], -plan.learning_rate);
          }
        }
        loss_sum += loss.detach();
        ++steps;
        examples_used += end - start;
        if (should_stop) {
          if (absl::Status stop = should_stop(steps); !stop.ok()) return stop;
        }
        const bool last_step = epoch + 1 == plan.local_epochs && end == n;
        if (!last_step && ((plan.max_steps > 0 && steps >= plan.max_steps) || over_time())) {
          budget_exhausted = true;
          break;
        }
      }
    }

    ClientUpdate update;
    update.delta = models::FlattenParameters(*model_);
    for (size_t i = 0; i < update.delta.size(); ++i) update.delta[i] -= global_parameters[i];
    update.delta_norm = privacy::ClipL2InPlace(absl::MakeSpan(update.delta), plan.clip_norm);
    update.num_examples = std::min(n, examples_used);
    update.train_loss = loss_sum.item<double>() / static_cast<double>(steps);
    update.steps = steps;
    update.budget_exhausted = budget_exhausted;
    return update;
  });
}

}  // namespace fedkit::client
