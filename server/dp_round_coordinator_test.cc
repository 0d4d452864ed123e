// RoundCoordinator with central DP: noised fixed-denominator average, epsilon per round from the
// RDP accountant, the budget stop, and the accountant's state through a checkpoint.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/clipping.h"
#include "privacy/dp_setup.h"
#include "privacy/noise.h"
#include "privacy/rdp_accountant.h"
#include "proto/secagg_conversion.h"
#include "server/round_coordinator.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(3'000'000);

ParameterLayout TinyLayout() {
  ParameterLayout layout;
  layout.Append("w", {2});
  return layout;
}

CoordinatorOptions DpOptions(std::optional<double> target_epsilon = std::nullopt) {
  CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = 10;
  o.clients_per_round = 3;
  o.min_clients = 3;
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_clip_norm(1.0);
  o.plan.set_run_seed(7);
  privacy::DpSettings dp;
  dp.mode = privacy::DpMode::kCentral;
  dp.noise_multiplier = 0.8;
  dp.delta = 1e-5;
  dp.target_epsilon = target_epsilon;
  o.dp = dp;
  o.population = 30;
  o.dp_noise_seed = 42;
  return o;
}

// Hooks that keep the last checkpoint and every committed round's outcome.
struct Recorder {
  v1::Checkpoint checkpoint;
  std::vector<RoundOutcome> outcomes;
  CoordinatorHooks Hooks() {
    CoordinatorHooks hooks;
    hooks.save_checkpoint = [this](const v1::Checkpoint& cp) {
      checkpoint = cp;
      return absl::OkStatus();
    };
    hooks.round_committed = [this](const RoundOutcome& r) { outcomes.push_back(r); };
    return hooks;
  }
};

std::unique_ptr<RoundCoordinator> Make(const CoordinatorOptions& o, CoordinatorHooks hooks = {}) {
  auto c = RoundCoordinator::Create(o, TinyLayout(), {0.0f, 0.0f}, std::move(hooks));
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

v1::CheckInRequest CheckInOf(const std::string& id) {
  v1::CheckInRequest r;
  r.set_client_id(id);
  r.set_api_version(1);
  return r;
}

const std::vector<std::vector<float>> kDeltas = {{0.6f, 0.0f}, {0.0f, -0.8f}, {0.3f, 0.4f}};

// Runs one round in which clients c0..c2 upload kDeltas (with very different example counts,
// which DP-FedAvg must ignore). Returns false if no round started.
bool RunRound(RoundCoordinator& c, absl::Time now, std::vector<double>* clips = nullptr) {
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.CheckIn(CheckInOf("c" + std::to_string(i)), now).ok());
  for (int i = 0; i < 3; ++i) {
    const std::string id = "c" + std::to_string(i);
    auto r = c.CheckIn(CheckInOf(id), now);
    if (!r.ok() || !r->has_assignment()) return false;
    v1::UpdateHeader h;
    h.set_client_id(id);
    h.set_assignment_id(r->assignment().assignment_id());
    h.set_round(r->assignment().round());
    h.set_num_examples(1 + 100 * i);
    h.set_total_size(2);
    const double clip = r->assignment().plan().clip_norm();
    if (clips != nullptr) clips->push_back(clip);
    std::vector<float> delta = kDeltas[i];
    const double norm = privacy::L2Norm(delta);
    if (r->assignment().report_unclipped()) h.set_unclipped(norm <= clip);
    privacy::ClipL2InPlace(absl::MakeSpan(delta), clip);
    EXPECT_TRUE(c.SubmitUpdate(h, delta, now).ok());
  }
  return true;
}

TEST(CentralDpCoordinatorTest, CommitsTheNoisedFixedDenominatorAverageAndReportsEpsilon) {
  auto c = Make(DpOptions());
  ASSERT_TRUE(RunRound(*c, kStart));
  ASSERT_EQ(c->rounds_completed(), 1);
  // The same noise stream, by hand: (sum of clipped deltas + N(0, (z S)^2)) / K, unit weights.
  privacy::SeededRandomSource noise(privacy::ValueNoiseSeed(42, 1));
  const std::vector<double> sum = {0.9, -0.4};
  auto expected = privacy::CentralDpAverage(sum, 0.8 * 1.0, 3.0, noise);
  ASSERT_TRUE(expected.ok());
  const std::vector<float> global = c->global_parameters();  // server SGD, lr 1: 0 + average
  ASSERT_EQ(global.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(global[i], (*expected)[i], 1e-6) << i;
  EXPECT_NE((*expected)[0], static_cast<float>(0.9 / 3));  // noise really was added

  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(3.0 / 30.0, 0.8).ok());
  const double epsilon = accountant.Epsilon(1e-5)->epsilon;
  auto status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_GT(epsilon, 0);
  Recorder recorded;
  auto d = Make(DpOptions(), recorded.Hooks());
  const v1::Checkpoint& checkpoint = recorded.checkpoint;
  const std::vector<RoundOutcome>& outcomes = recorded.outcomes;
  ASSERT_TRUE(RunRound(*d, kStart));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].epsilon.has_value());
  EXPECT_DOUBLE_EQ(*outcomes[0].epsilon, epsilon);
  EXPECT_EQ(checkpoint.dp_rdp_size(), static_cast<int>(accountant.rdp().size()));
  EXPECT_DOUBLE_EQ(checkpoint.history(0).epsilon(), epsilon);
}

TEST(CentralDpCoordinatorTest, StopsBeforeTheRoundThatWouldExceedTheBudget) {
  // Find the epsilon after 2 and 3 rounds and set the budget between them.
  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(0.1, 0.8, 2).ok());
  const double after_two = accountant.Epsilon(1e-5)->epsilon;
  const double after_three = accountant.EpsilonAfter(0.1, 0.8, 1, 1e-5)->epsilon;
  auto c = Make(DpOptions((after_two + after_three) / 2));
  absl::Time now = kStart;
  int rounds = 0;
  while (!c->finished() && rounds < 10) {
    if (!RunRound(*c, now)) break;
    ++rounds;
    now += absl::Seconds(1);
  }
  EXPECT_EQ(c->rounds_completed(), 2);
  EXPECT_TRUE(c->finished());
  EXPECT_THAT(c->stop_reason(), HasSubstr("stopping before round 3"));
  EXPECT_THAT(c->stop_reason(), HasSubstr("last round within budget: 2"));
  auto check_in = c->CheckIn(CheckInOf("late"), now);
  ASSERT_TRUE(check_in.ok());
  EXPECT_TRUE(check_in->has_finished());
}

TEST(CentralDpCoordinatorTest, AccountantStateSurvivesACheckpoint) {
  Recorder recorded;
  const v1::Checkpoint& checkpoint = recorded.checkpoint;
  auto first = Make(DpOptions(), recorded.Hooks());
  ASSERT_TRUE(RunRound(*first, kStart));
  ASSERT_TRUE(RunRound(*first, kStart + absl::Seconds(1)));
  ASSERT_EQ(checkpoint.rounds_completed(), 2);

  Recorder resumed_recorded;
  const std::vector<RoundOutcome>& outcomes = resumed_recorded.outcomes;
  auto resumed = Make(DpOptions(), resumed_recorded.Hooks());
  ASSERT_TRUE(resumed->Restore(checkpoint).ok());
  ASSERT_TRUE(RunRound(*resumed, kStart + absl::Seconds(2)));
  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(0.1, 0.8, 3).ok());
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_DOUBLE_EQ(*outcomes[0].epsilon, accountant.Epsilon(1e-5)->epsilon);

  // A run without DP refuses a DP checkpoint, and vice versa.
  CoordinatorOptions plain = DpOptions();
  plain.dp.reset();
  auto no_dp = Make(plain);
  EXPECT_THAT(no_dp->Restore(checkpoint).message(), HasSubstr("written with DP"));
}

TEST(CentralDpCoordinatorTest, RefusesInconsistentSettings) {
  CoordinatorOptions o = DpOptions();
  o.population = 2;
  EXPECT_THAT(RoundCoordinator::Create(o, TinyLayout(), {0, 0}, {}).status().message(),
              HasSubstr("population"));
  o = DpOptions();
  o.plan.set_clip_norm(0);
  EXPECT_THAT(RoundCoordinator::Create(o, TinyLayout(), {0, 0}, {}).status().message(),
              HasSubstr("`clip_norm`"));
  // A deployment always accounts: no z = 0, which simulations allow.
  o = DpOptions();
  o.dp->noise_multiplier = 0;
  const absl::Status no_noise = RoundCoordinator::Create(o, TinyLayout(), {0, 0}, {}).status();
  EXPECT_THAT(no_noise.message(), HasSubstr("`noise_multiplier` > 0"));
  EXPECT_EQ(privacy::DpErrorField(no_noise), "noise_multiplier");
}

CoordinatorOptions AdaptiveOptions() {
  CoordinatorOptions o = DpOptions();
  o.dp->adaptive_clip_quantile = 0.5;
  o.dp->adaptive_clip_learning_rate = 0.2;
  o.dp->noise_multiplier = 0.05;  // below 2 sigma_b = 2 * 3 / 20
  return o;
}

TEST(AdaptiveClippingCoordinatorTest, TheClipMovesAsTheSimulatorsAndSurvivesACheckpoint) {
  Recorder recorded;
  const v1::Checkpoint& checkpoint = recorded.checkpoint;
  const std::vector<RoundOutcome>& outcomes = recorded.outcomes;
  auto c = Make(AdaptiveOptions(), recorded.Hooks());
  std::vector<double> clips;
  ASSERT_TRUE(RunRound(*c, kStart, &clips));
  ASSERT_TRUE(RunRound(*c, kStart + absl::Seconds(1), &clips));
  ASSERT_EQ(clips.size(), 6u);

  // The same steps by hand, with the count noise the simulator draws for rounds 1 and 2.
  const CoordinatorOptions o = AdaptiveOptions();
  privacy::DpRoundShape shape;
  shape.clients_per_round = 3;
  shape.population = 30;
  shape.dim = 2;
  shape.clip_norm = 1.0;
  auto setup = privacy::SetUpDp(*o.dp, shape);
  ASSERT_TRUE(setup.ok()) << setup.status();
  ASSERT_TRUE(setup->adaptive_clipping.has_value());
  auto expected = privacy::AdaptiveClipping::Create(*setup->adaptive_clipping);
  ASSERT_TRUE(expected.ok()) << expected.status();
  std::vector<double> expected_clips;
  for (int round = 1; round <= 2; ++round) {
    const double clip = expected->clip_norm();
    int unclipped = 0;
    for (int i = 0; i < 3; ++i) {
      expected_clips.push_back(clip);
      unclipped += privacy::L2Norm(kDeltas[i]) <= clip ? 1 : 0;
    }
    privacy::SeededRandomSource count_noise(privacy::CountNoiseSeed(42, round));
    ASSERT_TRUE(expected->Update(unclipped, 3, count_noise).ok());
  }
  EXPECT_EQ(clips, expected_clips);
  EXPECT_NE(clips[3], clips[0]);  // the clip moved (all three deltas are within 1: it shrinks)
  ASSERT_EQ(outcomes.size(), 2u);
  ASSERT_TRUE(outcomes[1].clip_norm.has_value());
  EXPECT_EQ(*outcomes[1].clip_norm, clips[3]);
  ASSERT_TRUE(outcomes[1].unclipped_fraction.has_value());
  EXPECT_DOUBLE_EQ(checkpoint.dp_clip_norm(), expected->clip_norm());

  // Resumed from the checkpoint, round 3 uses the clip the two rounds left.
  auto resumed = Make(AdaptiveOptions());
  ASSERT_TRUE(resumed->Restore(checkpoint).ok());
  std::vector<double> resumed_clips;
  ASSERT_TRUE(RunRound(*resumed, kStart + absl::Seconds(2), &resumed_clips));
  ASSERT_FALSE(resumed_clips.empty());
  EXPECT_EQ(resumed_clips[0], expected->clip_norm());

  // A fixed-clip checkpoint does not resume an adaptive run.
  Recorder fixed;
  auto fixed_run = Make(DpOptions(), fixed.Hooks());
  ASSERT_TRUE(RunRound(*fixed_run, kStart));
  EXPECT_THAT(Make(AdaptiveOptions())->Restore(fixed.checkpoint).message(),
              HasSubstr("adaptive clipping"));
}

TEST(AdaptiveClippingCoordinatorTest, AnUploadMustSayWhetherItWasClipped) {
  auto c = Make(AdaptiveOptions());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(c->CheckIn(CheckInOf("c" + std::to_string(i)), kStart).ok());
  auto r = c->CheckIn(CheckInOf("c0"), kStart);
  ASSERT_TRUE(r.ok() && r->has_assignment());
  EXPECT_TRUE(r->assignment().report_unclipped());
  v1::UpdateHeader h;
  h.set_client_id("c0");
  h.set_assignment_id(r->assignment().assignment_id());
  h.set_round(r->assignment().round());
  h.set_num_examples(1);
  h.set_total_size(2);
  auto refused = c->SubmitUpdate(h, kDeltas[0], kStart);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("unclipped"));
  h.set_unclipped(true);
  EXPECT_TRUE(c->SubmitUpdate(h, kDeltas[0], kStart).ok());
}

TEST(AdaptiveClippingCoordinatorTest, RefusesANoiseTheClippedCountCannotHide) {
  CoordinatorOptions o = AdaptiveOptions();
  o.dp->noise_multiplier = 0.8;  // not below 2 sigma_b = 0.3 with 3 clients per round
  EXPECT_FALSE(RoundCoordinator::Create(o, TinyLayout(), {0, 0}, {}).ok());
}

// Distributed DP with over-selection: the round assigns 4 devices but sums at most K = 3 masked
// inputs, so the encoding sized for K suffices; every assigned device accepts its parameters
// because they say so (max_inputs), and a device refuses parameters that do not.
TEST(DistributedDpCoordinatorTest, OverSelectedRoundsTellDevicesHowManyInputsAreSummed) {
  CoordinatorOptions o = DpOptions();
  o.dp->mode = privacy::DpMode::kDistributed;
  o.dp->noise_multiplier = 0.5;
  o.dp->dropout_tolerance = 0.34;
  o.over_select = 0.3;  // 4 assigned
  o.max_examples_per_client = 100;
  SecureAggregationSettings secure;
  secure.variant = secagg::Variant::kSecAggPlus;
  secure.phase_timeout = absl::Seconds(10);
  o.secure_aggregation = secure;
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  // Masked uploads carry the unit-weight encoding: the model's 2 values, no weight (and no count
  // without adaptive clipping).
  EXPECT_EQ(c->masked_input_length(), 2);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(c->CheckIn(CheckInOf("c" + std::to_string(i)), kStart).ok());
  int assigned = 0;
  for (int i = 0; i < 4; ++i) {
    auto r = c->CheckIn(CheckInOf("c" + std::to_string(i)), kStart);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->has_assignment()) << i;
    ++assigned;
    v1::SecureAggregationParams params = r->assignment().secure_aggregation();
    EXPECT_EQ(params.num_clients(), 4);
    EXPECT_EQ(params.max_inputs(), 3);
    EXPECT_EQ(params.dp().max_clients(), 3);
    auto parsed = SecAggParamsFromProto(params);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    params.set_max_inputs(0);  // "all 4 are summed": the encoding has no room for that
    auto refused = SecAggParamsFromProto(params);
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr("below the inputs the server sums (4)"));
  }
  EXPECT_EQ(assigned, 4);
}

}  // namespace
}  // namespace fedkit::server
