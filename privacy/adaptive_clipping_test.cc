#include "privacy/adaptive_clipping.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::privacy {
namespace {

AdaptiveClipping MustCreate(const AdaptiveClippingOptions& options) {
  absl::StatusOr<AdaptiveClipping> c = AdaptiveClipping::Create(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

TEST(ValueNoiseMultiplierTest, MatchesHandValues) {
  // z = 1, sigma_b = 5 (m = 100 at the default m / 20): (1 - 1/100)^(-1/2).
  absl::StatusOr<double> z = ValueNoiseMultiplier(1.0, 5.0);
  ASSERT_TRUE(z.ok());
  EXPECT_NEAR(*z, 1.005037815259212, 1e-14);
  // z = 1.5, sigma_b = 1: (4/9 - 1/4)^(-1/2) = (7/36)^(-1/2) = 6 / sqrt(7).
  z = ValueNoiseMultiplier(1.5, 1.0);
  ASSERT_TRUE(z.ok());
  EXPECT_NEAR(*z, 6 / std::sqrt(7.0), 1e-14);
  // Recombining gives back z: z^-2 = z_delta^-2 + (2 sigma_b)^-2.
  EXPECT_NEAR(1 / std::sqrt(1 / (*z * *z) + 1 / 4.0), 1.5, 1e-14);
  // No privacy, no noise.
  z = ValueNoiseMultiplier(0.0, 0.0);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(*z, 0.0);
  EXPECT_EQ(DefaultClippedCountStddev(100), 5.0);
}

TEST(ValueNoiseMultiplierTest, RejectsACountNoiseTooSmallForTheBudget) {
  EXPECT_EQ(ValueNoiseMultiplier(1.0, 0.5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueNoiseMultiplier(1.0, 0.4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueNoiseMultiplier(-1.0, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueNoiseMultiplier(NAN, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueNoiseMultiplier(1.0, -5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AdaptiveClippingTest, ValidatesOptions) {
  AdaptiveClippingOptions good{.initial_clip_norm = 1.0,
                               .target_quantile = 0.5,
                               .learning_rate = 0.2,
                               .clipped_count_stddev = 1.0,
                               .expected_clients_per_round = 10};
  EXPECT_TRUE(AdaptiveClipping::Create(good).ok());
  auto with = [&](auto mutate) {
    AdaptiveClippingOptions o = good;
    mutate(o);
    return AdaptiveClipping::Create(o).status().code();
  };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(with([](auto& o) { o.initial_clip_norm = 0; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.initial_clip_norm = INFINITY; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.target_quantile = 0; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.target_quantile = 1; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.learning_rate = -0.1; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.clipped_count_stddev = -1; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.expected_clients_per_round = 0; }), kInvalid);
  EXPECT_EQ(with([](auto& o) { o.expected_clients_per_round = NAN; }), kInvalid);
}

TEST(AdaptiveClippingTest, UnclippedBitCountsTheBoundaryAsUnclipped) {
  EXPECT_EQ(AdaptiveClipping::UnclippedBit(1.0, 1.0), 1);
  EXPECT_EQ(AdaptiveClipping::UnclippedBit(0.5, 1.0), 1);
  EXPECT_EQ(AdaptiveClipping::UnclippedBit(1.5, 1.0), 0);
}

// sigma_b = 0: C_0 = 1, gamma = 0.5, eta = 0.2, m = 10.
TEST(AdaptiveClippingTest, NoiselessUpdatesMatchTheFormulaByHand) {
  AdaptiveClipping clip = MustCreate({.initial_clip_norm = 1.0,
                                      .target_quantile = 0.5,
                                      .learning_rate = 0.2,
                                      .clipped_count_stddev = 0.0,
                                      .expected_clients_per_round = 10});
  SeededRandomSource random(1);
  EXPECT_EQ(clip.clip_norm(), 1.0);
  // 8 of 10 unclipped: b_bar = 0.8, C = exp(-0.2 * 0.3).
  absl::StatusOr<AdaptiveClippingStep> step = clip.Update(8, 10, random);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_DOUBLE_EQ(step->unclipped_fraction, 0.8);
  EXPECT_DOUBLE_EQ(step->clip_norm, std::exp(-0.06));
  EXPECT_DOUBLE_EQ(clip.clip_norm(), std::exp(-0.06));
  // 2 of 10: b_bar = 0.2, C = exp(-0.06) * exp(+0.06) = 1.
  step = clip.Update(2, 10, random);
  ASSERT_TRUE(step.ok());
  EXPECT_DOUBLE_EQ(step->unclipped_fraction, 0.2);
  EXPECT_NEAR(clip.clip_norm(), 1.0, 1e-15);
  // 6 of 8 reports (m = 10 expected): the centred sum is 6 - 8/2 = 2, b_bar = 2/10 + 1/2 = 0.7.
  step = clip.Update(6, 8, random);
  ASSERT_TRUE(step.ok());
  EXPECT_DOUBLE_EQ(step->unclipped_fraction, 0.7);
  EXPECT_NEAR(clip.clip_norm(), std::exp(-0.2 * 0.2), 1e-15);
  // An already-noised centred sum far out of range is clamped to b_bar = 1.
  const double before = clip.clip_norm();
  step = clip.UpdateFromNoisedCenteredSum(100.0);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->unclipped_fraction, 1.0);
  EXPECT_NEAR(clip.clip_norm(), before * std::exp(-0.2 * 0.5), 1e-15);
  EXPECT_EQ(clip.state().rounds, 4);
}

TEST(AdaptiveClippingTest, RejectsInconsistentCounts) {
  AdaptiveClipping clip = MustCreate({.initial_clip_norm = 1.0,
                                      .target_quantile = 0.5,
                                      .learning_rate = 0.2,
                                      .clipped_count_stddev = 0.0,
                                      .expected_clients_per_round = 10});
  SeededRandomSource random(1);
  EXPECT_FALSE(clip.Update(11, 10, random).ok());
  EXPECT_FALSE(clip.Update(-1, 10, random).ok());
  EXPECT_FALSE(clip.Update(NAN, 10, random).ok());
  EXPECT_FALSE(clip.Update(1, INFINITY, random).ok());
  EXPECT_FALSE(clip.UpdateFromNoisedCenteredSum(NAN).ok());
  EXPECT_EQ(clip.clip_norm(), 1.0);
  EXPECT_EQ(clip.state().rounds, 0);
}

// Simulates `rounds` rounds of m clients whose update norms are Exponential(1), with count noise
// sigma_b = m / 20, and returns the geometric mean of the clip over the last `tail` rounds.
double ConvergedClip(double target_quantile, int rounds, int tail, uint64_t seed) {
  constexpr int kClients = 100;
  AdaptiveClipping clip = MustCreate({.initial_clip_norm = 0.1,
                                      .target_quantile = target_quantile,
                                      .learning_rate = 0.2,
                                      .clipped_count_stddev = DefaultClippedCountStddev(kClients),
                                      .expected_clients_per_round = kClients});
  SeededRandomSource norms(seed), noise(seed + 1);
  double log_sum = 0;
  for (int r = 0; r < rounds; ++r) {
    int unclipped = 0;
    for (int i = 0; i < kClients; ++i) {
      const double norm = -std::log1p(-UniformDouble(norms));  // Exponential(1)
      unclipped += AdaptiveClipping::UnclippedBit(norm, clip.clip_norm());
    }
    EXPECT_TRUE(clip.Update(unclipped, kClients, noise).ok());
    if (r >= rounds - tail) log_sum += std::log(clip.clip_norm());
  }
  return std::exp(log_sum / tail);
}

// The gamma-quantile of Exponential(1) is -ln(1 - gamma): ln 2 = 0.693 for the median, ln 5 = 1.609
// for gamma = 0.8. Starting from 0.1, after 300 warm-up rounds the clip hovers around it (log C
// fluctuates by a few percent: eta times the b_bar noise against the restoring slope). Over seeds
// 11-15 the geometric mean of the last 300 clips was within 3.3% of the quantile; 5% is the bound
// (these seeds: +0.03% and +0.6%).
TEST(AdaptiveClippingTest, ConvergesToTheTargetQuantileOfTheNormDistribution) {
  EXPECT_NEAR(ConvergedClip(0.5, 600, 300, 11), std::log(2.0), 0.05 * std::log(2.0));
  EXPECT_NEAR(ConvergedClip(0.8, 600, 300, 12), std::log(5.0), 0.05 * std::log(5.0));
}

TEST(AdaptiveClippingTest, ZeroLearningRateKeepsTheClip) {
  AdaptiveClipping clip = MustCreate({.initial_clip_norm = 2.0,
                                      .target_quantile = 0.5,
                                      .learning_rate = 0.0,
                                      .clipped_count_stddev = 1.0,
                                      .expected_clients_per_round = 10});
  SeededRandomSource random(1);
  ASSERT_TRUE(clip.Update(10, 10, random).ok());
  EXPECT_EQ(clip.clip_norm(), 2.0);
}

// All updates zero for a long time: the clip shrinks by exp(-0.1) per round but never reaches 0,
// which ClipL2InPlace would read as "no clipping".
TEST(AdaptiveClippingTest, ClipNeverUnderflowsToZero) {
  AdaptiveClipping clip = MustCreate({.initial_clip_norm = 1.0,
                                      .target_quantile = 0.5,
                                      .learning_rate = 0.2,
                                      .clipped_count_stddev = 0.0,
                                      .expected_clients_per_round = 10});
  SeededRandomSource random(1);
  for (int r = 0; r < 10000; ++r) ASSERT_TRUE(clip.Update(10, 10, random).ok());
  EXPECT_GT(clip.clip_norm(), 0.0);
  EXPECT_EQ(clip.clip_norm(), std::numeric_limits<double>::min());
}

// A coordinator checkpoints state() and restores it into an estimator built from the same
// options: both then continue identically.
TEST(AdaptiveClippingTest, StateRoundTripsThroughACheckpoint) {
  const AdaptiveClippingOptions options{.initial_clip_norm = 0.5,
                                        .target_quantile = 0.5,
                                        .learning_rate = 0.2,
                                        .clipped_count_stddev = 2.0,
                                        .expected_clients_per_round = 40};
  AdaptiveClipping original = MustCreate(options);
  SeededRandomSource random(5);
  for (int r = 0; r < 7; ++r) ASSERT_TRUE(original.Update(10 + r, 40, random).ok());
  const AdaptiveClippingState checkpoint = original.state();
  EXPECT_EQ(checkpoint.rounds, 7);
  EXPECT_EQ(checkpoint.clip_norm, original.clip_norm());

  AdaptiveClipping restored = MustCreate(options);
  ASSERT_TRUE(restored.Restore(checkpoint).ok());
  EXPECT_EQ(restored.clip_norm(), original.clip_norm());
  SeededRandomSource a(9), b(9);
  for (int r = 0; r < 5; ++r) {
    ASSERT_TRUE(original.Update(30, 40, a).ok());
    ASSERT_TRUE(restored.Update(30, 40, b).ok());
    EXPECT_EQ(restored.clip_norm(), original.clip_norm());
  }
  EXPECT_EQ(restored.state().rounds, 12);

  EXPECT_FALSE(restored.Restore({.clip_norm = 0.0, .rounds = 1}).ok());
  EXPECT_FALSE(restored.Restore({.clip_norm = NAN, .rounds = 1}).ok());
  EXPECT_FALSE(restored.Restore({.clip_norm = 1.0, .rounds = -1}).ok());
  EXPECT_EQ(restored.state().rounds, 12);  // a failed restore changes nothing
}

}  // namespace
}  // namespace fedkit::privacy
