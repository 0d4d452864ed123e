#include "client/local_trainer.h"

#include <torch/torch.h>

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/flat_params.h"
#include "privacy/clipping.h"

namespace fedkit::client {
namespace {

const data::DatasetInfo kInfo{{6}, 3};

// Examples whose label is the argmax of the first three features: learnable by logreg.
data::Examples MakeExamples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  data::Examples ex;
  ex.feature_dim = 6;
  for (int i = 0; i < n; ++i) {
    float best = -1e9f;
    int64_t label = 0;
    for (int j = 0; j < 6; ++j) {
      const float v = normal(rng);
      ex.features.push_back(v);
      if (j < 3 && v > best) best = v, label = j;
    }
    ex.labels.push_back(label);
  }
  return ex;
}

std::vector<float> GlobalParams(const std::string& model_name, uint64_t seed) {
  return models::FlattenParameters(**models::CreateModel(model_name, kInfo, seed));
}

LocalTrainer MakeTrainer(const std::string& model_name) {
  return LocalTrainer(*models::CreateModel(model_name, kInfo, 99));
}

// Reference: full-batch gradient descent written directly with autograd, including the FedProx term
// in the loss (the trainer adds its gradient by hand instead).
std::vector<float> ReferenceFullBatchDelta(const std::vector<float>& global,
                                           const data::Examples& ex, int epochs, double lr,
                                           double mu) {
  auto model = *models::CreateModel("logreg", kInfo, 1);
  EXPECT_TRUE(models::AssignParameters(global, *model).ok());
  auto x = torch::from_blob(const_cast<float*>(ex.features.data()), {ex.size(), 6});
  auto y = torch::from_blob(const_cast<int64_t*>(ex.labels.data()), {ex.size()}, torch::kInt64);
  std::vector<torch::Tensor> g;
  for (auto& p : model->parameters()) g.push_back(p.detach().clone());
  for (int e = 0; e < epochs; ++e) {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      loss = loss + (mu / 2) * (params[i] - g[i]).pow(2).sum();
    }
    loss.backward();
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.sub_(p.grad() * lr);
  }
  auto trained = models::FlattenParameters(*model);
  for (size_t i = 0; i < trained.size(); ++i) trained[i] -= global[i];
  return trained;
}

TEST(LocalTrainerTest, FullBatchSgdMatchesHandWrittenGradientDescent) {
  const auto ex = MakeExamples(32, 1);
  const auto global = GlobalParams("logreg", 5);
  TrainingPlan plan{.local_epochs = 3, .batch_size = 32, .learning_rate = 0.5};
  auto trainer = MakeTrainer("logreg");
  auto update = trainer.Train(global, ex, plan, /*seed=*/1);
  ASSERT_TRUE(update.ok()) << update.status();
  const auto expected = ReferenceFullBatchDelta(global, ex, 3, 0.5, 0.0);
  ASSERT_EQ(update->delta.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(update->delta[i], expected[i], 1e-6);
  EXPECT_EQ(update->num_examples, 32);
}

TEST(LocalTrainerTest, FedProxMatchesAutogradOfTheProximalObjective) {
  const auto ex = MakeExamples(32, 2);
  const auto global = GlobalParams("logreg", 6);
  TrainingPlan plan{.local_epochs = 4, .batch_size = 32, .learning_rate = 0.5, .prox_mu = 0.7};
  auto trainer = MakeTrainer("logreg");
  auto update = trainer.Train(global, ex, plan, 1);
  ASSERT_TRUE(update.ok()) << update.status();
  const auto expected = ReferenceFullBatchDelta(global, ex, 4, 0.5, 0.7);
  const auto without_prox = ReferenceFullBatchDelta(global, ex, 4, 0.5, 0.0);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(update->delta[i], expected[i], 1e-6);
  // The proximal term pulls towards the global model: a smaller step than plain SGD.
  EXPECT_LT(privacy::L2Norm(update->delta), privacy::L2Norm(without_prox));
}

TEST(LocalTrainerTest, DeltaIsClippedToTheL2NormAndDirectionKept) {
  const auto ex = MakeExamples(50, 3);
  const auto global = GlobalParams("mlp", 7);
  TrainingPlan plan{.local_epochs = 2, .batch_size = 10, .learning_rate = 0.1};
  auto trainer = MakeTrainer("mlp");
  auto unclipped = *trainer.Train(global, ex, plan, 4);
  plan.clip_norm = 0.05;
  auto clipped = *trainer.Train(global, ex, plan, 4);
  ASSERT_GT(unclipped.delta_norm, 0.05);
  EXPECT_DOUBLE_EQ(clipped.delta_norm, unclipped.delta_norm);
  EXPECT_NEAR(privacy::L2Norm(clipped.delta), 0.05, 1e-6);
  const double scale = 0.05 / unclipped.delta_norm;
  for (size_t i = 0; i < clipped.delta.size(); ++i) {
    ASSERT_NEAR(clipped.delta[i], unclipped.delta[i] * scale, 1e-7);
  }
}

TEST(LocalTrainerTest, DeterministicInSeedAndShuffledBySeed) {
  const auto ex = MakeExamples(40, 4);
  const auto global = GlobalParams("mlp", 8);
  TrainingPlan plan{.local_epochs = 1, .batch_size = 5, .learning_rate = 0.1, .momentum = 0.9};
  auto a = MakeTrainer("mlp");
  auto b = MakeTrainer("mlp");
  EXPECT_EQ(a.Train(global, ex, plan, 11)->delta, b.Train(global, ex, plan, 11)->delta);
  EXPECT_NE(a.Train(global, ex, plan, 11)->delta, a.Train(global, ex, plan, 12)->delta);
}

TEST(LocalTrainerTest, TrainingLowersTheLoss) {
  const auto ex = MakeExamples(200, 5);
  auto global = GlobalParams("logreg", 9);
  TrainingPlan plan{.local_epochs = 1, .batch_size = 10, .learning_rate = 0.1};
  auto trainer = MakeTrainer("logreg");
  const double first = trainer.Train(global, ex, plan, 1)->train_loss;
  plan.local_epochs = 10;
  auto update = *trainer.Train(global, ex, plan, 1);
  for (size_t i = 0; i < global.size(); ++i) global[i] += update.delta[i];
  plan.local_epochs = 1;
  const double later = trainer.Train(global, ex, plan, 1)->train_loss;
  EXPECT_LT(later, first * 0.7);
}

TEST(LocalTrainerTest, BadInputsAreClearErrors) {
  auto trainer = MakeTrainer("logreg");
  const auto global = GlobalParams("logreg", 1);
  const auto ex = MakeExamples(10, 6);
  TrainingPlan plan;

  auto wrong_size = trainer.Train(std::vector<float>(global.size() - 1), ex, plan, 1);
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);

  auto empty = trainer.Train(global, data::Examples{.feature_dim = 6}, plan, 1);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);

  data::Examples wrong_dim = ex;
  wrong_dim.feature_dim = 5;
  wrong_dim.features.resize(50);
  auto mismatch = trainer.Train(global, wrong_dim, plan, 1);
  EXPECT_FALSE(mismatch.ok());  // LibTorch's shape error surfaces as a status, not an exception

  plan.batch_size = 0;
  auto bad_plan = trainer.Train(global, ex, plan, 1);
  EXPECT_EQ(bad_plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_plan.status().message(), testing::HasSubstr("batch_size"));
}

}  // namespace
}  // namespace fedkit::client
