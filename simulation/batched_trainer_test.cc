#include "simulation/batched_trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/local_trainer.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "models/grouped_model.h"
#include "models/model.h"
#include "simulation/simulator.h"
#include "simulation/test_support.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

// `sizes[i]` examples for client i: features uniform in [-1, 1], labels from a fixed linear rule
// (so training moves the model).
std::vector<data::Examples> MakeClients(const data::DatasetInfo& info,
                                        const std::vector<int64_t>& sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<data::Examples> clients;
  const int64_t d = info.feature_dim();
  for (int64_t n : sizes) {
    data::Examples e;
    e.feature_dim = d;
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0;
      for (int64_t j = 0; j < d; ++j) {
        e.features.push_back(uniform(rng));
        sum += e.features.back() * static_cast<float>(j % 3);
      }
      e.labels.push_back(static_cast<int64_t>(std::fabs(sum)) % info.num_classes);
    }
    clients.push_back(std::move(e));
  }
  return clients;
}

data::DatasetInfo Flat(int64_t d, int classes) {
  data::DatasetInfo info;
  info.feature_shape = {d};
  info.num_classes = classes;
  return info;
}

data::DatasetInfo Image(int64_t c, int64_t h, int64_t w, int classes) {
  data::DatasetInfo info;
  info.feature_shape = {c, h, w};
  info.num_classes = classes;
  return info;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double{a[i]} - b[i]));
  return m;
}

double MaxAbs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, std::fabs(double{v}));
  return m;
}

struct Case {
  std::string model;
  data::DatasetInfo info;
  client::TrainingPlan plan;
};

// Each client of a group trained together gets what LocalTrainer gives it alone (same steps,
// examples, budget flag), its delta and loss equal up to float summation order.
void ExpectEqualsPerClientTraining(const Case& c, const std::vector<int64_t>& sizes) {
  models::UseSingleThreadedCompute();
  const std::vector<data::Examples> clients = MakeClients(c.info, sizes, 11);
  auto model = models::CreateModel(c.model, c.info, 5);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<float> global = models::FlattenParameters(**model);
  std::vector<const data::Examples*> pointers;
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < clients.size(); ++i) {
    pointers.push_back(&clients[i]);
    seeds.push_back(client::LocalTrainingSeed(9, 2, static_cast<int64_t>(i)));
  }
  auto batched = BatchedTrainer::Create(c.model, c.info);
  ASSERT_TRUE(batched.ok()) << batched.status();
  auto together = (*batched)->Train(global, pointers, c.plan, seeds);
  ASSERT_TRUE(together.ok()) << together.status();
  ASSERT_EQ(together->size(), clients.size());
  client::LocalTrainer alone_trainer(*models::CreateModel(c.model, c.info, 5));
  for (size_t i = 0; i < clients.size(); ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    auto alone = alone_trainer.Train(global, clients[i], c.plan, seeds[i]);
    ASSERT_TRUE(alone.ok()) << alone.status();
    const client::ClientUpdate& t = (*together)[i];
    EXPECT_EQ(t.steps, alone->steps);
    EXPECT_EQ(t.num_examples, alone->num_examples);
    EXPECT_EQ(t.budget_exhausted, alone->budget_exhausted);
    ASSERT_EQ(t.delta.size(), alone->delta.size());
    // Training moved the model, and both moved it to the same place.
    ASSERT_GT(MaxAbs(alone->delta), 1e-3);
    EXPECT_LT(MaxAbsDiff(t.delta, alone->delta), 1e-4 * std::max(1.0, MaxAbs(alone->delta)));
    EXPECT_NEAR(t.delta_norm, alone->delta_norm, 1e-4 * std::max(1.0, alone->delta_norm));
    EXPECT_NEAR(t.train_loss, alone->train_loss, 1e-4 * std::max(1.0, alone->train_loss));
  }
}

TEST(BatchedTrainerTest, LogregGroupEqualsPerClientTraining) {
  client::TrainingPlan plan{.local_epochs = 2, .batch_size = 4, .learning_rate = 0.1};
  ExpectEqualsPerClientTraining({"logreg", Flat(12, 3), plan}, {9, 4, 17, 1, 8});
}

TEST(BatchedTrainerTest, MlpWithMomentumProxAndClippingEqualsPerClientTraining) {
  client::TrainingPlan plan{.local_epochs = 3,
                            .batch_size = 5,
                            .learning_rate = 0.05,
                            .momentum = 0.9,
                            .prox_mu = 0.1,
                            .clip_norm = 0.5};
  ExpectEqualsPerClientTraining({"mlp", Flat(20, 4), plan}, {23, 7, 12});
}

TEST(BatchedTrainerTest, CnnGroupEqualsPerClientTraining) {
  client::TrainingPlan plan{.local_epochs = 1, .batch_size = 3, .learning_rate = 0.05};
  ExpectEqualsPerClientTraining({"cnn", Image(1, 8, 8, 3), plan}, {7, 5, 3});
}

TEST(BatchedTrainerTest, MaxStepsStopsEachClientWhereLocalTrainerStops) {
  client::TrainingPlan plan{
      .local_epochs = 4, .batch_size = 3, .learning_rate = 0.1, .max_steps = 5};
  ExpectEqualsPerClientTraining({"seed", Flat(10, 2), plan}, {30, 4, 11});
}

TEST(BatchedTrainerTest, AGroupOfOneIsLocalTraining) {
  client::TrainingPlan plan{.local_epochs = 2, .batch_size = 10, .learning_rate = 0.1};
  ExpectEqualsPerClientTraining({"mlp", Flat(16, 3), plan}, {25});
}

TEST(BatchedTrainerTest, RefusesWhatItCannotDo) {
  EXPECT_EQ(BatchedTrainer::Create("/tmp/model.pt", Flat(4, 2)).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(BatchedTrainer::Create("nosuchmodel", Flat(4, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto trainer = BatchedTrainer::Create("logreg", Flat(4, 2));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  const std::vector<data::Examples> clients = MakeClients(Flat(4, 2), {3, 3}, 1);
  const std::vector<const data::Examples*> both = {&clients[0], &clients[1]};
  const std::vector<float> global(10, 0.0f);
  client::TrainingPlan plan;
  plan.max_seconds = 1;
  auto timed = (*trainer)->Train(global, both, plan, {1, 2});
  EXPECT_EQ(timed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(timed.status().message(), HasSubstr("max_seconds"));
  plan.max_seconds = 0;
  EXPECT_EQ((*trainer)->Train(global, both, plan, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*trainer)->Train(global, {}, plan, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*trainer)->Train(std::vector<float>(9, 0.0f), both, plan, {1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const data::Examples empty{.feature_dim = 4};
  const std::vector<const data::Examples*> with_empty = {&clients[0], &empty};
  EXPECT_EQ((*trainer)->Train(global, with_empty, plan, {1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GroupedModelTest, EachMemberComputesWhatItsModelComputes) {
  for (const std::string name : {"logreg", "mlp", "seed", "cnn"}) {
    SCOPED_TRACE(name);
    const data::DatasetInfo info = name == "cnn" ? Image(2, 8, 8, 3) : Flat(128, 3);
    auto a = models::CreateModel(name, info, 1);
    auto b = models::CreateModel(name, info, 2);
    ASSERT_TRUE(a.ok() && b.ok());
    auto group = models::CreateGroupedModel(name, info, 2);
    ASSERT_TRUE(group.ok()) << group.status();
    ASSERT_TRUE((*group)->LoadAll(models::FlattenParameters(**a)).ok());
    EXPECT_EQ((*group)->Member(1), models::FlattenParameters(**a));
    // Member 1 gets b's parameters through the stacked tensors.
    {
      torch::NoGradGuard no_grad;
      const auto bp = (*b)->parameters();
      // Linear weights are stored transposed ([in, out] per member).
      for (size_t i = 0; i < bp.size(); ++i) {
        (*group)->parameters()[i][1].copy_(bp[i].dim() == 2 ? bp[i].t() : bp[i]);
      }
    }
    EXPECT_EQ((*group)->Member(1), models::FlattenParameters(**b));
    const torch::Tensor x = torch::rand({2, 5, info.feature_dim()});
    const torch::Tensor out = (*group)->Forward(x);
    EXPECT_TRUE(torch::allclose(out[0], (*a)->forward(x[0]), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(out[1], (*b)->forward(x[1]), 1e-4, 1e-5));
  }
}

// The Linear-and-ReLU models' gradients without autograd equal autograd's (an arbitrary output
// gradient, random parameters and inputs, ReLUs both on and off).
TEST(GroupedModelTest, ManualGradientsEqualAutograd) {
  for (const std::string name : {"logreg", "mlp", "seed"}) {
    SCOPED_TRACE(name);
    const data::DatasetInfo info = Flat(64, 4);
    auto group = models::CreateGroupedModel(name, info, 3);
    ASSERT_TRUE(group.ok()) << group.status();
    models::GroupedModel& m = **group;
    ASSERT_TRUE(m.has_manual_gradients());
    torch::manual_seed(5);
    {
      torch::NoGradGuard no_grad;
      for (const auto& p : m.parameters()) p.normal_(0, 0.3);
    }
    const torch::Tensor x = torch::randn({3, 6, info.feature_dim()});
    const torch::Tensor out = m.Forward(x);
    const torch::Tensor output_grad = torch::randn_like(out);
    for (const auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
    (out * output_grad).sum().backward();
    std::vector<torch::Tensor> manual;
    {
      torch::NoGradGuard no_grad;
      const torch::Tensor again = m.ForwardForGradients(x);
      EXPECT_TRUE(torch::allclose(again, out.detach(), 1e-5, 1e-6));
      manual = m.Gradients(output_grad);
    }
    ASSERT_EQ(manual.size(), m.parameters().size());
    for (size_t i = 0; i < manual.size(); ++i) {
      EXPECT_TRUE(torch::allclose(manual[i], m.parameters()[i].grad(), 1e-4, 1e-5)) << i;
    }
  }
  auto cnn = models::CreateGroupedModel("cnn", Image(2, 8, 8, 3), 2);
  ASSERT_TRUE(cnn.ok());
  EXPECT_FALSE((*cnn)->has_manual_gradients());  // autograd's path
}

// The simulator with --client-batching: rounds whose metrics and global model equal those of
// one-by-one training up to float rounding, whatever the group size and thread count, attackers
// (trained alone) included.
TEST(SimulatorClientBatchingTest, RoundsEqualOneByOneTraining) {
  auto dataset = test_support::SmallSynthetic(40);
  ASSERT_NE(dataset, nullptr);
  SimulationOptions options;
  options.model = "mlp";
  options.clients_per_round = 9;
  options.rounds = 3;
  options.plan = {
      .local_epochs = 2, .batch_size = 5, .learning_rate = 0.05, .momentum = 0.5, .clip_norm = 2.0};
  options.seed = 7;
  options.attack = *ParseAttackSpec("sign-flip");
  options.attack_fraction = 0.2;
  auto run = [&](int64_t batching, int threads) {
    SimulationOptions o = options;
    o.client_batching = batching;
    o.threads = threads;
    auto sim = Simulator::Create(o, dataset.get());
    EXPECT_TRUE(sim.ok()) << sim.status();
    std::vector<RoundResult> results = test_support::RunAll(**sim, 3);
    return std::make_pair(results, (*sim)->global_parameters());
  };
  const auto [plain, plain_model] = run(0, 1);
  ASSERT_EQ(plain.size(), 3u);
  for (const auto& [batching, threads] : std::vector<std::pair<int64_t, int>>{{4, 1}, {9, 2}}) {
    SCOPED_TRACE(absl::StrCat("batching ", batching, ", threads ", threads));
    const auto [batched, batched_model] = run(batching, threads);
    ASSERT_EQ(batched.size(), 3u);
    for (size_t r = 0; r < 3; ++r) {
      EXPECT_EQ(batched[r].contributors, plain[r].contributors);
      EXPECT_EQ(batched[r].examples, plain[r].examples);
      EXPECT_EQ(batched[r].attackers, plain[r].attackers);
      EXPECT_NEAR(batched[r].train_loss, plain[r].train_loss, 1e-4);
      EXPECT_NEAR(batched[r].mean_delta_norm, plain[r].mean_delta_norm, 1e-4);
    }
    EXPECT_GT(*plain[0].attackers + *plain[1].attackers + *plain[2].attackers, 0);
    EXPECT_LT(MaxAbsDiff(batched_model, plain_model), 1e-4);
  }
}

TEST(SimulatorClientBatchingTest, RefusesWhatItDoesNotBatch) {
  auto dataset = test_support::SmallSynthetic(20);
  ASSERT_NE(dataset, nullptr);
  SimulationOptions options;
  options.model = "logreg";
  options.clients_per_round = 4;
  options.client_batching = -1;
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              HasSubstr("`client_batching`"));
  options.client_batching = 4;
  options.plan.max_seconds = 1;
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              HasSubstr("`plan.max_seconds`"));
  options.plan.max_seconds = 0;
  options.algorithm.algorithm = Algorithm::kScaffold;
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              HasSubstr("`algorithm` scaffold"));
  options.algorithm.algorithm = Algorithm::kFedAvg;
  options.plan.clip_norm = 1;
  options.secure_aggregation = secagg::SecureAggregationSettings{};
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              HasSubstr("`secure_aggregation`"));
}

}  // namespace
}  // namespace fedkit::simulation
