// SCAFFOLD's control variates and store, FedNova's wiring, and both algorithms in the Simulator.
#include "simulation/scaffold.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "compression/spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/model.h"
#include "server/client_sampler.h"
#include "simulation/control_variates.h"
#include "simulation/simulator.h"
#include "simulation/test_support.h"

namespace fedkit::simulation {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh, empty directory under the test's temporary directory.
std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_scaffold_" + name);
  fs::remove_all(dir);
  return dir.string();
}

int64_t FilesIn(const std::string& dir) {
  int64_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) n += entry.is_regular_file() ? 1 : 0;
  return n;
}

std::unique_ptr<ControlVariateStore> Store(const std::string& dir, int64_t dimension) {
  auto store = dir.empty() ? ControlVariateStore::InMemory(dimension)
                           : ControlVariateStore::OnDisk(dir, dimension);
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

TEST(ControlVariateStoreTest, BothModesStartAtZeroAndHoldOnlyTheClientsStored) {
  const std::string dir = TempDir("modes");
  for (const std::string& where : {std::string(), dir}) {
    auto store = Store(where, 3);
    EXPECT_EQ(*store->Get(123456789), (std::vector<float>{0, 0, 0}));  // never stored: free
    EXPECT_EQ(store->clients_stored(), 0);
    ASSERT_TRUE(store->Add(7, std::vector<float>{1.0f, -2.0f, 0.5f}).ok());
    ASSERT_TRUE(store->Add(7, std::vector<float>{0.25f, 0.0f, 0.5f}).ok());
    ASSERT_TRUE(store->Add(2, std::vector<float>{-1.0f, 0.0f, 3.0f}).ok());
    EXPECT_EQ(*store->Get(7), (std::vector<float>{1.25f, -2.0f, 1.0f}));
    EXPECT_EQ(*store->Get(2), (std::vector<float>{-1.0f, 0.0f, 3.0f}));
    EXPECT_EQ(*store->Get(3), (std::vector<float>{0, 0, 0}));
    EXPECT_EQ(store->clients_stored(), 2);
    if (where.empty()) {
      EXPECT_FALSE(store->on_disk());
      EXPECT_EQ(store->bytes_in_memory(), 2 * 3 * 4);
    } else {
      EXPECT_TRUE(store->on_disk());
      EXPECT_EQ(store->bytes_in_memory(), 0);
      EXPECT_EQ(FilesIn(dir), 2);  // no temporary file left behind
      EXPECT_EQ(fs::file_size(fs::path(dir) / "client-7.f32"), 3u * 4u);
    }
    EXPECT_EQ(store->Add(1, std::vector<float>{1.0f}).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->Get(-1).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ControlVariateStoreTest, OnDiskRefusesAUsedDirectoryAndReportsDamagedFiles) {
  const std::string dir = TempDir("used");
  {
    auto store = Store(dir, 4);
    ASSERT_TRUE(store->Add(1, std::vector<float>{1, 2, 3, 4}).ok());
  }
  auto reopened = ControlVariateStore::OnDisk(dir, 4);  // a previous run's variates are there
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reopened.status().message(), HasSubstr("not empty"));

  const std::string other = TempDir("damaged");
  auto store = Store(other, 4);
  ASSERT_TRUE(store->Add(5, std::vector<float>{1, 2, 3, 4}).ok());
  fs::resize_file(fs::path(other) / "client-5.f32", 7);
  EXPECT_EQ(store->Get(5).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Add(5, std::vector<float>{1, 1, 1, 1}).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ControlVariateStore::InMemory(0).status().code(), absl::StatusCode::kInvalidArgument);
}

client::ClientUpdate Upload(std::vector<float> delta, int64_t steps) {
  client::ClientUpdate update;
  update.delta = std::move(delta);
  update.steps = steps;
  update.num_examples = 10;
  return update;
}

TEST(ScaffoldTest, ControlVariateUpdateMatchesAHandComputedExample) {
  // Dimension 2, N = 4 clients, lr 0.5. Every number below is exact in binary.
  auto scaffold = *Scaffold::Create(2, 4, 0.5, Store("", 2));
  // Round 1, c = 0. Client 1: delta_y (-1, 2) in K = 2 steps: delta_c = -c - delta_y / (K lr) =
  // (1, -2). Client 3: delta_y (0.5, 0.5), K = 1: delta_c = (-1, -1).
  EXPECT_EQ(*scaffold->Correction(1), (std::vector<float>{0, 0}));
  client::ClientUpdate a = Upload({-1.0f, 2.0f}, 2);
  client::ClientUpdate b = Upload({0.5f, 0.5f}, 1);
  EXPECT_EQ(*scaffold->OnUpload(1, 10, a), 2 * 4);  // delta_c's float32 bytes
  ASSERT_TRUE(scaffold->OnUpload(3, 10, b).ok());
  EXPECT_EQ(a.delta, (std::vector<float>{-1.0f, 2.0f}));  // the model update is FedAvg's
  EXPECT_EQ(*scaffold->store().Get(1), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(*scaffold->store().Get(3), (std::vector<float>{-1.0f, -1.0f}));
  std::optional<std::vector<float>> average = std::vector<float>{9.0f, 9.0f};
  ASSERT_TRUE(scaffold->EndRound(average).ok());
  EXPECT_EQ(*average, (std::vector<float>{9.0f, 9.0f}));
  // c = 0 + (|S| / N) mean(delta_c) = ((1 - 1) / 4, (-2 - 1) / 4) = (0, -0.75).
  EXPECT_EQ(scaffold->server_control(), (std::vector<double>{0.0, -0.75}));
  // Corrections c - c_i: client 1 (-1, 1.25); client 0, never seen, c itself.
  EXPECT_EQ(*scaffold->Correction(1), (std::vector<float>{-1.0f, 1.25f}));
  EXPECT_EQ(*scaffold->Correction(0), (std::vector<float>{0.0f, -0.75f}));
  // Round 2, client 1: delta_y (1, 1), K = 4: c_1+ = c_1 - c + (x - y) / (K lr)
  // = (1 - 0 - 0.5, -2 + 0.75 - 0.5) = (0.5, -1.75); delta_c = (-0.5, 0.25).
  client::ClientUpdate c = Upload({1.0f, 1.0f}, 4);
  ASSERT_TRUE(scaffold->OnUpload(1, 10, c).ok());
  EXPECT_EQ(*scaffold->store().Get(1), (std::vector<float>{0.5f, -1.75f}));
  std::optional<std::vector<float>> none;
  ASSERT_TRUE(scaffold->EndRound(none).ok());
  EXPECT_EQ(scaffold->server_control(), (std::vector<double>{-0.125, -0.6875}));
  EXPECT_EQ(scaffold->store().clients_stored(), 2);

  client::ClientUpdate no_steps = Upload({1.0f, 1.0f}, 0);
  EXPECT_EQ(scaffold->OnUpload(2, 10, no_steps).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scaffold->store().clients_stored(), 2);
}

// ---- In the simulator.

// The natural partition: unequal client sizes.
std::unique_ptr<data::FederatedDataset> Synthetic(int64_t clients) {
  return test_support::SmallSynthetic(clients);
}

SimulationOptions SmallRun(Algorithm algorithm, int threads) {
  SimulationOptions options;
  options.model = "logreg";
  options.clients_per_round = 6;
  options.rounds = 4;
  options.plan = {.local_epochs = 2, .batch_size = 10, .learning_rate = 0.05};
  options.seed = 11;
  options.threads = threads;
  options.eval_every = 1;
  options.algorithm.algorithm = algorithm;
  return options;
}

std::unique_ptr<Simulator> Trained(const SimulationOptions& options,
                                   const data::FederatedDataset& dataset, int rounds) {
  auto sim = Simulator::Create(options, &dataset);
  EXPECT_TRUE(sim.ok()) << sim.status();
  test_support::RunAll(**sim, rounds);
  return std::move(*sim);
}

TEST(SimulatorScaffoldTest, RoundOneIsFedAvgsAndLaterRoundsAreNot) {
  auto dataset = Synthetic(20);
  for (double momentum : {0.0, 0.9}) {
    SimulationOptions fedavg = SmallRun(Algorithm::kFedAvg, 2);
    fedavg.plan.momentum = momentum;
    SimulationOptions scaffold = fedavg;
    scaffold.algorithm.algorithm = Algorithm::kScaffold;
    // c = c_i = 0 in round 1: the correction is zero and the rounds are the same bit for bit.
    EXPECT_EQ(Trained(fedavg, *dataset, 1)->global_parameters(),
              Trained(scaffold, *dataset, 1)->global_parameters());
    // Afterwards c and the c_i of round 1's clients are not zero.
    EXPECT_NE(Trained(fedavg, *dataset, 2)->global_parameters(),
              Trained(scaffold, *dataset, 2)->global_parameters());
  }
}

TEST(SimulatorScaffoldTest, SecondRoundMatchesClientsReplayedByHand) {
  // Everyone participates (N = 10): round 1 stores c_i = -delta_i / (K_i lr) and
  // c = sum_i c_i / N; round 2's clients train with c - c_i. Replayed with the simulator's seeds.
  auto dataset = Synthetic(10);
  SimulationOptions options = SmallRun(Algorithm::kScaffold, 2);
  options.clients_per_round = 10;
  auto sim = Trained(options, *dataset, 1);
  const std::vector<float> x1 = sim->global_parameters();
  ASSERT_TRUE(sim->RunRound().ok());

  const double lr = options.plan.learning_rate;
  SimulationOptions fedavg_options = options;
  fedavg_options.algorithm.algorithm = Algorithm::kFedAvg;
  auto start = Simulator::Create(fedavg_options, dataset.get());
  const std::vector<float> x0 = (*start)->global_parameters();
  client::LocalTrainer trainer(*models::CreateModel("logreg", dataset->info(), 0));
  const size_t d = x0.size();
  std::vector<std::vector<float>> c_i(10, std::vector<float>(d));
  std::vector<double> c(d, 0.0);
  for (int64_t k = 0; k < 10; ++k) {
    auto update = trainer.Train(x0, dataset->TrainExamples(k), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 1, k));
    ASSERT_TRUE(update.ok());
    for (size_t j = 0; j < d; ++j) {
      c_i[k][j] = static_cast<float>(-update->delta[j] / (update->steps * lr));
      c[j] += c_i[k][j] / 10.0;
    }
  }
  std::vector<double> weighted(d, 0.0);
  double total = 0.0;
  for (int64_t k = 0; k < 10; ++k) {
    std::vector<float> correction(d);
    for (size_t j = 0; j < d; ++j) correction[j] = static_cast<float>(c[j] - c_i[k][j]);
    auto update = trainer.Train(x1, dataset->TrainExamples(k), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 2, k), {}, correction);
    ASSERT_TRUE(update.ok());
    for (size_t j = 0; j < d; ++j) weighted[j] += update->delta[j] * update->num_examples;
    total += update->num_examples;
  }
  double largest_step = 0;
  for (size_t j = 0; j < d; ++j) {
    EXPECT_NEAR(sim->global_parameters()[j], x1[j] + weighted[j] / total, 1e-5) << j;
    largest_step = std::max(largest_step, std::abs(weighted[j] / total));
  }
  EXPECT_GT(largest_step, 1e-3);
}

TEST(SimulatorScaffoldTest, OnDiskAndInMemoryRunsAreIdenticalForAnyThreadCount) {
  auto dataset = Synthetic(30);
  SimulationOptions memory = SmallRun(Algorithm::kScaffold, 1);
  memory.rounds = 5;
  auto in_memory = Trained(memory, *dataset, 5);
  for (int threads : {1, 3}) {
    SimulationOptions disk = memory;
    disk.threads = threads;
    disk.algorithm.control_variates_dir = TempDir(absl::StrCat("run", threads));
    auto on_disk = Trained(disk, *dataset, 5);
    EXPECT_EQ(in_memory->global_parameters(), on_disk->global_parameters()) << threads;
    // One file per client ever sampled, none for the others.
    std::set<int64_t> sampled;
    for (int r = 1; r <= 5; ++r) {
      auto chosen = server::SampleClients(30, 6, server::SamplingSeed(memory.seed, r));
      ASSERT_TRUE(chosen.ok());
      sampled.insert(chosen->begin(), chosen->end());
    }
    EXPECT_EQ(FilesIn(disk.algorithm.control_variates_dir), static_cast<int64_t>(sampled.size()));
    EXPECT_LT(sampled.size(), 30u);
  }
}

TEST(SimulatorFedNovaTest, RoundMatchesTheNormalizedAverageOfClientsReplayedByHand) {
  auto dataset = Synthetic(10);
  SimulationOptions options = SmallRun(Algorithm::kFedNova, 2);
  options.clients_per_round = 10;
  options.plan.momentum = 0.5;
  auto sim = Trained(options, *dataset, 1);

  auto fedavg_options = options;
  fedavg_options.algorithm.algorithm = Algorithm::kFedAvg;
  auto fedavg = Trained(fedavg_options, *dataset, 1);
  const std::vector<float> x0 =
      (*Simulator::Create(fedavg_options, dataset.get()))->global_parameters();
  client::LocalTrainer trainer(*models::CreateModel("logreg", dataset->info(), 0));
  const size_t d = x0.size();
  std::vector<double> normalized(d, 0.0);
  double examples = 0, weighted_norms = 0;
  std::set<int64_t> step_counts;
  for (int64_t k = 0; k < 10; ++k) {
    auto update = trainer.Train(x0, dataset->TrainExamples(k), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 1, k));
    ASSERT_TRUE(update.ok());
    const double rho = options.plan.momentum;
    const double tau = static_cast<double>(update->steps);
    const double a = (tau - rho * (1 - std::pow(rho, tau)) / (1 - rho)) / (1 - rho);
    const double n = static_cast<double>(update->num_examples);
    for (size_t j = 0; j < d; ++j) normalized[j] += n * update->delta[j] / a;
    examples += n;
    weighted_norms += n * a;
    step_counts.insert(update->steps);
  }
  ASSERT_GT(step_counts.size(), 1u);  // unequal sizes, so FedNova is not FedAvg
  const double tau_eff = weighted_norms / examples;
  double largest_difference = 0;
  for (size_t j = 0; j < d; ++j) {
    const double expected = x0[j] + tau_eff * normalized[j] / examples;
    EXPECT_NEAR(sim->global_parameters()[j], expected, 1e-5) << j;
    largest_difference =
        std::max(largest_difference, std::abs(static_cast<double>(sim->global_parameters()[j] -
                                                                  fedavg->global_parameters()[j])));
  }
  EXPECT_GT(largest_difference, 1e-4);
}

TEST(SimulatorFedNovaTest, EqualStepCountsGiveFedAvgAndThreadsDoNotMatter) {
  auto dataset = Synthetic(20);
  // Every client stops after 4 steps of 2 examples (each has more): equal tau.
  SimulationOptions fednova = SmallRun(Algorithm::kFedNova, 1);
  fednova.plan.batch_size = 2;
  fednova.plan.max_steps = 4;
  SimulationOptions fedavg = fednova;
  fedavg.algorithm.algorithm = Algorithm::kFedAvg;
  auto a = Trained(fednova, *dataset, 3);
  auto b = Trained(fedavg, *dataset, 3);
  for (size_t j = 0; j < a->global_parameters().size(); ++j) {
    EXPECT_NEAR(a->global_parameters()[j], b->global_parameters()[j], 1e-6) << j;
  }
  // Unequal steps (whole epochs on unequal data), one thread or three: the same bits.
  SimulationOptions one = SmallRun(Algorithm::kFedNova, 1);
  SimulationOptions three = SmallRun(Algorithm::kFedNova, 3);
  EXPECT_EQ(Trained(one, *dataset, 3)->global_parameters(),
            Trained(three, *dataset, 3)->global_parameters());
}

TEST(SimulatorAlgorithmTest, RefusedCombinationsNameTheFields) {
  auto dataset = Synthetic(10);
  struct Case {
    Algorithm algorithm;
    std::function<void(SimulationOptions&)> change;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {Algorithm::kScaffold,
       [](SimulationOptions& o) {
         o.plan.clip_norm = 1;
         o.secure_aggregation.emplace();
       },
       "`secure_aggregation`"},
      {Algorithm::kFedNova,
       [](SimulationOptions& o) {
         o.plan.clip_norm = 1;
         o.secure_aggregation.emplace();
       },
       "`secure_aggregation`"},
      {Algorithm::kScaffold,
       [](SimulationOptions& o) {
         o.plan.clip_norm = 1;
         o.dp.mode = DpMode::kCentral;
         o.dp.noise_multiplier = 1;
       },
       "`mode`"},
      {Algorithm::kScaffold,
       [](SimulationOptions& o) {
         o.plan.compression = *compression::ParseCompressionSpec("quantize:8");
       },
       "`plan.compression`"},
      {Algorithm::kFedNova,
       [](SimulationOptions& o) { o.aggregator = *aggregation::ParseAggregatorSpec("median"); },
       "`aggregator` median"},
      {Algorithm::kScaffold,
       [](SimulationOptions& o) {
         o.attack = *ParseAttackSpec("sign-flip");
         o.attack_fraction = 0.2;
       },
       "`attack`"},
      {Algorithm::kFedNova, [](SimulationOptions& o) { o.plan.prox_mu = 0.01; }, "`prox_mu`"},
      {Algorithm::kFedAvg,
       [](SimulationOptions& o) { o.algorithm.control_variates_dir = "/tmp/x"; },
       "`control_variates_dir` is for `algorithm` scaffold only"},
  };
  for (const Case& c : cases) {
    SimulationOptions options = SmallRun(c.algorithm, 1);
    c.change(options);
    auto sim = Simulator::Create(options, dataset.get());
    EXPECT_EQ(sim.status().code(), absl::StatusCode::kInvalidArgument) << c.expected;
    EXPECT_THAT(sim.status().message(), HasSubstr(c.expected));
    if (c.algorithm != Algorithm::kFedAvg) {
      EXPECT_THAT(sim.status().message(), HasSubstr("`algorithm`"));
    }
  }
  // FedNova runs under compression (the server normalizes what it decodes); SCAFFOLD does not.
  SimulationOptions compressed = SmallRun(Algorithm::kFedNova, 1);
  compressed.plan.compression = *compression::ParseCompressionSpec("quantize:8");
  EXPECT_TRUE(Simulator::Create(compressed, dataset.get()).ok());

  const std::string used = TempDir("used_by_simulator");
  fs::create_directories(used);
  std::ofstream(fs::path(used) / "old.f32") << "x";
  SimulationOptions options = SmallRun(Algorithm::kScaffold, 1);
  options.algorithm.control_variates_dir = used;
  auto sim = Simulator::Create(options, dataset.get());
  EXPECT_EQ(sim.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(sim.status().message(), HasSubstr("`control_variates_dir`"));
}

}  // namespace
}  // namespace fedkit::simulation
