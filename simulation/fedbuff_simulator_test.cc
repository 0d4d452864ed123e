#include "simulation/fedbuff_simulator.h"

#include <cmath>
#include <map>
#include <optional>

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

// Under secure aggregation each buffer is a cohort: its members train from one version, the
// in-memory protocol sums their fixed-point inputs, and the commit is the decoded weighted average
// times w(s). Computed here in the clear from the twin cohort schedule: equal within the fixed
// point's rounding; and the same for any number of threads.
// With over_select, cohorts of K' = ceil(K (1 + over_select)): the first K to finish commit and the
// others drop out at the masked upload, untrained.
void CheckSecureCohorts(double over_select, int64_t cohort_size) {
  models::UseSingleThreadedCompute();
  auto dataset = Synthetic(30);
  SimulationOptions options = SmallRun(1);
  options.secure_aggregation.emplace();
  // SecAgg's complete graph: with six members SecAgg+'s sparse one can leave a dropped member with
  // too few share holders among four survivors, and the cohort aborts (as it would on devices).
  options.secure_aggregation->variant = secagg::Variant::kSecAgg;
  options.system.device_speeds = "two-speed:0.01,0.3,10";
  options.system.over_select = over_select;
  const FedBuffOptions fedbuff{.buffer_size = 4, .concurrency = 2 * cohort_size};
  auto sim = FedBuffSimulator::Create(options, fedbuff, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  SimulationOptions threaded = options;
  threaded.threads = 3;
  auto sim3 = *FedBuffSimulator::Create(threaded, fedbuff, dataset.get());
  absl::StatusOr<std::optional<DeviceSpeeds>> speeds = MakeDeviceSpeeds(options);
  ASSERT_TRUE(speeds.ok() && speeds->has_value());
  absl::StatusOr<AsyncSchedule> twin = AsyncSchedule::Create(
      {.population = 30,
       .concurrency = 2 * cohort_size,
       .buffer_size = 4,
       .seed = options.seed,
       .cohorts = true,
       .cohort_size = cohort_size},
      [&](int64_t client) {
        return (*speeds)->RoundSeconds(client, dataset->NumTrainExamples(client),
                                       options.plan.local_epochs);
      });
  ASSERT_TRUE(twin.ok());

  auto model =
      models::CreateModel("logreg", dataset->info(), server::InitialModelSeed(options.seed));
  ASSERT_TRUE(model.ok());
  std::vector<float> global = models::FlattenParameters(**model);
  std::map<int64_t, std::vector<float>> versions = {{0, global}};
  client::LocalTrainer trainer(*model);
  auto server_optimizer = *aggregation::MakeServerOptimizer(options.server_optimizer,
                                                            static_cast<int64_t>(global.size()));
  int64_t stale = 0;
  for (int c = 1; c <= 5; ++c) {
    absl::StatusOr<BufferCommit> commit = twin->Next();
    ASSERT_TRUE(commit.ok());
    std::vector<double> sum(global.size(), 0.0);
    double weight = 0;
    for (const AsyncArrival& a : commit->arrivals) {
      absl::StatusOr<client::ClientUpdate> update = trainer.Train(
          versions.at(a.start_version), dataset->TrainExamples(a.client), options.plan,
          Simulator::ClientTrainingSeed(options.seed, static_cast<int>(a.dispatch + 1), a.client));
      ASSERT_TRUE(update.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] += update->num_examples * update->delta[j];
      weight += static_cast<double>(update->num_examples);
    }
    const int64_t staleness = commit->arrivals.front().staleness;
    stale = std::max(stale, staleness);
    const double w = 1.0 / std::sqrt(1.0 + static_cast<double>(staleness));
    std::vector<float> average(global.size());
    for (size_t j = 0; j < sum.size(); ++j) average[j] = static_cast<float>(w * sum[j] / weight);
    ASSERT_TRUE(server_optimizer->Apply(average, absl::MakeSpan(global)).ok());
    versions[commit->version] = global;

    absl::StatusOr<RoundResult> result = (*sim)->RunRound();
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(sim3->RunRound().ok());
    EXPECT_TRUE(result->aborted.empty()) << result->aborted;
    EXPECT_EQ(result->contributors, 4);
    EXPECT_EQ(result->participants, cohort_size);
    EXPECT_EQ(result->not_needed, cohort_size - 4);
    EXPECT_EQ(result->staleness_max, staleness);
    EXPECT_EQ(*result->virtual_elapsed_seconds, commit->seconds);
    ASSERT_TRUE(result->secure_aggregation.has_value());
    EXPECT_EQ(result->secure_aggregation->survivors, 4);
    const std::vector<float>& simulated = (*sim)->global_parameters();
    for (size_t j = 0; j < global.size(); ++j) {
      ASSERT_NEAR(simulated[j], global[j], 1e-4) << "commit " << c << ", value " << j;
    }
    EXPECT_EQ(sim3->global_parameters(), simulated) << "commit " << c;
    global = simulated;  // the next commit's versions are the simulator's own
    versions[commit->version] = global;
  }
  EXPECT_GT(stale, 0);  // two cohorts in flight
}

TEST(FedBuffSimulatorTest, UnderSecureAggregationACohortCommitsItsAverageTimesItsStalenessWeight) {
  CheckSecureCohorts(0.0, 4);
}

TEST(FedBuffSimulatorTest, AnOverSelectedSecureCohortCommitsItsFirstKToFinish) {
  CheckSecureCohorts(0.5, 6);
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
  SimulationOptions unclipped = SmallRun(1);
  unclipped.secure_aggregation.emplace();
  unclipped.plan.clip_norm = 0;
  EXPECT_THAT(refused(unclipped).message(), HasSubstr("needs a clip norm"));
  SimulationOptions cohorts = SmallRun(1);
  cohorts.secure_aggregation.emplace();
  EXPECT_THAT(FedBuffSimulator::Create(cohorts, {.buffer_size = 6, .concurrency = 5}, dataset.get())
                  .status()
                  .message(),
              HasSubstr("`concurrency` (5) is below `buffer_size` (6)"));
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
