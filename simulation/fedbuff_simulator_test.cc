#include "simulation/fedbuff_simulator.h"

#include <cmath>

#include "aggregation/aggregator.h"
#include "aggregation/server_optimizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "server/client_sampler.h"
#include "simulation/test_support.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<data::FederatedDataset> Synthetic(int64_t clients) {
  return test_support::SmallSynthetic(clients);
}

SimulationOptions SmallRun(int threads) {
  SimulationOptions options;
  options.algorithm.algorithm = Algorithm::kFedBuff;
  options.model = "logreg";
  options.rounds = 5;
  options.plan = {.local_epochs = 1, .batch_size = 10, .learning_rate = 0.05, .clip_norm = 5.0};
  options.seed = 11;
  options.threads = threads;
  options.eval_every = 1;
  return options;
}

// Commits 1 and 2, computed by hand from the schedule: train each arrival from the version it
// downloaded with its dispatch's seed, scale by w(s), and average weighted by examples.
TEST(FedBuffSimulatorTest, CommitsAreTheStalenessWeightedAverageOfTheBuffer) {
  models::UseSingleThreadedCompute();
  auto dataset = Synthetic(30);
  const SimulationOptions options = SmallRun(1);
  // No device speeds: every upload takes 0 s and arrivals come in dispatch order. With C = 6 and
  // K = 3 the first commit holds dispatches 0-2 (version 0, fresh) and the second dispatches 3-5
  // (version 0, one version stale).
  const FedBuffOptions fedbuff{.buffer_size = 3, .concurrency = 6};
  absl::StatusOr<std::unique_ptr<FedBuffSimulator>> sim =
      FedBuffSimulator::Create(options, fedbuff, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  absl::StatusOr<AsyncSchedule> twin = AsyncSchedule::Create(
      {.population = 30, .concurrency = 6, .buffer_size = 3, .seed = options.seed},
      [](int64_t) { return 0.0; });
  ASSERT_TRUE(twin.ok());

  auto model =
      models::CreateModel("logreg", dataset->info(), server::InitialModelSeed(options.seed));
  ASSERT_TRUE(model.ok());
  std::vector<float> global = models::FlattenParameters(**model);
  const std::vector<float> version0 = global;
  client::LocalTrainer trainer(*model);
  auto server_optimizer = *aggregation::MakeServerOptimizer(options.server_optimizer,
                                                            static_cast<int64_t>(global.size()));
  for (int c = 1; c <= 2; ++c) {
    absl::StatusOr<BufferCommit> commit = twin->Next();
    ASSERT_TRUE(commit.ok());
    auto aggregate = *aggregation::WeightedFedAvgAggregator::Create(
        static_cast<int64_t>(global.size()), aggregation::UpdateValueBound(options.plan.clip_norm),
        aggregation::kDefaultMaxWeight);
    for (const AsyncArrival& a : commit->arrivals) {
      EXPECT_EQ(a.start_version, 0);
      EXPECT_EQ(a.staleness, c - 1);
      absl::StatusOr<client::ClientUpdate> update = trainer.Train(
          version0, dataset->TrainExamples(a.client), options.plan,
          Simulator::ClientTrainingSeed(options.seed, static_cast<int>(a.dispatch + 1), a.client));
      ASSERT_TRUE(update.ok());
      const float w = c == 1 ? 1.0f : static_cast<float>(1.0 / std::sqrt(2.0));
      for (float& v : update->delta) v *= w;
      ASSERT_TRUE(aggregate->Accumulate(update->delta, update->num_examples).ok());
    }
    absl::StatusOr<aggregation::AggregateReport> report = aggregate->Report();
    ASSERT_TRUE(report.ok());
    ASSERT_TRUE(server_optimizer->Apply(report->average, absl::MakeSpan(global)).ok());

    absl::StatusOr<RoundResult> result = (*sim)->RunRound();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->round, c);
    EXPECT_EQ(result->contributors, 3);
    EXPECT_EQ(result->staleness_mean, static_cast<double>(c - 1));
    EXPECT_EQ(result->staleness_max, c - 1);
    EXPECT_EQ(result->virtual_elapsed_seconds, 0.0);
    ASSERT_TRUE(result->eval.has_value());
    EXPECT_EQ((*sim)->global_parameters(), global) << "commit " << c;
  }
}

TEST(FedBuffSimulatorTest, ResultsDoNotDependOnTheNumberOfThreads) {
  auto dataset = Synthetic(40);
  SimulationOptions one = SmallRun(1);
  one.model = "mlp";
  one.system.device_speeds = "two-speed:0.01,0.2,10";
  SimulationOptions three = one;
  three.threads = 3;
  const FedBuffOptions fedbuff{.buffer_size = 4, .concurrency = 10};
  auto a = *FedBuffSimulator::Create(one, fedbuff, dataset.get());
  auto b = *FedBuffSimulator::Create(three, fedbuff, dataset.get());
  double previous = 0.0;
  int64_t stale = 0;
  for (int r = 1; r <= 5; ++r) {
    absl::StatusOr<RoundResult> x = a->RunRound();
    absl::StatusOr<RoundResult> y = b->RunRound();
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->train_loss, y->train_loss);
    EXPECT_EQ(x->eval->loss_sum, y->eval->loss_sum);
    EXPECT_EQ(x->virtual_elapsed_seconds, y->virtual_elapsed_seconds);
    EXPECT_GT(*x->virtual_elapsed_seconds, previous);  // devices take time now
    EXPECT_DOUBLE_EQ(*x->virtual_elapsed_seconds, previous + *x->virtual_seconds);
    previous = *x->virtual_elapsed_seconds;
    stale += x->staleness_max;
    // At most one version per client in flight, and the global one.
    EXPECT_LE(a->versions_held(), fedbuff.concurrency + 1);
  }
  EXPECT_GT(stale, 0);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
}

TEST(FedBuffSimulatorTest, StalenessWeightingChangesTheModelOnlyWhenUpdatesAreStale) {
  auto dataset = Synthetic(30);
  SimulationOptions options = SmallRun(1);
  options.system.device_speeds = "two-speed:0.01,0.3,10";
  FedBuffOptions sqrt_weighting{.buffer_size = 3, .concurrency = 9};
  FedBuffOptions constant = sqrt_weighting;
  constant.staleness.exponent = 0;
  auto a = *FedBuffSimulator::Create(options, sqrt_weighting, dataset.get());
  auto b = *FedBuffSimulator::Create(options, constant, dataset.get());
  bool diverged = false;
  for (int r = 1; r <= 5; ++r) {
    absl::StatusOr<RoundResult> x = a->RunRound();
    ASSERT_TRUE(x.ok() && b->RunRound().ok());
    if (!diverged) {
      // Equal until the first commit with a stale update.
      EXPECT_EQ(a->global_parameters() == b->global_parameters(), x->staleness_max == 0) << r;
      diverged = x->staleness_max > 0;
    }
  }
  EXPECT_TRUE(diverged);
}

TEST(FedBuffSimulatorTest, RefusesWhatItDoesNotSupport) {
  auto dataset = Synthetic(20);
  const FedBuffOptions fedbuff{.buffer_size = 2, .concurrency = 5};
  auto refused = [&](SimulationOptions options) {
    return FedBuffSimulator::Create(options, fedbuff, dataset.get()).status();
  };
  SimulationOptions dp = SmallRun(1);
  dp.dp.mode = privacy::DpMode::kCentral;
  EXPECT_THAT(refused(dp).message(), HasSubstr("`mode` is not supported with `algorithm` fedbuff"));
  SimulationOptions secagg = SmallRun(1);
  secagg.secure_aggregation.emplace();
  EXPECT_THAT(refused(secagg).message(), HasSubstr("`secure_aggregation`"));
  SimulationOptions median = SmallRun(1);
  median.aggregator.kind = aggregation::AggregatorKind::kMedian;
  EXPECT_THAT(refused(median).message(), HasSubstr("`aggregator`"));
  SimulationOptions scaffold = SmallRun(1);
  scaffold.algorithm.algorithm = Algorithm::kScaffold;
  EXPECT_THAT(refused(scaffold).message(), HasSubstr("runs `algorithm` fedbuff, not scaffold"));
  SimulationOptions variates = SmallRun(1);
  variates.algorithm.control_variates_dir = "/tmp/x";
  EXPECT_THAT(refused(variates).message(), HasSubstr("`control_variates_dir` is not supported"));
  SimulationOptions deadline = SmallRun(1);
  deadline.system.deadline_seconds = 10;
  EXPECT_THAT(refused(deadline).message(), HasSubstr("`deadline_seconds`"));
  SimulationOptions speeds = SmallRun(1);
  speeds.system.device_speeds = "two-speed:1,2,3";
  EXPECT_THAT(refused(speeds).message(), HasSubstr("--device-speeds: two-speed"));
  EXPECT_THAT(
      FedBuffSimulator::Create(SmallRun(1), {.buffer_size = 2, .concurrency = 21}, dataset.get())
          .status()
          .message(),
      HasSubstr("`concurrency`"));
  EXPECT_THAT(
      FedBuffSimulator::Create(SmallRun(1), {.buffer_size = 0, .concurrency = 2}, dataset.get())
          .status()
          .message(),
      HasSubstr("`buffer_size`"));
}

}  // namespace
}  // namespace fedkit::simulation
