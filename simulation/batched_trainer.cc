#include "simulation/batched_trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "models/grouped_model.h"
#include "models/torch_status.h"
#include "privacy/clipping.h"

namespace fedkit::simulation {
namespace {

namespace F = torch::nn::functional;

// One client's minibatch schedule, drawn as LocalTrainer::Train draws it: a fresh permutation of
// its examples per epoch from a generator seeded with its seed, cut into batches of plan.batch_size
// (the last one shorter), stopped after plan.max_steps steps.
struct Schedule {
  std::vector<int64_t> rows;  // steps x batch_size row indices into the client's examples, -1 = pad
  int64_t steps = 0;
  int64_t examples_used = 0;
  bool budget_exhausted = false;
};

Schedule MakeSchedule(int64_t n, const client::TrainingPlan& plan, uint64_t seed) {
  Schedule s;
  const int64_t batch = plan.batch_size;
  const int64_t per_epoch = (n + batch - 1) / batch;
  const int64_t all_steps = per_epoch * plan.local_epochs;
  s.steps = plan.max_steps > 0 ? std::min(all_steps, plan.max_steps) : all_steps;
  s.budget_exhausted = s.steps < all_steps;
  s.rows.assign(static_cast<size_t>(s.steps * batch), -1);
  auto generator = at::detail::createCPUGenerator(seed);
  int64_t step = 0;
  for (int epoch = 0; epoch < plan.local_epochs && step < s.steps; ++epoch) {
    const torch::Tensor order = torch::randperm(n, generator, torch::kInt64);
    const int64_t* o = order.data_ptr<int64_t>();
    for (int64_t start = 0; start < n && step < s.steps; start += batch, ++step) {
      const int64_t end = std::min(n, start + batch);
      std::copy(o + start, o + end, s.rows.begin() + step * batch);
      s.examples_used += end - start;
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchedTrainer>> BatchedTrainer::Create(std::string model,
                                                                       data::DatasetInfo info) {
  // Fails here, not at the first round, for a model with no grouped form.
  FEDKIT_RETURN_IF_ERROR(models::CreateGroupedModel(model, info, 1).status());
  return std::unique_ptr<BatchedTrainer>(new BatchedTrainer(std::move(model), std::move(info)));
}

absl::StatusOr<std::vector<client::ClientUpdate>> BatchedTrainer::Train(
    absl::Span<const float> global_parameters, absl::Span<const data::Examples* const> clients,
    const client::TrainingPlan& plan, absl::Span<const uint64_t> seeds) {
  FEDKIT_RETURN_IF_ERROR(client::ValidateTrainingPlan(plan));
  if (plan.max_seconds > 0) {
    return absl::InvalidArgumentError(
        "batched client training cannot keep a wall-clock budget (max_seconds) per client");
  }
  if (clients.empty()) return absl::InvalidArgumentError("batched training needs a client");
  if (clients.size() != seeds.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(clients.size(), " clients but ", seeds.size(), " seeds"));
  }
  const int64_t group = static_cast<int64_t>(clients.size());
  const int64_t feature_dim = info_.feature_dim();
  int64_t total_rows = 0;
  for (int64_t c = 0; c < group; ++c) {
    const data::Examples& e = *clients[c];
    const int64_t n = e.size();
    if (e.is_regression()) {
      // Registered models are classifiers (models/model.h); regression needs a TorchScript model.
      return absl::InvalidArgumentError("batched training trains classifiers only");
    }
    if (n == 0) return absl::InvalidArgumentError("client has no training examples");
    if (e.feature_dim != feature_dim ||
        static_cast<int64_t>(e.features.size()) != n * feature_dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("client ", c, " of the group has ", e.features.size(),
                       " feature values, expected ", n, " x ", feature_dim));
    }
    total_rows += n;
  }
  if (group_ == nullptr || group_->group_size() != group) {
    FEDKIT_ASSIGN_OR_RETURN(group_, models::CreateGroupedModel(model_, info_, group));
  }
  models::GroupedModel* model = group_.get();
  FEDKIT_RETURN_IF_ERROR(model->LoadAll(global_parameters));

  return models::CallTorch([&]() -> absl::StatusOr<std::vector<client::ClientUpdate>> {
    // Every client's rows in one table, so that one gather makes a step's [group, batch] inputs.
    torch::Tensor features = torch::empty({total_rows, feature_dim}, torch::kFloat32);
    torch::Tensor labels = torch::empty({total_rows}, torch::kInt64);
    std::vector<Schedule> schedules;
    int64_t max_steps = 0;
    const int64_t batch = plan.batch_size;
    {
      int64_t offset = 0;
      for (int64_t c = 0; c < group; ++c) {
        const data::Examples& e = *clients[c];
        const int64_t n = e.size();
        std::memcpy(features.data_ptr<float>() + offset * feature_dim, e.features.data(),
                    e.features.size() * sizeof(float));
        std::memcpy(labels.data_ptr<int64_t>() + offset, e.labels.data(),
                    e.labels.size() * sizeof(int64_t));
        schedules.push_back(MakeSchedule(n, plan, seeds[c]));
        for (int64_t& row : schedules.back().rows) row = row < 0 ? -1 : row + offset;
        max_steps = std::max(max_steps, schedules.back().steps);
        offset += n;
      }
    }
    // rows[c][s * batch + j]: client c's j-th row at step s; -1 pads a short last batch and the
    // steps after a client's last.
    torch::Tensor rows = torch::full({group, max_steps * batch}, -1, torch::kInt64);
    for (int64_t c = 0; c < group; ++c) {
      const auto& r = schedules[c].rows;
      std::memcpy(rows[c].data_ptr<int64_t>(), r.data(), r.size() * sizeof(int64_t));
    }

    const std::vector<torch::Tensor>& params = model->parameters();
    std::vector<torch::Tensor> global_copies;
    if (plan.prox_mu > 0) {
      for (const auto& p : params) global_copies.push_back(p.detach().clone());
    }
    std::vector<torch::Tensor> momentum;
    if (plan.momentum > 0) {
      for (const auto& p : params) momentum.push_back(torch::zeros_like(p));
    }
    // A client past its last step has no rows, so its gradient is exactly zero and plain SGD leaves
    // its parameters as they are (p - lr * 0 == p); only the proximal term and the momentum buffer
    // would move them, and then the update is masked per client.
    const bool mask_updates = plan.prox_mu > 0 || plan.momentum > 0;
    // Everything per step that does not depend on the model, computed once for all steps and laid
    // out [steps, group, batch] so that a step's slice is contiguous: the rows to gather (a pad
    // gathers row 0), each row's weight in its client's mean loss (1 / the client's rows that
    // step; 0 for a pad) and each client's row count.
    const torch::Tensor step_rows =
        rows.view({group, max_steps, batch}).transpose(0, 1).contiguous();
    const torch::Tensor gather_all = step_rows.clamp_min(0);
    const torch::Tensor mask_all = step_rows.ge(0).to(torch::kFloat32);
    const torch::Tensor counts_all = mask_all.sum(2);  // [steps, group]
    const torch::Tensor weight_all = mask_all / counts_all.clamp_min(1).unsqueeze(2);
    const bool manual = model->has_manual_gradients();
    // Each step's per-client mean loss; with manual gradients, first each row's log-probability
    // of its label, weighed and summed after the last step.
    torch::Tensor step_losses = torch::empty({max_steps, group}, torch::kFloat32);
    torch::Tensor label_log_p =
        manual ? torch::empty({max_steps, group, batch, 1}, torch::kFloat32) : torch::Tensor();
    const torch::Tensor minus_one = torch::full({group, batch, 1}, -1.0f, torch::kFloat32);
    for (int64_t step = 0; step < max_steps; ++step) {
      const torch::Tensor gather = gather_all[step].view({-1});
      const torch::Tensor x = features.index_select(0, gather).view({group, batch, feature_dim});
      const torch::Tensor y = labels.index_select(0, gather);
      const torch::Tensor row_weight = weight_all[step];  // [G, B]
      // Each client's mean loss over its own rows; their sum has each client's gradient in its
      // own parameters' slice. A client past its last step has no rows and no gradient.
      std::vector<torch::Tensor> grads;
      if (manual) {
        torch::NoGradGuard no_grad;
        const torch::Tensor out = model->ForwardForGradients(x);  // [G, B, outputs]
        // Cross-entropy and its gradient with respect to the outputs, softmax - one-hot, each row
        // weighted as its client's mean weighs it.
        torch::Tensor p = torch::log_softmax(out, 2);
        const torch::Tensor label = y.view({group, batch, 1});
        torch::Tensor picked = label_log_p[step];
        torch::gather_out(picked, p, 2, label);
        p.exp_().scatter_add_(2, label, minus_one).mul_(row_weight.unsqueeze(2));
        grads = model->Gradients(p);
      } else {
        const torch::Tensor out = model->Forward(x);  // [G, B, outputs]
        const torch::Tensor per_row =
            F::cross_entropy(out.reshape({group * batch, out.size(2)}), y,
                             F::CrossEntropyFuncOptions().reduction(torch::kNone))
                .view({group, batch});
        const torch::Tensor per_client = (per_row * row_weight).sum(1);
        for (const auto& param : params) param.mutable_grad() = torch::Tensor();
        per_client.sum().backward();
        for (const auto& param : params) grads.push_back(param.grad());
        step_losses[step].copy_(per_client.detach());
      }
      torch::NoGradGuard no_grad;
      const torch::Tensor active =
          mask_updates ? counts_all[step].gt(0).to(torch::kFloat32) : torch::Tensor();
      for (size_t i = 0; i < params.size(); ++i) {
        torch::Tensor g = grads[i];
        if (plan.prox_mu > 0) g.add_(params[i] - global_copies[i], plan.prox_mu);
        // torch::optim::SGD: the buffer starts as the first gradient (every client takes its
        // first step at step 0), then buf = momentum * buf + grad.
        if (plan.momentum > 0) {
          momentum[i].mul_(plan.momentum).add_(g);
          g = momentum[i];
        }
        if (!mask_updates) {
          params[i].add_(g, -plan.learning_rate);
          continue;
        }
        std::vector<int64_t> shape(params[i].dim(), 1);
        shape[0] = group;
        params[i].add_(g * active.view(shape), -plan.learning_rate);
      }
    }
    if (manual) step_losses = -(label_log_p.squeeze(3) * weight_all).sum(2);
    const torch::Tensor loss_sum = step_losses.to(torch::kFloat64).sum(0);  // [group]

    std::vector<client::ClientUpdate> updates(static_cast<size_t>(group));
    for (int64_t c = 0; c < group; ++c) {
      const Schedule& s = schedules[c];
      client::ClientUpdate& u = updates[c];
      u.delta = model->Member(c);
      for (size_t i = 0; i < u.delta.size(); ++i) u.delta[i] -= global_parameters[i];
      u.delta_norm = privacy::ClipL2InPlace(absl::MakeSpan(u.delta), plan.clip_norm);
      u.num_examples = std::min(clients[c]->size(), s.examples_used);
      u.train_loss = loss_sum[c].item<double>() / static_cast<double>(s.steps);
      u.steps = s.steps;
      u.budget_exhausted = s.budget_exhausted;
    }
    return updates;
  });
}

}  // namespace fedkit::simulation
