#include "simulation/simulator.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "compression/download_codec.h"
#include "compression/random.h"
#include "compression/seeds.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/noise.h"
#include "privacy/rdp_accountant.h"
#include "server/client_sampler.h"
#include "simulation/test_support.h"

namespace fedkit::simulation {
namespace {

std::unique_ptr<data::FederatedDataset> Synthetic(int64_t clients) {
  return test_support::SmallSynthetic(clients);
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

using test_support::RunAll;

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

// Update compression: each client's delta goes through its encoder (with error feedback for
// top-k / random-k) and the coordinator's decoding and clip; uploads shrink by the codec's ratio.
TEST(SimulatorCompressionTest, UploadsShrinkAndTheModelStillLearns) {
  auto dataset = Synthetic(40);
  std::map<std::string, std::vector<RoundResult>> runs;
  std::map<std::string, std::vector<float>> models;
  for (const char* text : {"none", "quantize-rotate:8", "topk:0.1", "randk:0.1"}) {
    auto options = SmallRun(2);
    options.model = "mlp";
    options.plan.clip_norm = 2.0;
    options.plan.compression = *compression::ParseCompressionSpec(text);
    auto sim = Simulator::Create(options, dataset.get());
    ASSERT_TRUE(sim.ok()) << sim.status();
    runs[text] = RunAll(**sim, 4);
    ASSERT_EQ(runs[text].size(), 4u) << text;
    models[text] = (*sim)->global_parameters();
  }
  const double dim = static_cast<double>(models["none"].size());
  for (int r = 0; r < 4; ++r) {
    const double plain = runs["none"][r].upload_bytes;
    EXPECT_GT(plain, 4 * dim);
    EXPECT_LT(plain, 4 * dim + 200);
    EXPECT_GE(plain / runs["quantize-rotate:8"][r].upload_bytes, 3.9);
    EXPECT_GE(plain / runs["topk:0.1"][r].upload_bytes, 5.0);  // positions and float32 values
    EXPECT_GE(plain / runs["randk:0.1"][r].upload_bytes,
              9.0);  // values only: positions from a seed
    for (const char* text : {"quantize-rotate:8", "topk:0.1", "randk:0.1"}) {
      EXPECT_EQ(runs[text][r].download_bytes, runs["none"][r].download_bytes);
    }
  }
  const double accuracy = runs["none"].back().eval->accuracy();
  EXPECT_NEAR(runs["quantize-rotate:8"].back().eval->accuracy(), accuracy, 0.05);
  EXPECT_GT(runs["topk:0.1"].back().eval->accuracy(), 0.3);
  EXPECT_NE(models["quantize-rotate:8"], models["none"]);  // the codec is really in the path
}

// Compressed downloads: the clients train from the decoded model, the global model stays exact;
// downloads shrink by the encoding's ratio and the model still learns.
TEST(SimulatorCompressionTest, EncodedDownloadsShrinkAndTheModelStillLearns) {
  auto dataset = Synthetic(40);
  std::map<compression::DownloadEncoding, std::vector<RoundResult>> runs;
  std::map<compression::DownloadEncoding, std::vector<float>> models;
  for (compression::DownloadEncoding encoding :
       {compression::DownloadEncoding::kFloat32, compression::DownloadEncoding::kFloat16,
        compression::DownloadEncoding::kQuantize8}) {
    auto options = SmallRun(2);
    options.model = "mlp";
    options.download_encoding = encoding;
    auto sim = Simulator::Create(options, dataset.get());
    ASSERT_TRUE(sim.ok()) << sim.status();
    runs[encoding] = RunAll(**sim, 4);
    ASSERT_EQ(runs[encoding].size(), 4u);
    models[encoding] = (*sim)->global_parameters();
  }
  using compression::DownloadEncoding;
  const int64_t dim = static_cast<int64_t>(models[DownloadEncoding::kFloat32].size());
  for (int r = 0; r < 4; ++r) {
    const double plain = runs[DownloadEncoding::kFloat32][r].download_bytes;
    EXPECT_GT(plain, 4.0 * static_cast<double>(dim));
    const double half = runs[DownloadEncoding::kFloat16][r].download_bytes;
    const double eight = runs[DownloadEncoding::kQuantize8][r].download_bytes;
    EXPECT_GT(half,
              static_cast<double>(compression::DownloadBytes(DownloadEncoding::kFloat16, dim)));
    EXPECT_GE(plain / half, 1.99);
    EXPECT_GE(plain / eight, 3.9);
    EXPECT_EQ(runs[DownloadEncoding::kFloat32][r].upload_bytes,
              runs[DownloadEncoding::kQuantize8][r].upload_bytes);
  }
  const double accuracy = runs[DownloadEncoding::kFloat32].back().eval->accuracy();
  EXPECT_NEAR(runs[DownloadEncoding::kFloat16].back().eval->accuracy(), accuracy, 0.05);
  EXPECT_NEAR(runs[DownloadEncoding::kQuantize8].back().eval->accuracy(), accuracy, 0.05);
  // The encoding is really in the path: the clients trained from other starting points.
  EXPECT_NE(models[DownloadEncoding::kQuantize8], models[DownloadEncoding::kFloat32]);
  EXPECT_NE(models[DownloadEncoding::kFloat16], models[DownloadEncoding::kFloat32]);
}

TEST(SimulatorCompressionTest, ErrorFeedbackDoesNotDependOnTheNumberOfThreads) {
  auto dataset = Synthetic(20);
  auto one = SmallRun(1);
  one.clients_per_round = 10;
  one.plan.compression = *compression::ParseCompressionSpec("topk:0.2");
  auto three = one;
  three.threads = 3;
  auto a = *Simulator::Create(one, dataset.get());
  auto b = *Simulator::Create(three, dataset.get());
  RunAll(*a, 4);
  RunAll(*b, 4);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
}

// Under secure aggregation quantization shares the round's rotation and scale: the masked values
// have bits + ceil(log2 n) bits instead of 32, and the model stays close to plain FedAvg's.
TEST(SimulatorCompressionTest, QuantizationUnderSecureAggregationIsCloseToPlainFedAvg) {
  auto dataset = Synthetic(40);
  SimulationOptions plain = SmallRun(2);
  plain.model = "mlp";
  plain.clients_per_round = 12;
  plain.plan.clip_norm = 0.5;
  SimulationOptions full = plain;
  full.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
  auto fresh = *Simulator::Create(plain, dataset.get());
  const std::vector<float> start = fresh->global_parameters();
  auto a = *Simulator::Create(plain, dataset.get());
  auto b = *Simulator::Create(full, dataset.get());
  const auto ra = RunAll(*a, 3);
  const auto rb = RunAll(*b, 3);
  // ||model - plain model|| / ||plain model - start||, for 8 and 12 bits.
  std::map<int, double> relative_error;
  for (int bits : {8, 12}) {
    SimulationOptions quantized = full;
    quantized.plan.compression =
        *compression::ParseCompressionSpec(absl::StrCat("quantize-rotate:", bits));
    auto c = Simulator::Create(quantized, dataset.get());
    ASSERT_TRUE(c.ok()) << c.status();
    const auto rc = RunAll(**c, 3);
    ASSERT_EQ(rc.size(), 3u);
    for (int r = 0; r < 3; ++r) {
      EXPECT_TRUE(rc[r].aborted.empty()) << rc[r].aborted;
      ASSERT_TRUE(rc[r].secure_aggregation.has_value());
      EXPECT_EQ(rc[r].secure_aggregation->survivors, 12);
      // bits + ceil(log2 12) <= 16 bits travel in 2 bytes instead of 4, protocol included.
      EXPECT_LT(rc[r].upload_bytes, 0.6 * rb[r].upload_bytes);
    }
    const auto& pa = a->global_parameters();
    const auto& pc = (*c)->global_parameters();
    EXPECT_NE(pa, pc);
    double diff = 0, step = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
      diff += (pa[i] - pc[i]) * (pa[i] - pc[i]);
      step += (pa[i] - start[i]) * (pa[i] - start[i]);
    }
    relative_error[bits] = std::sqrt(diff / step);
  }
  // A light client's weighted value uses few of the levels (the scale is set by max_weight), so the
  // error at 8 bits is noticeable on 12 clients; it is unbiased and shrinks with more clients.
  EXPECT_LT(relative_error[8], 0.5) << relative_error[8];
  // Finer levels, smaller error: the difference is the quantization, nothing else.
  EXPECT_LT(relative_error[12], relative_error[8] / 4) << relative_error[12];
}

// Random-k under secure aggregation: the round's clients keep the same coordinates (the shared
// seed's), so only those move in a round.
TEST(SimulatorCompressionTest, RandomKUnderSecureAggregationMovesOnlyTheSharedCoordinates) {
  auto dataset = Synthetic(40);
  SimulationOptions options = SmallRun(2);
  options.clients_per_round = 10;
  options.plan.clip_norm = 0.5;
  options.plan.compression = *compression::ParseCompressionSpec("randk:0.3");
  options.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
  auto sim = Simulator::Create(options, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const std::vector<float> start = (*sim)->global_parameters();
  const auto results = RunAll(**sim, 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].aborted.empty()) << results[0].aborted;
  const int64_t dim = static_cast<int64_t>(start.size());
  const std::vector<int64_t> kept =
      compression::RandomKIndices(compression::SharedCompressionSeed(options.seed, 1), dim,
                                  compression::KeptCoordinates(options.plan.compression, dim));
  std::vector<bool> is_kept(dim, false);
  for (int64_t p : kept) is_kept[p] = true;
  int64_t moved = 0;
  for (int64_t i = 0; i < dim; ++i) {
    if ((*sim)->global_parameters()[i] != start[i]) {
      EXPECT_TRUE(is_kept[i]) << i;
      ++moved;
    }
  }
  EXPECT_GT(moved, static_cast<int64_t>(kept.size()) / 2);
}

TEST(SimulatorCompressionTest, RefusesWhatSecureAggregationCannotCarry) {
  auto dataset = Synthetic(20);
  for (const char* text : {"topk:0.1", "quantize:1"}) {
    auto options = SmallRun(1);
    options.plan.clip_norm = 1.0;
    options.plan.compression = *compression::ParseCompressionSpec(text);
    options.secure_aggregation.emplace();
    auto refused = Simulator::Create(options, dataset.get());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(refused.status().message(), testing::HasSubstr(text));
  }
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
      secure.secure_aggregation.emplace().variant = variant;
      secure.secure_aggregation->design_dropout_rate = 0.45;  // survives the 20% injected here
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
  one.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
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
  options.secure_aggregation.emplace().variant = secagg::Variant::kSecAgg;
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
  options.secure_aggregation.emplace().variant = secagg::Variant::kSecAgg;
  EXPECT_THAT(Simulator::Create(options, dataset.get()).status().message(),
              ::testing::HasSubstr("clip norm"));
  options.plan.clip_norm = 1;
  options.secure_aggregation->modulus_bits = 12;  // no room for 8 clients' weights and values
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());
  options.secure_aggregation->modulus_bits = 32;
  options.clients_per_round = 1;  // secure aggregation needs at least 2 clients
  EXPECT_FALSE(Simulator::Create(options, dataset.get()).ok());
}

// --- Differential privacy (DP-FedAvg) ---

SimulationOptions DpRun(DpMode mode, double z) {
  SimulationOptions options = SmallRun(1);
  options.plan.clip_norm = 0.5;
  options.dp.mode = mode;
  options.dp.noise_multiplier = z;
  if (mode == DpMode::kDistributed)
    options.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
  return options;
}

// Per-coordinate (new - old) * m of two runs that differ only in their noise: with server SGD at
// learning rate 1 that is the noise the server added to the sum (or the clients did).
std::vector<double> ScaledDifference(const std::vector<float>& noised,
                                     const std::vector<float>& clean, double m) {
  std::vector<double> diff(noised.size());
  for (size_t i = 0; i < noised.size(); ++i) {
    diff[i] = (static_cast<double>(noised[i]) - clean[i]) * m;
  }
  return diff;
}

double MeanSquare(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x * x;
  return sum / static_cast<double>(v.size());
}

// z = 0: DP-FedAvg without noise is the plain sum of the contributors' clipped deltas over the
// fixed denominator m (not over the number that actually reported, nor weighted by examples).
TEST(SimulatorDpTest, WithoutNoiseIsTheUnweightedSumOverTheFixedDenominator) {
  auto dataset = Synthetic(10);
  SimulationOptions options = DpRun(DpMode::kCentral, 0.0);
  options.clients_per_round = 10;  // everyone, so the sample is known
  options.plan.clip_norm = 0.05;   // small enough to clip most deltas
  options.dropout.forced = {{3, secagg::ClientPhase::kMaskedInput},
                            {7, secagg::ClientPhase::kShareKeys}};
  auto sim = *Simulator::Create(options, dataset.get());
  const std::vector<float> start = sim->global_parameters();
  absl::StatusOr<RoundResult> round = sim->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->dropped, 2);
  ASSERT_TRUE(round->epsilon.has_value());
  EXPECT_EQ(*round->epsilon, std::numeric_limits<double>::infinity());
  EXPECT_EQ(round->clip_norm, 0.05);

  std::vector<double> sum(start.size(), 0.0);
  int clipped = 0;
  client::LocalTrainer trainer(*models::CreateModel("logreg", dataset->info(), 0));
  for (int64_t c = 0; c < 10; ++c) {
    if (c == 3 || c == 7) continue;
    auto update = trainer.Train(start, dataset->TrainExamples(c), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 1, c));
    ASSERT_TRUE(update.ok());
    clipped += update->delta_norm > options.plan.clip_norm ? 1 : 0;
    for (size_t i = 0; i < start.size(); ++i) sum[i] += update->delta[i];
  }
  EXPECT_GT(clipped, 4);  // the clip matters
  for (size_t i = 0; i < start.size(); ++i) {
    EXPECT_NEAR(sim->global_parameters()[i], start[i] + sum[i] / 10.0, 1e-6) << i;
  }
}

// The central noise on the sum has stddev z_delta * S per coordinate: z * S with a fixed clip,
// ValueNoiseMultiplier(z, m / 20) * S with adaptive clipping. Two runs differing only in z see
// the same clients and deltas in round 1, so their difference is the noise (54,410 coordinates of
// the MLP: the variance's standard error is 0.6%).
TEST(SimulatorDpTest, CentralNoiseHasStddevZTimesTheClip) {
  auto dataset = Synthetic(40);
  for (bool adaptive : {false, true}) {
    const double z = adaptive ? 0.5 : 1.3;  // adaptive needs z < 2 sigma_b = 8 / 10
    SimulationOptions clean = DpRun(DpMode::kCentral, 0.0);
    clean.model = "mlp";
    if (adaptive) clean.dp.adaptive_clip_quantile = 0.5;
    SimulationOptions noised = clean;
    noised.dp.noise_multiplier = z;
    auto a = *Simulator::Create(clean, dataset.get());
    auto b = *Simulator::Create(noised, dataset.get());
    ASSERT_TRUE(a->RunRound().ok());
    ASSERT_TRUE(b->RunRound().ok());
    const double z_delta = adaptive ? *privacy::ValueNoiseMultiplier(z, 8.0 / 20) : z;
    EXPECT_DOUBLE_EQ(b->privacy_setup()->value_noise_multiplier, z_delta);
    const std::vector<double> noise =
        ScaledDifference(b->global_parameters(), a->global_parameters(), 8);
    const double expected = z_delta * 0.5;
    double mean = 0;
    for (double x : noise) mean += x / static_cast<double>(noise.size());
    EXPECT_NEAR(mean, 0.0, 5 * expected / std::sqrt(static_cast<double>(noise.size())));
    EXPECT_NEAR(std::sqrt(MeanSquare(noise)) / expected, 1.0, 0.015) << "adaptive " << adaptive;
  }
}

TEST(SimulatorDpTest, EpsilonPerRoundIsTheAccountantsForQAndZ) {
  auto dataset = Synthetic(40);
  for (DpMode mode : {DpMode::kCentral, DpMode::kDistributed}) {
    SimulationOptions options = DpRun(mode, 1.1);
    options.dp.delta = 1e-4;
    options.eval_every = 0;
    auto sim = *Simulator::Create(options, dataset.get());
    const double z = sim->privacy_setup()->accounting_noise_multiplier;
    if (mode == DpMode::kCentral) {
      EXPECT_EQ(z, 1.1);
    } else {
      EXPECT_GE(z, 1.1);  // the discrete noise is rounded up
      EXPECT_LT(z, 1.1 * (1 + 1e-6));
    }
    EXPECT_EQ(sim->privacy_setup()->sampling_rate, 8.0 / 40);
    EXPECT_EQ(*sim->epsilon(), 0.0);
    privacy::RdpAccountant accountant;
    for (int r = 1; r <= 3; ++r) {
      absl::StatusOr<RoundResult> round = sim->RunRound();
      ASSERT_TRUE(round.ok()) << round.status();
      ASSERT_TRUE(accountant.Compose(8.0 / 40, z).ok());
      EXPECT_DOUBLE_EQ(*round->epsilon, accountant.Epsilon(1e-4)->epsilon) << r;
      EXPECT_EQ(round->delta, 1e-4);
    }
    EXPECT_GT(*sim->epsilon(), 0.5);
  }
}

TEST(SimulatorDpTest, StopsBeforeTheRoundThatWouldExceedTheTargetEpsilon) {
  auto dataset = Synthetic(40);
  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(8.0 / 40, 1.0, 3).ok());
  const double after3 = accountant.Epsilon(1e-5)->epsilon;
  ASSERT_TRUE(accountant.Compose(8.0 / 40, 1.0).ok());
  const double after4 = accountant.Epsilon(1e-5)->epsilon;

  SimulationOptions options = DpRun(DpMode::kCentral, 1.0);
  options.rounds = 10;
  options.eval_every = 0;
  options.dp.target_epsilon = 0.5 * (after3 + after4);
  auto sim = *Simulator::Create(options, dataset.get());
  for (int r = 1; r <= 3; ++r) {
    absl::StatusOr<RoundResult> round = sim->RunRound();
    ASSERT_TRUE(round.ok()) << round.status();
    EXPECT_LE(*round->epsilon, *options.dp.target_epsilon);
    // The last round within budget is evaluated like the last round of the run.
    EXPECT_EQ(round->eval.has_value(), r == 3) << r;
  }
  const std::vector<float> after_round3 = sim->global_parameters();
  absl::StatusOr<RoundResult> refused = sim->RunRound();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), testing::HasSubstr("stopping before round 4"));
  EXPECT_THAT(refused.status().message(), testing::HasSubstr("last round within budget 3"));
  EXPECT_TRUE(sim->privacy_budget_exhausted());
  EXPECT_EQ(sim->rounds_done(), 3);
  EXPECT_EQ(sim->global_parameters(), after_round3);
  EXPECT_DOUBLE_EQ(*sim->epsilon(), after3);
}

// Distributed: the sum the server decodes carries the clients' discrete noise, stddev
// value_noise_multiplier * S (>= z S, sized for the survivors), and nothing else.
TEST(SimulatorDpTest, DistributedNoiseInTheDecodedSumHasTheTargetVariance) {
  auto dataset = Synthetic(40);
  SimulationOptions clean = DpRun(DpMode::kDistributed, 0.0);
  clean.model = "mlp";
  SimulationOptions noised = clean;
  noised.dp.noise_multiplier = 0.8;
  auto a = *Simulator::Create(clean, dataset.get());
  auto b = *Simulator::Create(noised, dataset.get());
  const PrivacySetup& setup = *b->privacy_setup();
  ASSERT_TRUE(setup.encoding.has_value());
  EXPECT_EQ(setup.encoding->min_surviving_clients, 8);  // no dropout: sized for all 8
  EXPECT_NEAR(setup.value_noise_multiplier, 0.8, 0.8 * 1e-3);
  absl::StatusOr<RoundResult> ra = a->RunRound();
  absl::StatusOr<RoundResult> rb = b->RunRound();
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(rb->secure_aggregation->survivors, 8);
  const std::vector<double> noise =
      ScaledDifference(b->global_parameters(), a->global_parameters(), 8);
  EXPECT_NEAR(std::sqrt(MeanSquare(noise)) / (setup.value_noise_multiplier * 0.5), 1.0, 0.015);
}

// With dropouts the noise is sized for n_min survivors; a round with fewer is not released.
TEST(SimulatorDpTest, DistributedRoundWithTooFewSurvivorsIsAborted) {
  auto dataset = Synthetic(40);
  SimulationOptions options = DpRun(DpMode::kDistributed, 1.0);
  options.clients_per_round = 40;  // everyone, so the forced dropout is sampled
  options.dp.dropout_tolerance = 0.0;
  options.dropout.forced = {{5, secagg::ClientPhase::kMaskedInput}};
  auto sim = *Simulator::Create(options, dataset.get());
  EXPECT_EQ(sim->privacy_setup()->encoding->min_surviving_clients, 40);
  const std::vector<float> before = sim->global_parameters();
  absl::StatusOr<RoundResult> round = sim->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_THAT(round->aborted, testing::HasSubstr("fewer than the 40"));
  EXPECT_EQ(sim->global_parameters(), before);
  EXPECT_GT(*round->epsilon, 0.0);  // accounted anyway (conservative)

  options.dp.dropout_tolerance = 0.05;  // n_min = 38: the round goes through
  sim = *Simulator::Create(options, dataset.get());
  EXPECT_EQ(sim->privacy_setup()->encoding->min_surviving_clients, 38);
  round = sim->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_TRUE(round->aborted.empty()) << round->aborted;
  EXPECT_NE(sim->global_parameters(), before);
}

TEST(SimulatorDpTest, DistributedWithAdaptiveClippingIsIdenticalForOneAndThreeThreads) {
  auto dataset = Synthetic(40);
  SimulationOptions one = DpRun(DpMode::kDistributed, 0.5);
  one.dp.adaptive_clip_quantile = 0.5;
  one.dropout = {.rate = 0.2};
  SimulationOptions three = one;
  three.threads = 3;
  auto a = *Simulator::Create(one, dataset.get());
  auto b = *Simulator::Create(three, dataset.get());
  const auto ra = RunAll(*a, 3);
  const auto rb = RunAll(*b, 3);
  ASSERT_EQ(ra.size(), 3u);
  ASSERT_EQ(rb.size(), 3u);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(ra[r].clip_norm, rb[r].clip_norm);
    EXPECT_EQ(ra[r].unclipped_fraction, rb[r].unclipped_fraction);
    EXPECT_EQ(ra[r].aborted, rb[r].aborted);
  }
  EXPECT_NE(ra[2].clip_norm, ra[0].clip_norm);  // the clip adapted
}

// Central DP under secure aggregation: the same exact count for adaptive clipping (the server's
// count stream), so the same clips and epsilon as plain central DP. The value noise is the discrete
// Gaussian on each path's own integer grid (the exact sum's, or the encoding's), so the noised
// models differ by noise; without noise they differ only by the fixed-point quantization.
TEST(SimulatorDpTest, CentralUnderSecureAggregationMatchesPlainCentral) {
  auto dataset = Synthetic(40);
  for (double z : {0.5, 0.0}) {
    SimulationOptions plain = DpRun(DpMode::kCentral, z);
    plain.clients_per_round = 12;
    plain.dp.adaptive_clip_quantile = 0.5;
    plain.dropout = {.rate = 0.2, .phase = secagg::ClientPhase::kMaskedInput};
    SimulationOptions secure = plain;
    secure.secure_aggregation.emplace().variant = secagg::Variant::kSecAgg;
    secure.secure_aggregation->design_dropout_rate = 0.45;
    auto a = *Simulator::Create(plain, dataset.get());
    auto b = *Simulator::Create(secure, dataset.get());
    const auto ra = RunAll(*a, 3);
    const auto rb = RunAll(*b, 3);
    ASSERT_EQ(rb.size(), 3u);
    EXPECT_GT(rb[0].dropped + rb[1].dropped + rb[2].dropped, 0);
    for (int r = 0; r < 3; ++r) {
      EXPECT_TRUE(rb[r].aborted.empty()) << rb[r].aborted;
      EXPECT_DOUBLE_EQ(*ra[r].clip_norm, *rb[r].clip_norm) << z;
      EXPECT_EQ(ra[r].unclipped_fraction, rb[r].unclipped_fraction) << z;
      EXPECT_EQ(ra[r].epsilon, rb[r].epsilon) << z;
    }
    const auto& pa = a->global_parameters();
    const auto& pb = b->global_parameters();
    double max_diff = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(pa[i] - pb[i])));
    }
    if (z == 0) {
      EXPECT_LT(max_diff, 1e-5);
    } else {
      EXPECT_GT(max_diff, 1e-3);  // two independent noise draws
    }
  }
}

TEST(SimulatorDpTest, DistributedWithoutNoiseMatchesCentralWithoutNoise) {
  auto dataset = Synthetic(40);
  auto a = *Simulator::Create(DpRun(DpMode::kCentral, 0.0), dataset.get());
  auto b = *Simulator::Create(DpRun(DpMode::kDistributed, 0.0), dataset.get());
  RunAll(*a, 2);
  RunAll(*b, 2);
  const auto& pa = a->global_parameters();
  const auto& pb = b->global_parameters();
  double max_diff = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(pa[i] - pb[i])));
  }
  EXPECT_LT(max_diff, 1e-5);
}

// No noise, so the clipped count is exact: with every update clipped the estimate is 0 and the
// clip grows by exp(eta * gamma) per round.
TEST(SimulatorDpTest, AdaptiveClippingMovesTheClipGeometrically) {
  auto dataset = Synthetic(40);
  SimulationOptions options = DpRun(DpMode::kCentral, 0.0);
  options.plan.clip_norm = 1e-4;
  options.dp.adaptive_clip_quantile = 0.5;
  auto sim = *Simulator::Create(options, dataset.get());
  const auto results = RunAll(*sim, 3);
  ASSERT_EQ(results.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(*results[r].unclipped_fraction, 0.0);
    EXPECT_NEAR(*results[r].clip_norm, 1e-4 * std::exp(0.2 * 0.5 * r), 1e-12) << r;
  }
}

// The library names the options' fields, never a binary's flags (cli/flag_errors.h maps them).
TEST(SimulatorDpTest, InvalidOptionsNameTheField) {
  auto dataset = Synthetic(40);
  struct Case {
    SimulationOptions options;
    std::string expected;
  };
  std::vector<Case> cases;
  SimulationOptions o = DpRun(DpMode::kCentral, 1.0);
  o.plan.clip_norm = 0;
  cases.push_back({o, "`clip_norm`"});
  o = DpRun(DpMode::kDistributed, 1.0);
  o.secure_aggregation.reset();
  cases.push_back({o, "`secure_aggregation`"});
  o = DpRun(DpMode::kCentral, -1.0);
  cases.push_back({o, "`noise_multiplier` must be finite"});
  o = DpRun(DpMode::kCentral, 1.0);
  o.dp.delta = 1.0;
  cases.push_back({o, "`delta`"});
  o = DpRun(DpMode::kCentral, 1.0);
  o.dp.adaptive_clip_quantile = 1.0;
  cases.push_back({o, "`adaptive_clip_quantile`"});
  o = DpRun(DpMode::kCentral, 1.0);  // 8 clients: sigma_b = 0.4 < z / 2
  o.dp.adaptive_clip_quantile = 0.5;
  cases.push_back({o, "`noise_multiplier` 1 is too large"});
  o = DpRun(DpMode::kCentral, 0.0);
  o.dp.target_epsilon = 1.0;
  cases.push_back({o, "`target_epsilon` needs `noise_multiplier`"});
  o = DpRun(DpMode::kCentral, 1.0);
  o.dp.dropout_tolerance = 0.1;
  cases.push_back({o, "`dropout_tolerance`"});
  o = DpRun(DpMode::kCentral, 1.0);
  o.max_client_weight = 10;
  cases.push_back({o, "`max_client_weight`"});
  o = DpRun(DpMode::kNone, 1.0);
  cases.push_back({o, "`noise_multiplier` needs `mode` central"});
  o = DpRun(DpMode::kDistributed, 1.0);
  o.secure_aggregation->modulus_bits = 16;
  cases.push_back({o, "`secure_aggregation_modulus_bits`"});
  for (const Case& c : cases) {
    auto sim = Simulator::Create(c.options, dataset.get());
    EXPECT_EQ(sim.status().code(), absl::StatusCode::kInvalidArgument) << c.expected;
    EXPECT_THAT(sim.status().message(), testing::HasSubstr(c.expected));
  }
}

// System heterogeneity in virtual time: with a deadline, a slower device trace drops more
// stragglers, and over-selection brings the contributors back to K.
TEST(SimulatorSystemTest, SlowerDevicesDropMoreStragglersAndOverSelectionRecoversK) {
  auto dataset = Synthetic(40);
  auto trace = [&](const std::string& name, double factor) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream out(path);
    out << "seconds_per_example,fixed_seconds\n";
    for (int i = 1; i <= 10; ++i) out << factor * 0.004 * i << "," << factor * 0.5 << "\n";
    return "trace:" + path;
  };
  const std::string fast = trace("fast.csv", 1.0);
  const std::string slow = trace("slow.csv", 2.0);
  // The deadline: the fast trace's 75th percentile finishing time over the population.
  const DeviceSpeeds fast_speeds = *DeviceSpeeds::Create(fast, 0);
  std::vector<double> finish;
  for (int64_t c = 0; c < dataset->num_clients(); ++c) {
    finish.push_back(fast_speeds.RoundSeconds(c, dataset->NumTrainExamples(c), 2));
  }
  std::sort(finish.begin(), finish.end());
  const double deadline = finish[finish.size() * 3 / 4];

  auto run = [&](const std::string& speeds, double over_select) {
    auto options = SmallRun(2);
    options.rounds = 6;
    options.eval_every = 0;
    options.system.device_speeds = speeds;
    options.system.deadline_seconds = deadline;
    options.system.over_select = over_select;
    auto sim = Simulator::Create(options, dataset.get());
    EXPECT_TRUE(sim.ok()) << sim.status();
    return RunAll(**sim, 6);
  };
  const std::vector<RoundResult> fast_rounds = run(fast, 0.0);
  const std::vector<RoundResult> slow_rounds = run(slow, 0.0);
  const std::vector<RoundResult> recovered = run(slow, 2.0);
  ASSERT_EQ(fast_rounds.size(), 6u);
  ASSERT_EQ(slow_rounds.size(), 6u);
  ASSERT_EQ(recovered.size(), 6u);
  int64_t fast_stragglers = 0, slow_stragglers = 0;
  for (int r = 0; r < 6; ++r) {
    // Same sample in both runs (same seed, no over-selection): slower devices, more stragglers.
    EXPECT_GE(slow_rounds[r].stragglers, fast_rounds[r].stragglers) << r;
    fast_stragglers += fast_rounds[r].stragglers;
    slow_stragglers += slow_rounds[r].stragglers;
    for (const RoundResult* round : {&fast_rounds[r], &slow_rounds[r]}) {
      EXPECT_EQ(round->participants, 8);
      EXPECT_EQ(round->contributors + round->stragglers, 8);
      ASSERT_TRUE(round->virtual_seconds.has_value());
      EXPECT_LE(*round->virtual_seconds, deadline);
      if (round->stragglers > 0) {
        EXPECT_EQ(*round->virtual_seconds, deadline);
      }
    }
    // Over-selected 24: the first 8 in time contribute; the rest are not needed or late.
    EXPECT_EQ(recovered[r].participants, 24);
    EXPECT_EQ(recovered[r].contributors, 8) << r;
    EXPECT_EQ(recovered[r].contributors + recovered[r].not_needed + recovered[r].stragglers, 24);
    EXPECT_LT(*recovered[r].virtual_seconds, deadline);
  }
  EXPECT_GT(slow_stragglers, fast_stragglers);
  int64_t slow_contributors = 0;
  for (const RoundResult& round : slow_rounds) slow_contributors += round.contributors;
  EXPECT_LT(slow_contributors, 6 * 8);  // without over-selection the slow fleet falls short
}

// The run's time axes (fedkit-plot --x time / virtual-time): virtual time summed over every round,
// also the rounds not evaluated; wall time since the first round, growing, at least each round's
// own time.
TEST(SimulatorSystemTest, ElapsedTimesAccumulateOverAllRounds) {
  auto dataset = Synthetic(40);
  auto options = SmallRun(2);
  options.rounds = 5;
  options.eval_every = 2;
  options.system.device_speeds = "lognormal:0.01,0.5";
  auto sim = Simulator::Create(options, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const std::vector<RoundResult> rounds = RunAll(**sim, 5);
  ASSERT_EQ(rounds.size(), 5u);
  double virtual_sum = 0.0, previous_elapsed = 0.0;
  for (const RoundResult& round : rounds) {
    ASSERT_TRUE(round.virtual_seconds.has_value());
    EXPECT_GT(*round.virtual_seconds, 0.0);
    virtual_sum += *round.virtual_seconds;
    ASSERT_TRUE(round.virtual_elapsed_seconds.has_value());
    EXPECT_DOUBLE_EQ(*round.virtual_elapsed_seconds, virtual_sum) << round.round;
    EXPECT_GE(round.elapsed_seconds, previous_elapsed + round.seconds + round.eval_seconds)
        << round.round;
    previous_elapsed = round.elapsed_seconds;
  }
  // Without a system model there is no virtual time.
  auto plain = Simulator::Create(SmallRun(1), dataset.get());
  ASSERT_TRUE(plain.ok()) << plain.status();
  const std::vector<RoundResult> plain_rounds = RunAll(**plain, 2);
  ASSERT_EQ(plain_rounds.size(), 2u);
  EXPECT_FALSE(plain_rounds[1].virtual_elapsed_seconds.has_value());
  EXPECT_GT(plain_rounds[1].elapsed_seconds, plain_rounds[0].elapsed_seconds);
}

// Ids that do not sort like indices: client i is "d" + the letter (5 i mod 12).
std::vector<std::string> ScrambledIds(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(std::string("d") + static_cast<char>('a' + (5 * i) % n));
  return ids;
}

// What a coordinator with run seed `seed` assigns from `pool` (sorted) in `round`.
std::vector<std::string> CoordinatorSample(const std::vector<std::string>& pool, int64_t count,
                                           uint64_t seed, int round) {
  std::vector<std::string> assigned;
  const absl::StatusOr<std::vector<int64_t>> chosen = server::SampleClients(
      static_cast<int64_t>(pool.size()), count, server::SamplingSeed(seed, round, 0));
  EXPECT_TRUE(chosen.ok()) << chosen.status();
  for (int64_t i : chosen.value_or(std::vector<int64_t>{})) assigned.push_back(pool[i]);
  return assigned;
}

// The simulator samples from sorted client ids as the coordinator does; a replayed participation
// keeps exactly the recorded reporters, equal to the same clients dropping at their upload; the
// replay stops when its sample is not the record's.
TEST(SimulatorReplayTest, ClientIdsSampleLikeTheCoordinatorAndReplayKeepsTheRecordedReporters) {
  auto dataset = Synthetic(12);
  const std::vector<std::string> ids = ScrambledIds(12);
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  auto options = SmallRun(2);
  options.clients_per_round = 3;
  options.system.over_select = 0.3;  // 4 assigned
  options.rounds = 1;
  options.client_ids = ids;
  const std::vector<std::string> assigned = CoordinatorSample(sorted, 4, options.seed, 1);
  ASSERT_EQ(assigned.size(), 4u);
  const std::string silent = assigned[1];
  std::vector<std::string> aggregated = assigned;
  aggregated.erase(aggregated.begin() + 1);

  // The same round with the silent client dropping at its upload, without a replay.
  auto dropping = options;
  const int64_t silent_index = std::find(ids.begin(), ids.end(), silent) - ids.begin();
  dropping.dropout.forced[silent_index] = secagg::ClientPhase::kMaskedInput;
  auto replaying = options;
  replaying.replay = {{1, 0, sorted, assigned, aggregated}};
  auto everyone = options;
  everyone.replay = {{1, 0, sorted, assigned, assigned}};
  auto a = *Simulator::Create(dropping, dataset.get());
  auto b = *Simulator::Create(replaying, dataset.get());
  auto c = *Simulator::Create(everyone, dataset.get());
  auto ra = RunAll(*a, 1), rb = RunAll(*b, 1), rc = RunAll(*c, 1);
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(rb[0].participants, 4);
  EXPECT_EQ(rb[0].dropped, 1);
  EXPECT_EQ(a->global_parameters(), b->global_parameters());
  EXPECT_NE(b->global_parameters(), c->global_parameters());  // the record decides who counts

  // Round 2 samples from the pool left (the silent device gone).
  auto two = replaying;
  two.rounds = 2;
  std::vector<std::string> left = sorted;
  left.erase(std::find(left.begin(), left.end(), silent));
  const std::vector<std::string> second = CoordinatorSample(left, 4, options.seed, 2);
  two.replay.push_back({2, 0, left, second, {second[0], second[2], second[3]}});
  auto d = *Simulator::Create(two, dataset.get());
  EXPECT_EQ(RunAll(*d, 2).size(), 2u);

  // A record the simulator's sample does not reproduce stops the replay.
  auto diverged = replaying;
  std::vector<std::string> wrong = assigned;
  wrong.back() = *std::find_if(sorted.rbegin(), sorted.rend(), [&](const std::string& id) {
    return std::find(assigned.begin(), assigned.end(), id) == assigned.end();
  });
  std::sort(wrong.begin(), wrong.end());
  diverged.replay = {{1, 0, sorted, wrong, {}}};
  auto e = *Simulator::Create(diverged, dataset.get());
  auto refused = e->RunRound();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("but the coordinator assigned"));
}

TEST(SimulatorReplayTest, InvalidIdsAndReplaysAreRefused) {
  auto dataset = Synthetic(12);
  const std::vector<std::string> ids = ScrambledIds(12);
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  auto base = SmallRun(1);
  base.clients_per_round = 3;
  base.rounds = 1;
  auto expect_refused = [&](SimulationOptions options, const std::string& message) {
    auto sim = Simulator::Create(options, dataset.get());
    ASSERT_FALSE(sim.ok()) << message;
    EXPECT_EQ(sim.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(sim.status().message(), ::testing::HasSubstr(message));
  };
  auto few = base;
  few.client_ids = {"a", "b"};
  expect_refused(few, "`client_ids`: 2 ids for 12 clients");
  auto twice = base;
  twice.client_ids = ids;
  twice.client_ids[3] = ids[0];
  expect_refused(twice, "names clients 0 and 3");
  auto bad = base;
  bad.client_ids = ids;
  bad.client_ids[2] = "has space";
  expect_refused(bad, "`client_ids`: client 2");
  auto stranger = base;
  stranger.client_ids = ids;
  stranger.replay = {{1, 0, {"zz"}, {"zz"}, {"zz"}}};
  expect_refused(stranger, "device 'zz' is not one of the 12 `client_ids`");
  auto short_replay = stranger;
  short_replay.rounds = 2;
  short_replay.replay = {{1, 0, sorted, {}, {}}};
  expect_refused(short_replay, "`replay`: 1 rounds, fewer than the 2 to run");
  auto with_dropout = short_replay;
  with_dropout.rounds = 1;
  with_dropout.dropout.rate = 0.1;
  expect_refused(with_dropout, "excludes injected dropouts");
  // Default ids are fedkit-client's: a pool of "client-000003" names client 3.
  auto defaults = base;
  defaults.replay = {{1, 0, {"client-000003", "client-000007", "client-000011"}, {}, {}}};
  defaults.replay[0].assigned = CoordinatorSample(defaults.replay[0].pool, 3, base.seed, 1);
  defaults.replay[0].aggregated = defaults.replay[0].assigned;
  auto sim = Simulator::Create(defaults, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  auto round = (*sim)->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->contributors, 3);
}

// --- Robust aggregation and simulated attackers ---

// A small IID population, on which robust aggregators learn as FedAvg does (the synthetic dataset
// is so heterogeneous that an unweighted median of its clients barely moves): four classes of
// Gaussian blobs in 10 dimensions (unit-variance noise around class means of norm ~2.2), 30
// examples per client, 1000 for evaluation. Deterministic.
class IidBlobs final : public data::FederatedDataset {
 public:
  static constexpr int kClasses = 4;
  static constexpr int64_t kDim = 10;
  static constexpr int64_t kPerClient = 30;

  explicit IidBlobs(int64_t clients) : clients_(clients) {
    info_.feature_shape = {kDim};
    info_.num_classes = kClasses;
    privacy::SeededRandomSource random(99);
    for (int c = 0; c < kClasses; ++c) {
      for (int64_t j = 0; j < kDim; ++j) means_[c][j] = 0.7 * privacy::StandardGaussian(random);
    }
    eval_ = Generate(1000, 12345);
  }
  int64_t num_clients() const override { return clients_; }
  const data::DatasetInfo& info() const override { return info_; }
  int64_t NumTrainExamples(int64_t client) const override {
    return client >= 0 && client < clients_ ? kPerClient : 0;
  }
  data::Examples TrainExamples(int64_t client) const override {
    return Generate(NumTrainExamples(client), 1000 + static_cast<uint64_t>(client));
  }
  const data::Examples& EvalExamples() const override { return eval_; }

 private:
  data::Examples Generate(int64_t n, uint64_t seed) const {
    privacy::SeededRandomSource random(seed);
    data::Examples examples;
    examples.feature_dim = kDim;
    for (int64_t i = 0; i < n; ++i) {
      const int label = static_cast<int>(privacy::UniformBelow(random, kClasses));
      examples.labels.push_back(label);
      for (int64_t j = 0; j < kDim; ++j) {
        examples.features.push_back(
            static_cast<float>(means_[label][j] + privacy::StandardGaussian(random)));
      }
    }
    return examples;
  }

  int64_t clients_;
  data::DatasetInfo info_;
  double means_[kClasses][kDim] = {};
  data::Examples eval_;
};

// The simulator's robust round is the aggregator's release over the clients' deltas: with server
// SGD at learning rate 1, the new model is the start plus the coordinate-wise median (10 clients:
// the mean of the two middle values, rounded to float).
TEST(SimulatorAttackTest, MedianRoundIsTheCoordinateMedianOfTheClientDeltas) {
  auto dataset = Synthetic(10);
  auto options = SmallRun(2);
  options.clients_per_round = 10;  // everyone, so the sample is known
  options.aggregator = *aggregation::ParseAggregatorSpec("median");
  auto sim = *Simulator::Create(options, dataset.get());
  const std::vector<float> start = sim->global_parameters();
  ASSERT_TRUE(sim->RunRound().ok());
  client::LocalTrainer trainer(*models::CreateModel("logreg", dataset->info(), 0));
  std::vector<std::vector<float>> deltas;
  for (int64_t c = 0; c < 10; ++c) {
    auto update = trainer.Train(start, dataset->TrainExamples(c), options.plan,
                                Simulator::ClientTrainingSeed(options.seed, 1, c));
    ASSERT_TRUE(update.ok());
    deltas.push_back(update->delta);
  }
  for (size_t i = 0; i < start.size(); ++i) {
    std::vector<float> values;
    for (const auto& d : deltas) values.push_back(d[i]);
    std::sort(values.begin(), values.end());
    const float median =
        static_cast<float>((static_cast<double>(values[4]) + static_cast<double>(values[5])) / 2);
    EXPECT_EQ(sim->global_parameters()[i], start[i] + median) << i;
  }
}

// Clients per round 10, 8 rounds; attackers uploading `attack` are `fraction` of the 50 clients.
SimulationOptions AttackedBlobsRun(const std::string& aggregator, const std::string& attack,
                                   double fraction, int threads = 2) {
  SimulationOptions options = SmallRun(threads);
  options.model = "mlp";
  options.clients_per_round = 10;
  options.rounds = 8;
  options.eval_every = 0;
  options.aggregator = *aggregation::ParseAggregatorSpec(aggregator);
  options.attack = *ParseAttackSpec(attack);
  options.attack_fraction = fraction;
  return options;
}

// The final evaluation of a run.
models::EvalSums FinalEval(const SimulationOptions& options, const data::FederatedDataset& data) {
  auto sim = Simulator::Create(options, &data);
  EXPECT_TRUE(sim.ok()) << sim.status();
  if (!sim.ok()) return {};
  std::vector<RoundResult> results = RunAll(**sim, options.rounds);
  EXPECT_EQ(results.size(), static_cast<size_t>(options.rounds));
  if (results.empty() || !results.back().eval.has_value()) return {};
  return *results.back().eval;
}

// 20% of the population attacks (about 2 of every 10 sampled). Model replacement (scale:10) drags
// plain FedAvg far off (2.8x the honest step, overshooting); sign-flipping slows it (0.6x). The
// robust aggregators stay close to an unattacked run. Measured (accuracy / loss): unattacked mean
// 0.896 / 0.270; scale:10 at client lr 0.3: mean 0.835 / 0.521, median 0.896 / 0.265, trimmed
// mean 0.894 / 0.268, Multi-Krum 0.906 / 0.258; sign-flip at lr 0.1: mean 0.407 loss, median
// 0.349, trimmed mean 0.362, Multi-Krum 0.320.
TEST(SimulatorAttackTest, PlainMeanEndsClearlyWorseThanRobustAggregatorsUnderAttack) {
  IidBlobs data(50);
  const std::vector<std::string> robust = {"median", "trimmed-mean:0.2", "multi-krum:2,6"};
  {
    auto scaled = [&](const std::string& aggregator, const std::string& attack, double fraction) {
      SimulationOptions options = AttackedBlobsRun(aggregator, attack, fraction);
      options.plan.learning_rate = 0.3;
      return FinalEval(options, data);
    };
    const models::EvalSums honest = scaled("mean", "none", 0.0);
    const models::EvalSums mean = scaled("mean", "scale:10", 0.2);
    EXPECT_GT(mean.mean_loss(), 1.5 * honest.mean_loss());
    for (const std::string& aggregator : robust) {
      const models::EvalSums attacked = scaled(aggregator, "scale:10", 0.2);
      EXPECT_LT(attacked.mean_loss(), 1.1 * honest.mean_loss()) << aggregator;
      EXPECT_GT(mean.mean_loss(), 1.5 * attacked.mean_loss()) << aggregator;
      EXPECT_LT(mean.accuracy(), attacked.accuracy() - 0.03) << aggregator;
    }
  }
  {
    const models::EvalSums mean = FinalEval(AttackedBlobsRun("mean", "sign-flip", 0.2), data);
    for (const std::string& aggregator : robust) {
      const models::EvalSums attacked =
          FinalEval(AttackedBlobsRun(aggregator, "sign-flip", 0.2), data);
      EXPECT_GT(mean.mean_loss(), 1.1 * attacked.mean_loss()) << aggregator;
    }
  }
}

// The attackers are ChooseAttackers' fixed subset; each round counts the sampled ones.
TEST(SimulatorAttackTest, AttackersAreAFixedSeededSubsetCountedEveryRound) {
  IidBlobs data(50);
  SimulationOptions options = AttackedBlobsRun("median", "sign-flip", 0.2);
  auto sim = *Simulator::Create(options, &data);
  const std::vector<int64_t> attackers = *ChooseAttackers(50, 0.2, options.seed);
  ASSERT_EQ(attackers.size(), 10u);
  EXPECT_EQ(sim->attackers(), attackers);
  int64_t total = 0;
  for (int round = 1; round <= options.rounds; ++round) {
    absl::StatusOr<RoundResult> result = sim->RunRound();
    ASSERT_TRUE(result.ok()) << result.status();
    int64_t expected = 0;
    const std::vector<int64_t> sampled =
        *server::SampleClients(50, 10, server::SamplingSeed(options.seed, round));
    for (int64_t c : sampled) {
      expected += std::binary_search(attackers.begin(), attackers.end(), c) ? 1 : 0;
    }
    ASSERT_TRUE(result->attackers.has_value());
    EXPECT_EQ(*result->attackers, expected) << round;
    EXPECT_EQ(result->refused, 0);
    EXPECT_EQ(result->contributors, 10);
    total += expected;
  }
  EXPECT_GT(total, 0);
  // Without an attack the count is absent (and the metrics line leaves it out).
  auto plain = *Simulator::Create(AttackedBlobsRun("median", "none", 0.0), &data);
  EXPECT_TRUE(plain->attackers().empty());
  EXPECT_FALSE(plain->RunRound()->attackers.has_value());
}

// Attackers do not clip, but the coordinator still refuses an update over the clip norm: with
// --clip-norm, scaled attackers' uploads never count, and the run is the one in which they went
// silent at their upload.
TEST(SimulatorAttackTest, TheCoordinatorsClipCheckRefusesUnclippedAttackers) {
  IidBlobs data(50);
  SimulationOptions options = AttackedBlobsRun("mean", "scale:10", 0.2, 1);
  options.model = "logreg";
  options.rounds = 3;
  options.plan.clip_norm = 0.3;
  auto attacked = *Simulator::Create(options, &data);
  SimulationOptions silent = options;
  silent.attack = {};
  silent.attack_fraction = 0;
  for (int64_t a : attacked->attackers())
    silent.dropout.forced[a] = secagg::ClientPhase::kMaskedInput;
  auto dropped = *Simulator::Create(silent, &data);
  int64_t refused = 0;
  for (int r = 0; r < options.rounds; ++r) {
    absl::StatusOr<RoundResult> a = attacked->RunRound();
    absl::StatusOr<RoundResult> d = dropped->RunRound();
    ASSERT_TRUE(a.ok() && d.ok());
    EXPECT_EQ(*a->attackers, 0);
    EXPECT_EQ(a->refused, d->dropped);
    EXPECT_EQ(a->contributors, d->contributors);
    EXPECT_EQ(a->train_loss, d->train_loss);
    refused += a->refused;
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(attacked->global_parameters(), dropped->global_parameters());

  // Within the clip norm an attacker's upload counts: small noise (norm ~0.07 < 0.3).
  options.attack = *ParseAttackSpec("noise:0.01");
  auto noisy = *Simulator::Create(options, &data);
  absl::StatusOr<RoundResult> round = noisy->RunRound();
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->refused, 0);
}

TEST(SimulatorAttackTest, LabelFlippingChangesTheModel) {
  IidBlobs data(50);
  SimulationOptions honest = AttackedBlobsRun("mean", "none", 0.0);
  SimulationOptions flipped = AttackedBlobsRun("mean", "label-flip", 0.3);
  honest.rounds = flipped.rounds = 3;
  auto a = *Simulator::Create(honest, &data);
  auto b = *Simulator::Create(flipped, &data);
  const std::vector<RoundResult> ra = RunAll(*a, 3);
  const std::vector<RoundResult> rb = RunAll(*b, 3);
  ASSERT_EQ(rb.size(), 3u);
  int64_t attackers = 0;
  for (const RoundResult& r : rb) attackers += *r.attackers;
  ASSERT_GT(attackers, 0);
  EXPECT_NE(a->global_parameters(), b->global_parameters());
  // Trained on mirrored labels, the attackers' losses are those of a model far from their data.
  EXPECT_GT(rb.back().train_loss, ra.back().train_loss);
  EXPECT_GT(rb.back().eval->mean_loss(), ra.back().eval->mean_loss());
}

TEST(SimulatorAttackTest, AttackedRunsDoNotDependOnTheNumberOfThreads) {
  IidBlobs data(50);
  for (const auto& [aggregator, attack] :
       std::vector<std::pair<std::string, std::string>>{{"multi-krum:2,6", "noise:0.5"},
                                                        {"median", "label-flip"},
                                                        {"trimmed-mean:0.2", "scale:10"}}) {
    SimulationOptions one = AttackedBlobsRun(aggregator, attack, 0.2, 1);
    one.rounds = 3;
    one.eval_every = 1;
    SimulationOptions three = one;
    three.threads = 3;
    auto a = *Simulator::Create(one, &data);
    auto b = *Simulator::Create(three, &data);
    const std::vector<RoundResult> ra = RunAll(*a, 3);
    const std::vector<RoundResult> rb = RunAll(*b, 3);
    ASSERT_EQ(ra.size(), 3u);
    ASSERT_EQ(rb.size(), 3u);
    EXPECT_EQ(a->global_parameters(), b->global_parameters()) << attack;
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(ra[r].attackers, rb[r].attackers) << attack;
      EXPECT_EQ(ra[r].train_loss, rb[r].train_loss) << attack;
      EXPECT_EQ(ra[r].mean_delta_norm, rb[r].mean_delta_norm) << attack;
      EXPECT_EQ(ra[r].eval->loss_sum, rb[r].eval->loss_sum) << attack;
    }
  }
}

// Krum with F = 1 needs 5 updates: a round left with 4 (a client dropped out) aborts, with the
// model unchanged, and the run goes on.
TEST(SimulatorAttackTest, KrumRoundWithTooFewContributorsAbortsAndKeepsTheModel) {
  IidBlobs data(5);
  SimulationOptions options = AttackedBlobsRun("krum:1", "none", 0.0);
  options.clients_per_round = 5;
  options.rounds = 2;
  options.dropout.forced[3] = secagg::ClientPhase::kMaskedInput;
  auto sim = *Simulator::Create(options, &data);
  const std::vector<float> before = sim->global_parameters();
  absl::StatusOr<RoundResult> round = sim->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->contributors, 4);
  EXPECT_THAT(round->aborted, ::testing::HasSubstr("krum:1"));
  EXPECT_EQ(sim->global_parameters(), before);
  EXPECT_EQ(sim->rounds_done(), 1);
  EXPECT_TRUE(sim->RunRound().ok());

  options.dropout.forced.clear();  // five contributors: Krum picks one
  auto full = *Simulator::Create(options, &data);
  round = full->RunRound();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_TRUE(round->aborted.empty()) << round->aborted;
  EXPECT_NE(full->global_parameters(), before);
}

TEST(SimulatorAttackTest, InvalidCombinationsAreRefused) {
  IidBlobs data(50);
  auto expect_refused = [&](const SimulationOptions& options, const std::string& message) {
    auto sim = Simulator::Create(options, &data);
    ASSERT_FALSE(sim.ok()) << message;
    EXPECT_EQ(sim.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(sim.status().message(), ::testing::HasSubstr(message));
  };
  SimulationOptions secure = AttackedBlobsRun("median", "none", 0.0);
  secure.plan.clip_norm = 1;
  secure.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
  expect_refused(secure, "`aggregator` median needs every update in the clear");
  SimulationOptions dp = AttackedBlobsRun("norm-bound:1", "none", 0.0);
  dp.plan.clip_norm = 1;
  dp.dp.mode = DpMode::kCentral;
  dp.dp.noise_multiplier = 1;
  expect_refused(dp, "`aggregator` norm-bound:1 needs every update in the clear");
  expect_refused(AttackedBlobsRun("krum:4", "none", 0.0),
                 "`aggregator` krum:4 needs at least 2F + 3 = 11 updates per round");
  SimulationOptions attacked_secure = AttackedBlobsRun("mean", "sign-flip", 0.2);
  attacked_secure.plan.clip_norm = 1;
  attacked_secure.secure_aggregation.emplace().variant = secagg::Variant::kSecAggPlus;
  expect_refused(attacked_secure, "`attack` sign-flip is simulated in plain rounds only");
  SimulationOptions attacked_dp = AttackedBlobsRun("mean", "noise:1", 0.2);
  attacked_dp.plan.clip_norm = 1;
  attacked_dp.dp.mode = DpMode::kCentral;
  attacked_dp.dp.noise_multiplier = 1;
  expect_refused(attacked_dp, "`attack` noise:1 is simulated in plain rounds only");
  expect_refused(AttackedBlobsRun("mean", "sign-flip", 1.0), "`attack_fraction` must be in [0, 1)");
  expect_refused(AttackedBlobsRun("mean", "sign-flip", -0.1),
                 "`attack_fraction` must be in [0, 1)");
  expect_refused(AttackedBlobsRun("mean", "none", 0.2), "`attack_fraction` is set");
  SimulationOptions bad_scale = AttackedBlobsRun("mean", "none", 0.0);
  bad_scale.attack = {.kind = AttackKind::kScale, .scale = std::nan("")};
  expect_refused(bad_scale, "`attack`");
  // Mean stays allowed with secure aggregation (the default).
  secure.aggregator = {};
  EXPECT_TRUE(Simulator::Create(secure, &data).ok());
}

}  // namespace
}  // namespace fedkit::simulation
