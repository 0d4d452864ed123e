#include "client/local_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "client/testing/argmax_examples.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluate.h"
#include "models/flat_params.h"
#include "privacy/clipping.h"

namespace fedkit::client {
namespace {

const data::DatasetInfo kInfo = testdata::kArgmaxInfo;

data::Examples MakeExamples(int n, uint32_t seed) { return testdata::ArgmaxExamples(n, seed); }

std::vector<float> GlobalParams(const std::string& model_name, uint64_t seed) {
  return models::FlattenParameters(**models::CreateModel(model_name, kInfo, seed));
}

LocalTrainer MakeTrainer(const std::string& model_name) {
  return LocalTrainer(*models::CreateModel(model_name, kInfo, 99));
}

// Reference: full-batch gradient descent written directly with autograd, including the FedProx term
// in the loss (the trainer adds its gradient by hand instead).
// With `correction` (one value per parameter) added to the gradient of every step, as SCAFFOLD's.
std::vector<float> ReferenceFullBatchDelta(const std::vector<float>& global,
                                           const data::Examples& ex, int epochs, double lr,
                                           double mu, const std::vector<float>& correction = {}) {
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
    int64_t offset = 0;
    for (auto& p : model->parameters()) {
      torch::Tensor step = p.grad().clone();
      if (!correction.empty()) {
        step += torch::tensor(std::vector<float>(correction.begin() + offset,
                                                 correction.begin() + offset + p.numel()))
                    .reshape(p.sizes());
      }
      offset += p.numel();
      p.sub_(step * lr);
    }
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

TEST(LocalTrainerTest, GradientCorrectionIsAddedToEveryStep) {
  const auto ex = MakeExamples(32, 3);
  const auto global = GlobalParams("logreg", 7);
  TrainingPlan plan{.local_epochs = 3, .batch_size = 32, .learning_rate = 0.5};
  std::vector<float> correction(global.size());
  for (size_t i = 0; i < correction.size(); ++i) correction[i] = 0.01f * ((i % 7) - 3.0f);
  auto trainer = MakeTrainer("logreg");
  auto update = trainer.Train(global, ex, plan, 1, {}, correction);
  ASSERT_TRUE(update.ok()) << update.status();
  const auto expected = ReferenceFullBatchDelta(global, ex, 3, 0.5, 0.0, correction);
  const auto without = ReferenceFullBatchDelta(global, ex, 3, 0.5, 0.0);
  double moved = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(update->delta[i], expected[i], 1e-6);
    moved = std::max(moved, std::abs(static_cast<double>(expected[i] - without[i])));
  }
  EXPECT_GT(moved, 1e-3);  // the correction made a difference the check above could see

  // A zero correction trains bit for bit as none (minibatches, momentum).
  plan = {.local_epochs = 2, .batch_size = 5, .learning_rate = 0.1, .momentum = 0.9};
  const std::vector<float> zeros(global.size(), 0.0f);
  auto plain = trainer.Train(global, ex, plan, 4);
  auto zero = trainer.Train(global, ex, plan, 4, {}, zeros);
  ASSERT_TRUE(plain.ok() && zero.ok());
  EXPECT_EQ(plain->delta, zero->delta);

  const std::vector<float> short_correction(global.size() - 1, 0.0f);
  auto wrong = trainer.Train(global, ex, plan, 4, {}, short_correction);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), testing::HasSubstr("gradient correction"));
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

// The plan's step budget stops training after max_steps minibatches, and the update counts only the
// examples those steps used.
TEST(LocalTrainerTest, StepBudgetStopsAfterMaxStepsAndCountsTheExamplesUsed) {
  const auto ex = MakeExamples(40, 7);
  const auto global = GlobalParams("logreg", 3);
  TrainingPlan plan{.local_epochs = 2, .batch_size = 5, .learning_rate = 0.1};
  auto trainer = MakeTrainer("logreg");
  const ClientUpdate full = *trainer.Train(global, ex, plan, 5);
  EXPECT_EQ(full.steps, 16);
  EXPECT_EQ(full.num_examples, 40);
  EXPECT_FALSE(full.budget_exhausted);

  plan.max_steps = 3;
  const ClientUpdate cut = *trainer.Train(global, ex, plan, 5);
  EXPECT_EQ(cut.steps, 3);
  EXPECT_EQ(cut.num_examples, 15);
  EXPECT_TRUE(cut.budget_exhausted);
  EXPECT_NE(cut.delta, full.delta);
  // should_stop runs after each step with the steps done; its status is returned as it is.
  std::vector<int64_t> seen;
  plan.max_steps = 0;
  auto stopped = trainer.Train(global, ex, plan, 5, [&](int64_t steps) {
    seen.push_back(steps);
    return steps >= 3 ? absl::AbortedError("stopped: test") : absl::OkStatus();
  });
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(seen, testing::ElementsAre(1, 2, 3));

  // Over a whole epoch every example counts once.
  plan.max_steps = 10;
  const ClientUpdate more = *trainer.Train(global, ex, plan, 5);
  EXPECT_EQ(more.steps, 10);
  EXPECT_EQ(more.num_examples, 40);
  // A budget equal to the whole run is not "exhausted".
  plan.max_steps = 16;
  EXPECT_FALSE(trainer.Train(global, ex, plan, 5)->budget_exhausted);
  EXPECT_EQ(trainer.Train(global, ex, plan, 5)->delta, full.delta);
}

// ExamplePasses counts the rows the trainer's steps actually use, with and without a budget.
TEST(LocalTrainerTest, ExamplePassesMatchWhatTrainingRuns) {
  const auto ex = MakeExamples(23, 9);
  const auto global = GlobalParams("logreg", 2);
  auto trainer = MakeTrainer("logreg");
  for (int64_t max_steps : {0, 1, 2, 3, 4, 5, 7, 9, 10, 50}) {
    TrainingPlan plan{.local_epochs = 3, .batch_size = 8, .learning_rate = 0.1};
    plan.max_steps = max_steps;
    int64_t rows = 0;
    const int64_t per_epoch = 3;  // 8 + 8 + 7
    auto update = trainer.Train(global, ex, plan, 1, [&](int64_t steps) {
      rows += (steps - 1) % per_epoch == per_epoch - 1 ? 7 : 8;
      return absl::OkStatus();
    });
    ASSERT_TRUE(update.ok()) << update.status();
    EXPECT_EQ(ExamplePasses(23, plan), rows) << "max_steps " << max_steps;
  }
  TrainingPlan plan{.local_epochs = 2, .batch_size = 10};
  EXPECT_EQ(ExamplePasses(0, plan), 0);
  EXPECT_EQ(ExamplePasses(40, plan), 80);
}

// The time budget is checked after each step: a budget shorter than any step runs exactly one.
TEST(LocalTrainerTest, TimeBudgetStopsAfterTheStepThatExceededIt) {
  const auto ex = MakeExamples(40, 8);
  const auto global = GlobalParams("logreg", 4);
  TrainingPlan plan{.local_epochs = 3, .batch_size = 4, .learning_rate = 0.1};
  plan.max_seconds = 1e-12;
  auto trainer = MakeTrainer("logreg");
  const ClientUpdate update = *trainer.Train(global, ex, plan, 2);
  EXPECT_EQ(update.steps, 1);
  EXPECT_EQ(update.num_examples, 4);
  EXPECT_TRUE(update.budget_exhausted);
}

TEST(LocalTrainerTest, BadBudgetsAreInvalidArgumentNamingTheField) {
  auto trainer = MakeTrainer("logreg");
  const auto global = GlobalParams("logreg", 1);
  const auto ex = MakeExamples(10, 6);
  TrainingPlan plan;
  plan.max_steps = -1;
  EXPECT_THAT(trainer.Train(global, ex, plan, 1).status().message(),
              testing::HasSubstr("max_steps"));
  plan.max_steps = 0;
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    plan.max_seconds = bad;
    auto status = trainer.Train(global, ex, plan, 1).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), testing::HasSubstr("max_seconds"));
  }
}

std::string Fixture(const std::string& name) {
  return std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/" + name;
}

// A TorchScript model (written in Python) and the registry model of the same architecture, given
// the same global parameters, train to the same delta: the interpreter changes nothing.
TEST(LocalTrainerTest, TorchScriptTwoNnTrainsLikeItsRegistryTwin) {
  const auto ex = MakeExamples(60, 7);
  auto script = models::CreateModel(Fixture("tiny_2nn.pt"), kInfo, 0);
  ASSERT_TRUE(script.ok()) << script.status();
  const std::vector<float> global = models::FlattenParameters(**script);
  TrainingPlan plan{.local_epochs = 2, .batch_size = 10, .learning_rate = 0.1, .momentum = 0.5};
  LocalTrainer script_trainer(*script);
  auto script_update = script_trainer.Train(global, ex, plan, 3);
  ASSERT_TRUE(script_update.ok()) << script_update.status();

  // The same 6-8-8-3 MLP by hand: Linear layers in the same order, so the same flat layout.
  struct Mlp : models::Model {
    Mlp()
        : fc1(register_module("fc1", torch::nn::Linear(6, 8))),
          fc2(register_module("fc2", torch::nn::Linear(8, 8))),
          fc3(register_module("fc3", torch::nn::Linear(8, 3))) {}
    torch::Tensor forward(torch::Tensor x) override {
      return fc3(torch::relu(fc2(torch::relu(fc1(x)))));
    }
    torch::nn::Linear fc1, fc2, fc3;
  };
  LocalTrainer twin_trainer(std::make_shared<Mlp>());
  auto twin_update = twin_trainer.Train(global, ex, plan, 3);
  ASSERT_TRUE(twin_update.ok()) << twin_update.status();
  ASSERT_EQ(script_update->delta.size(), twin_update->delta.size());
  for (size_t i = 0; i < twin_update->delta.size(); ++i) {
    ASSERT_NEAR(script_update->delta[i], twin_update->delta[i], 1e-6) << i;
  }
  EXPECT_NEAR(script_update->train_loss, twin_update->train_loss, 1e-6);
}

// BatchNorm's running statistics are part of the delta (averaged like parameters); they change in
// training although no gradient reaches them.
TEST(LocalTrainerTest, BatchNormRunningStatisticsTravelInTheDelta) {
  const auto ex = MakeExamples(50, 8);
  auto model = models::CreateModel(Fixture("tiny_bn.pt"), kInfo, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  const ParameterLayout layout = models::LayoutOf(**model);
  const std::vector<float> global = models::FlattenParameters(**model);
  LocalTrainer trainer(*model);
  TrainingPlan plan{.local_epochs = 1, .batch_size = 10, .learning_rate = 0.1};
  auto update = trainer.Train(global, ex, plan, 1);
  ASSERT_TRUE(update.ok()) << update.status();
  for (const auto& entry : layout.entries) {
    double norm = 0;
    for (int64_t i = entry.offset; i < entry.offset + entry.numel; ++i) {
      norm += update->delta[i] * update->delta[i];
    }
    EXPECT_GT(norm, 0) << entry.name << " did not change";
  }
  // Starting again from the same global parameters (running stats included) gives the same delta:
  // nothing of the previous round's statistics stays behind in the model instance.
  auto again = trainer.Train(global, ex, plan, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->delta, update->delta);
}

// A model's own loss() is what training minimises and reports.
TEST(LocalTrainerTest, OwnLossMethodIsTrainedOn) {
  const auto ex = MakeExamples(40, 9);
  auto own = models::CreateModel(Fixture("tiny_own_loss.pt"), kInfo, 0);
  ASSERT_TRUE(own.ok()) << own.status();
  const std::vector<float> global = models::FlattenParameters(**own);
  // One full-batch step of plain SGD: the reported loss is the loss at the global parameters.
  TrainingPlan plan{.local_epochs = 1, .batch_size = 40, .learning_rate = 0.1};
  LocalTrainer trainer(*own);
  auto update = trainer.Train(global, ex, plan, 1);
  ASSERT_TRUE(update.ok()) << update.status();

  auto reference = models::CreateModel(Fixture("tiny_own_loss.pt"), kInfo, 0);
  ASSERT_TRUE(models::AssignParameters(global, **reference).ok());
  torch::NoGradGuard no_grad;
  const auto x = torch::from_blob(const_cast<float*>(ex.features.data()), {40, 6});
  const auto y = torch::from_blob(const_cast<int64_t*>(ex.labels.data()), {40}, torch::kInt64);
  namespace F = torch::nn::functional;
  const torch::Tensor logits = (*reference)->forward(x);
  const double smoothed =
      F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(0.1)).item<double>();
  const double plain = F::cross_entropy(logits, y).item<double>();
  ASSERT_GT(std::abs(smoothed - plain), 1e-3);
  EXPECT_NEAR(update->train_loss, smoothed, 1e-5);
}

// Regression: float targets y = W x + b (2 targets), a TorchScript MLP declaring
// fedkit_task = "regression", trained on mean squared error.
TEST(LocalTrainerTest, RegressionModelTrainsOnMeanSquaredError) {
  const data::DatasetInfo info{{6}, 0, /*target_dim=*/2};
  data::Examples ex;
  ex.feature_dim = 6;
  ex.target_dim = 2;
  std::mt19937 rng(12);
  std::normal_distribution<float> normal;
  for (int i = 0; i < 200; ++i) {
    float y0 = 0.5f, y1 = -0.3f;
    for (int j = 0; j < 6; ++j) {
      const float v = normal(rng);
      ex.features.push_back(v);
      y0 += 0.4f * v * static_cast<float>(j % 3);
      y1 -= 0.2f * v * static_cast<float>(j % 2);
    }
    ex.targets.push_back(y0);
    ex.targets.push_back(y1);
  }
  ASSERT_EQ(ex.size(), 200);
  auto model = models::CreateModel(Fixture("tiny_regression.pt"), info, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<float> global = models::FlattenParameters(**model);
  LocalTrainer trainer(*model);

  // One full-batch step: the reported loss is the MSE at the global parameters.
  TrainingPlan full{.local_epochs = 1, .batch_size = 200, .learning_rate = 0.05};
  auto first = trainer.Train(global, ex, full, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  auto reference = models::CreateModel(Fixture("tiny_regression.pt"), info, 0);
  ASSERT_TRUE(models::AssignParameters(global, **reference).ok());
  {
    torch::NoGradGuard no_grad;
    const auto x = torch::from_blob(ex.features.data(), {200, 6});
    const auto y = torch::from_blob(ex.targets.data(), {200, 2});
    const double mse = torch::nn::functional::mse_loss((*reference)->forward(x), y).item<double>();
    EXPECT_NEAR(first->train_loss, mse, 1e-5);
    auto sums = models::EvaluateRange(**reference, ex, 0, 200);
    ASSERT_TRUE(sums.ok()) << sums.status();
    EXPECT_NEAR(sums->mean_loss(), mse, 1e-5);
  }

  // Training lowers the error a lot.
  TrainingPlan plan{.local_epochs = 20, .batch_size = 10, .learning_rate = 0.05};
  auto update = trainer.Train(global, ex, plan, 2);
  ASSERT_TRUE(update.ok()) << update.status();
  for (size_t i = 0; i < global.size(); ++i) global[i] += update->delta[i];
  auto later = trainer.Train(global, ex, full, 1);
  ASSERT_TRUE(later.ok());
  EXPECT_LT(later->train_loss, first->train_loss * 0.2);

  // The model declares regression: a classification dataset is refused at load, naming both.
  auto wrong_task =
      models::CreateModel(Fixture("tiny_regression.pt"), data::DatasetInfo{{6}, 2}, 0);
  ASSERT_FALSE(wrong_task.ok());
  EXPECT_THAT(std::string(wrong_task.status().message()),
              testing::HasSubstr("declares fedkit_task = 'regression' but the dataset is a "
                                 "classification dataset"));
  // A classifier cannot fit 2 regression targets' shape unless it has 2 outputs: refused too.
  auto classifier = models::CreateModel(Fixture("tiny_2nn.pt"), info, 0);
  ASSERT_FALSE(classifier.ok());
  EXPECT_THAT(std::string(classifier.status().message()),
              testing::HasSubstr("needs float regression outputs [2, 2]"));
}

}  // namespace
}  // namespace fedkit::client
