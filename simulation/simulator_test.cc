#include "simulation/simulator.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::simulation {
namespace {

std::unique_ptr<data::FederatedDataset> Synthetic(int64_t clients) {
  data::FederatedDatasetOptions options;
  options.dataset = *data::ParseDatasetSpec("synthetic:0.5,0.5");
  options.num_clients = clients;
  options.partition = *data::ParsePartitionSpec("natural");
  options.seed = 3;
  options.synthetic_eval_clients = 50;
  auto dataset = data::MakeFederatedDataset(options);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  return std::move(*dataset);
}

SimulationOptions SmallRun(int threads) {
  SimulationOptions options;
  options.model = "logreg";
  options.clients_per_round = 8;
  options.rounds = 4;
  options.plan = {.local_epochs = 2, .batch_size = 10, .learning_rate = 0.05};
  options.seed = 11;
  options.threads = threads;
  options.eval_every = 1;
  return options;
}

std::vector<RoundResult> RunAll(Simulator& sim, int rounds) {
  std::vector<RoundResult> results;
  for (int r = 0; r < rounds; ++r) {
    auto result = sim.RunRound();
    EXPECT_TRUE(result.ok()) << result.status();
    if (result.ok()) results.push_back(*result);
  }
  return results;
}

TEST(SimulatorTest, ResultsDoNotDependOnTheNumberOfThreads) {
  auto dataset = Synthetic(40);
  for (const char* model : {"logreg", "mlp"}) {
    auto options_one = SmallRun(1);
    options_one.model = model;
    options_one.plan.momentum = 0.5;
    options_one.plan.clip_norm = 0.5;
    options_one.server_optimizer.kind = aggregation::ServerOptimizerOptions::Kind::kAdam;
    options_one.server_optimizer.learning_rate = 0.01;
    auto options_three = options_one;
    options_three.threads = 3;
    auto one = *Simulator::Create(options_one, dataset.get());
    auto three = *Simulator::Create(options_three, dataset.get());
    auto a = RunAll(*one, 4);
    auto b = RunAll(*three, 4);
    ASSERT_EQ(a.size(), 4u);
    ASSERT_EQ(b.size(), 4u);
    EXPECT_EQ(one->global_parameters(), three->global_parameters()) << model;
    for (int r = 0; r < 4; ++r) {
      EXPECT_EQ(a[r].train_loss, b[r].train_loss);
      EXPECT_EQ(a[r].eval->loss_sum, b[r].eval->loss_sum);
      EXPECT_EQ(a[r].eval->correct, b[r].eval->correct);
    }
  }
}

TEST(SimulatorTest, SameSeedSameModelOtherSeedOtherModel) {
  auto dataset = Synthetic(40);
  auto a = *Simulator::Create(SmallRun(2), dataset.get());
  auto b = *Simulator::Create(SmallRun(2), dataset.get());
  auto other_options = SmallRun(2);
  other_options.seed = 12;
  auto c = *Simulator::Create(other_options, dataset.get());
  RunAll(*a, 2);
  RunAll(*b, 2);
  RunAll(*c, 2);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
  EXPECT_NE(a->global_parameters(), c->global_parameters());
}

TEST(SimulatorTest, AccuracyRisesOnSynthetic) {
  auto dataset = Synthetic(60);
  auto options = SmallRun(2);
  options.rounds = 30;
  options.eval_every = 0;
  options.clients_per_round = 10;
  auto sim = *Simulator::Create(options, dataset.get());
  const double before = sim->Evaluate()->accuracy();
  auto results = RunAll(*sim, 30);
  ASSERT_EQ(results.size(), 30u);
  ASSERT_TRUE(results.back().eval.has_value());  // the last round is always evaluated
  EXPECT_FALSE(results[10].eval.has_value());    // eval_every = 0: only the last
  EXPECT_GT(results.back().eval->accuracy(), before + 0.15)
      << "before " << before << " after " << results.back().eval->accuracy();
  EXPECT_EQ(results.back().participants, 10);
}

TEST(SimulatorTest, PlainFedAvgRoundEqualsTheWeightedMeanOfClientDeltas) {
  // Server SGD with lr 1 and no momentum: the new global model is the start plus the
  // example-weighted mean of the clients' deltas. Replay every client by hand with the simulator's
  // seeds.
  auto dataset = Synthetic(10);
  auto options = SmallRun(2);
  options.clients_per_round = 10;  // everyone, so the sample is known
  auto sim = *Simulator::Create(options, dataset.get());
  const std::vector<float> start = sim->global_parameters();
  ASSERT_TRUE(sim->RunRound().ok());

  std::vector<double> weighted(start.size(), 0.0);
  double total = 0.0;
  client::LocalTrainer trainer(*models::CreateModel("logreg", dataset->info(), 0));
  for (int64_t c = 0; c < 10; ++c) {
    auto update = trainer.Train(start, dataset->TrainExamples(c), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 1, c));
    ASSERT_TRUE(update.ok());
    for (size_t i = 0; i < start.size(); ++i)
      weighted[i] += update->delta[i] * update->num_examples;
    total += update->num_examples;
  }
  for (size_t i = 0; i < start.size(); ++i) {
    EXPECT_NEAR(sim->global_parameters()[i], start[i] + weighted[i] / total, 1e-6) << i;
  }
}

TEST(SimulatorTest, InvalidOptionsAreClearErrors) {
  auto dataset = Synthetic(5);
  auto options = SmallRun(1);
  options.clients_per_round = 6;
  auto too_many = Simulator::Create(options, dataset.get());
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), testing::HasSubstr("clients per round"));

  options = SmallRun(1);
  options.model = "cnn";  // synthetic features are not images
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());

  options = SmallRun(1);
  options.plan.learning_rate = -1;
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());
}

// Secure aggregation changes only how the sum is formed: the model must match plain FedAvg over
// the same surviving clients up to the fixed-point quantization, for any thread count.
TEST(SimulatorSecureAggregationTest, MatchesPlainFedAvgOverTheSurvivors) {
  auto dataset = Synthetic(40);
  for (secagg::Variant variant : {secagg::Variant::kSecAgg, secagg::Variant::kSecAggPlus}) {
    for (secagg::ClientPhase phase :
         {secagg::ClientPhase::kShareKeys, secagg::ClientPhase::kMaskedInput,
          secagg::ClientPhase::kUnmask}) {
      SimulationOptions plain = SmallRun(2);
      plain.clients_per_round = 12;
      plain.plan.clip_norm = 0.5;
      plain.dropout = {.rate = 0.2, .phase = phase};
      SimulationOptions secure = plain;
      secure.secure_aggregation.variant = variant;
      secure.secure_aggregation.design_dropout_rate = 0.45;  // survives the 20% injected here
      secure.threads = 1;
      auto a = *Simulator::Create(plain, dataset.get());
      auto b = *Simulator::Create(secure, dataset.get());
      const auto ra = RunAll(*a, 3);
      const auto rb = RunAll(*b, 3);
      ASSERT_EQ(rb.size(), 3u);
      for (int r = 0; r < 3; ++r) {
        ASSERT_TRUE(rb[r].secure_aggregation.has_value());
        EXPECT_TRUE(rb[r].aborted.empty()) << rb[r].aborted;
        // Unmask-phase dropouts uploaded, so they are in the sum; earlier ones are not.
        const int64_t expected_survivors =
            ra[r].participants - (phase == secagg::ClientPhase::kUnmask ? 0 : ra[r].dropped);
        EXPECT_EQ(rb[r].secure_aggregation->survivors, expected_survivors);
        EXPECT_EQ(rb[r].dropped, ra[r].dropped);
      }
      EXPECT_GT(rb[0].dropped + rb[1].dropped + rb[2].dropped, 0);
      const auto& pa = a->global_parameters();
      const auto& pb = b->global_parameters();
      ASSERT_EQ(pa.size(), pb.size());
      double max_diff = 0;
      for (size_t i = 0; i < pa.size(); ++i) {
        max_diff = std::max(max_diff, static_cast<double>(std::abs(pa[i] - pb[i])));
      }
      EXPECT_LT(max_diff, 1e-4) << secagg::VariantName(variant);
      EXPECT_NE(pa, pb);  // quantized: close, not bit-identical (the test would be vacuous)
    }
  }
}

TEST(SimulatorSecureAggregationTest, ThreadCountDoesNotChangeTheResult) {
  auto dataset = Synthetic(40);
  SimulationOptions one = SmallRun(1);
  one.plan.clip_norm = 0.5;
  one.secure_aggregation.variant = secagg::Variant::kSecAggPlus;
  one.dropout = {.rate = 0.25};
  SimulationOptions three = one;
  three.threads = 3;
  auto a = *Simulator::Create(one, dataset.get());
  auto b = *Simulator::Create(three, dataset.get());
  RunAll(*a, 3);
  RunAll(*b, 3);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
}

TEST(SimulatorSecureAggregationTest, AbortedRoundsLeaveTheModelUnchanged) {
  auto dataset = Synthetic(40);
  SimulationOptions options = SmallRun(1);
  options.plan.clip_norm = 0.5;
  options.secure_aggregation.variant = secagg::Variant::kSecAgg;
  options.dropout = {.rate = 0.7, .phase = secagg::ClientPhase::kUnmask};  // t = 5 of 8
  auto sim = *Simulator::Create(options, dataset.get());
  const std::vector<float> before = sim->global_parameters();
  absl::StatusOr<RoundResult> round = sim->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  ASSERT_GT(round->dropped, 3);
  EXPECT_THAT(round->aborted, ::testing::HasSubstr("threshold"));
  EXPECT_EQ(sim->global_parameters(), before);
  EXPECT_EQ(sim->rounds_done(), 1);  // the round happened; it produced no update
}

TEST(SimulatorSecureAggregationTest, RefusesConfigurationsThatCannotWork) {
  auto dataset = Synthetic(40);
  SimulationOptions options = SmallRun(1);
  options.secure_aggregation.variant = secagg::Variant::kSecAgg;
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              ::testing::HasSubstr("clip norm"));
  options.plan.clip_norm = 1;
  options.secure_aggregation.modulus_bits = 12;  // no room for 8 clients' weights and values
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());
  options.secure_aggregation.modulus_bits = 32;
  options.clients_per_round = 1;  // secure aggregation needs at least 2 clients
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());
}

}  // namespace
}  // namespace fedkit::simulation
