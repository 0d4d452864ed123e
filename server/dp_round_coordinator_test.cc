// RoundCoordinator with central DP: noised fixed-denominator average, epsilon per round from the
// RDP accountant, the budget stop, and the accountant's state through a checkpoint.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/clipping.h"
#include "privacy/dp_setup.h"
#include "privacy/noise.h"
#include "privacy/rdp_accountant.h"
#include "proto/secagg_conversion.h"
#include "server/client_sampler.h"
#include "server/privacy_ledger.h"
#include "server/round_coordinator.h"
#include "server/testing/coordinator_requests.h"

namespace fedkit::server {
namespace {

using ::fedkit::server::coordinator_testing::CheckInOf;

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
  o.population = 3;  // the whole fleet: a DP round waits for this many, so q = 3 / 3
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
  // The same noise stream, by hand: (sum of clipped deltas + discrete Gaussian noise of stddev
  // >= z S on the exact sum's grid) / K, unit weights.
  privacy::SeededRandomSource noise(privacy::ValueNoiseSeed(42, 1));
  const double bound = aggregation::UpdateValueBound(1.0);
  auto exact = aggregation::UnitWeightDpAggregator::Create(2, bound, 0.0, 1.0, nullptr);
  ASSERT_TRUE(exact.ok());
  for (const auto& delta : kDeltas) ASSERT_TRUE((*exact)->Accumulate(delta, 1).ok());
  auto expected = aggregation::CentralDpRelease((*exact)->sum(), bound, 0.8 * 1.0, 3.0, noise);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const std::vector<float> global = c->global_parameters();  // server SGD, lr 1: 0 + average
  ASSERT_EQ(global.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(global[i], (*expected)[i], 1e-6) << i;
  EXPECT_NE((*expected)[0], static_cast<float>(0.9 / 3));  // noise really was added

  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(3.0 / 3.0, 0.8).ok());
  const double epsilon = accountant.Epsilon(1e-5)->epsilon;
  auto status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_GT(epsilon, 0);
  // GetStatus reports the privacy spent, per round and so far, at the run's delta.
  ASSERT_TRUE(status.history(0).has_epsilon());
  EXPECT_DOUBLE_EQ(status.history(0).epsilon(), epsilon);
  ASSERT_TRUE(status.has_epsilon());
  EXPECT_DOUBLE_EQ(status.epsilon(), epsilon);
  EXPECT_DOUBLE_EQ(status.delta(), 1e-5);
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
  ASSERT_TRUE(accountant.Compose(1.0, 0.8, 2).ok());
  const double after_two = accountant.Epsilon(1e-5)->epsilon;
  const double after_three = accountant.EpsilonAfter(1.0, 0.8, 1, 1e-5)->epsilon;
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
  ASSERT_TRUE(accountant.Compose(1.0, 0.8, 3).ok());
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
  o.population = 4;
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

// --- Sampling, accounting and the privacy ledger under DP ---

// Uploads a small clipped delta for `id`'s current assignment; false if it has none.
bool UploadIfAssigned(RoundCoordinator& c, const std::string& id, absl::Time now,
                      v1::TrainingPlan* plan = nullptr) {
  auto r = c.CheckIn(CheckInOf(id), now);
  if (!r.ok() || !r->has_assignment()) return false;
  if (plan != nullptr) *plan = r->assignment().plan();
  v1::UpdateHeader h;
  h.set_client_id(id);
  h.set_assignment_id(r->assignment().assignment_id());
  h.set_round(r->assignment().round());
  h.set_num_examples(1);
  h.set_total_size(2);
  return c.SubmitUpdate(h, std::vector<float>{0.1f, 0.2f}, now).ok();
}

std::vector<std::string> Ids(const std::string& prefix, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrFormat("%s%02d", prefix, i));
  return ids;
}

TEST(DpSamplingTest, TheDevicesPlanRevealsNothingAboutTheSample) {
  CoordinatorOptions o = DpOptions();
  o.dp_noise_seed.reset();  // a deployment: the CSPRNG
  o.population = 20;
  const std::vector<std::string> fleet = Ids("d", 20);
  // What a device could compute from its plan (run_seed 7) if the sample derived from it.
  auto from_run_seed = SampleClients(20, 3, SamplingSeed(o.plan.run_seed(), 1, 0));
  ASSERT_TRUE(from_run_seed.ok());
  std::vector<std::string> run_seed_sample;
  for (int64_t i : *from_run_seed) run_seed_sample.push_back(fleet[i]);
  std::set<std::vector<std::string>> samples;
  int equal_to_run_seed = 0;
  std::string plan_bytes;
  for (int trial = 0; trial < 6; ++trial) {
    std::optional<RoundParticipation> record;
    CoordinatorHooks hooks;
    hooks.round_participation = [&](const RoundParticipation& p) { record = p; };
    auto c = Make(o, std::move(hooks));
    for (const std::string& id : fleet) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart).ok());
    std::vector<std::string> assigned;
    for (const std::string& id : fleet) {
      v1::TrainingPlan plan;
      if (!UploadIfAssigned(*c, id, kStart, &plan)) continue;
      assigned.push_back(id);
      // Every coordinator hands every device the same plan, whoever it sampled.
      if (plan_bytes.empty()) plan_bytes = plan.SerializeAsString();
      EXPECT_EQ(plan.SerializeAsString(), plan_bytes);
    }
    ASSERT_EQ(assigned.size(), 3u);
    ASSERT_EQ(c->rounds_completed(), 1);
    samples.insert(assigned);
    equal_to_run_seed += assigned == run_seed_sample ? 1 : 0;
    // The operator's record holds the seed that reproduces the sample.
    ASSERT_TRUE(record.has_value());
    ASSERT_TRUE(record->sampling_seed.has_value());
    auto again = SampleClients(20, 3, *record->sampling_seed);
    ASSERT_TRUE(again.ok());
    std::vector<std::string> resampled;
    for (int64_t i : *again) resampled.push_back(record->pool[i]);
    EXPECT_EQ(resampled, assigned);
  }
  // Six coordinators with the same plan drew different samples (all equal: probability 1140^-5),
  // and not the one the run seed gives (twice or more by chance: below 2e-5).
  EXPECT_GE(samples.size(), 2u);
  EXPECT_LE(equal_to_run_seed, 1);
}

TEST(DpSamplingTest, QIsTheOverSelectedSampleOverThePoolReallySampledEachRound) {
  CoordinatorOptions o = DpOptions();
  o.over_select = 0.3;  // 4 assigned for K = 3: any of the 4 may be summed
  o.population = 4;
  o.min_available = 5;
  std::vector<PrivacyLedgerRecord> ledger;
  std::vector<RoundOutcome> outcomes;
  CoordinatorHooks hooks;
  hooks.privacy_released = [&](const PrivacyLedgerRecord& r) {
    ledger.push_back(r);
    return absl::OkStatus();
  };
  hooks.round_committed = [&](const RoundOutcome& r) { outcomes.push_back(r); };
  auto c = Make(o, std::move(hooks));
  const std::vector<std::string> first = Ids("a", 5);
  for (const std::string& id : first) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart).ok());
  // Round 1 sampled 4 of 5. Six more devices wait meanwhile.
  const std::vector<std::string> more = Ids("b", 6);
  for (const std::string& id : more) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart).ok());
  int uploaded = 0;
  for (const std::string& id : first) {
    if (uploaded < 3 && UploadIfAssigned(*c, id, kStart)) ++uploaded;
  }
  ASSERT_EQ(c->rounds_completed(), 1);
  // Round 2 samples 4 of the 7 waiting (the 6, and round 1's unsampled device).
  ASSERT_TRUE(c->CheckIn(CheckInOf(more[0]), kStart).ok());
  uploaded = 0;
  for (const auto& ids : {first, more}) {
    for (const std::string& id : ids) {
      if (uploaded < 3 && UploadIfAssigned(*c, id, kStart)) ++uploaded;
    }
  }
  ASSERT_EQ(c->rounds_completed(), 2);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_DOUBLE_EQ(*outcomes[0].sampling_rate, 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(*outcomes[1].sampling_rate, 4.0 / 7.0);
  // The accountant composed the two different steps.
  privacy::RdpAccountant accountant;
  ASSERT_TRUE(accountant.Compose(4.0 / 5.0, 0.8).ok());
  EXPECT_DOUBLE_EQ(*outcomes[0].epsilon, accountant.Epsilon(1e-5)->epsilon);
  ASSERT_TRUE(accountant.Compose(4.0 / 7.0, 0.8).ok());
  EXPECT_DOUBLE_EQ(*outcomes[1].epsilon, accountant.Epsilon(1e-5)->epsilon);
  ASSERT_EQ(ledger.size(), 2u);
  EXPECT_EQ(ledger[1], (PrivacyLedgerRecord{2, 4.0 / 7.0, 0.8, *outcomes[1].epsilon}));
}

TEST(DpSamplingTest, NoRoundStartsWithFewerDevicesThanThePopulation) {
  CoordinatorOptions o = DpOptions();
  o.population = 5;
  o.retry_interval = absl::Seconds(60);  // nobody expires from the pool in this test
  auto c = Make(o);
  const std::vector<std::string> fleet = Ids("d", 5);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c->CheckIn(CheckInOf(fleet[i]), kStart).ok());
  // Past the selection window with min_clients (3) waiting: a plain run would start; DP does not.
  const absl::Time later = kStart + o.selection_timeout + absl::Seconds(5);
  ASSERT_TRUE(c->Tick(later).ok());
  EXPECT_EQ(c->Status(later).phase(), "waiting");
  for (int i = 0; i < 4; ++i) {
    auto r = c->CheckIn(CheckInOf(fleet[i]), later);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_assignment());
  }
  ASSERT_TRUE(c->CheckIn(CheckInOf(fleet[4]), later).ok());
  EXPECT_EQ(c->Status(later).phase(), "training");

  // A population smaller than a round's over-selected sample is refused, naming the fields.
  o.population = 3;
  o.over_select = 0.3;
  const absl::Status refused = RoundCoordinator::Create(o, TinyLayout(), {0, 0}, {}).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("`population` (3)"));
  EXPECT_THAT(refused.message(), HasSubstr("`over_select`"));
  EXPECT_THAT(refused.message(), HasSubstr("= 4"));
  EXPECT_EQ(privacy::DpErrorField(refused), "population");
}

// Hooks that keep every checkpoint, ledger record and the order they were written in.
struct LedgerRecorder {
  std::vector<v1::Checkpoint> checkpoints;
  std::vector<PrivacyLedgerRecord> ledger;
  std::vector<RoundOutcome> outcomes;
  std::vector<std::string> events;
  absl::Status ledger_status = absl::OkStatus();
  CoordinatorHooks Hooks() {
    CoordinatorHooks hooks;
    hooks.privacy_released = [this](const PrivacyLedgerRecord& r) {
      events.push_back(absl::StrCat("ledger ", r.round));
      if (!ledger_status.ok()) return ledger_status;
      ledger.push_back(r);
      return absl::OkStatus();
    };
    hooks.save_checkpoint = [this](const v1::Checkpoint& cp) {
      events.push_back(absl::StrCat("checkpoint ", cp.rounds_completed()));
      checkpoints.push_back(cp);
      return absl::OkStatus();
    };
    hooks.round_committed = [this](const RoundOutcome& r) { outcomes.push_back(r); };
    return hooks;
  }
};

TEST(PrivacyLedgerCoordinatorTest, ResumingFromAnOlderCheckpointIsRefusedWithoutTheOverride) {
  LedgerRecorder first;
  auto c = Make(DpOptions(), first.Hooks());
  ASSERT_TRUE(RunRound(*c, kStart));
  ASSERT_TRUE(RunRound(*c, kStart + absl::Seconds(1)));
  // Each release is on the ledger before its checkpoint.
  EXPECT_EQ(first.events,
            (std::vector<std::string>{"ledger 1", "checkpoint 1", "ledger 2", "checkpoint 2"}));
  ASSERT_EQ(first.ledger.size(), 2u);
  EXPECT_EQ(first.ledger[0].round, 1);
  EXPECT_DOUBLE_EQ(first.ledger[0].sampling_rate, 1.0);
  EXPECT_DOUBLE_EQ(first.ledger[0].noise_multiplier, 0.8);
  EXPECT_DOUBLE_EQ(first.ledger[1].epsilon, *first.outcomes[1].epsilon);
  privacy::RdpAccountant three;
  ASSERT_TRUE(three.Compose(1.0, 0.8, 3).ok());
  const double epsilon_three = three.Epsilon(1e-5)->epsilon;

  // The newest checkpoint (round 2) was lost: resuming from round 1's is refused...
  auto older = Make(DpOptions());
  ASSERT_TRUE(older->Restore(first.checkpoints[0]).ok());
  const absl::Status refused = older->ResumePrivacyLedger(first.ledger, false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("records round 2 as released"));
  EXPECT_THAT(refused.message(), HasSubstr("resumes after round 1"));
  EXPECT_THAT(refused.message(), HasSubstr("`allow_privacy_rollback`"));
  // ... as is starting afresh (every checkpoint deleted).
  auto fresh = Make(DpOptions());
  EXPECT_EQ(fresh->ResumePrivacyLedger(first.ledger, false).code(),
            absl::StatusCode::kFailedPrecondition);

  // With the override, round 2 is re-run, charged on top of the two released rounds.
  LedgerRecorder overridden;
  auto rerun = Make(DpOptions(), overridden.Hooks());
  ASSERT_TRUE(rerun->Restore(first.checkpoints[0]).ok());
  ASSERT_TRUE(rerun->ResumePrivacyLedger(first.ledger, true).ok());
  ASSERT_TRUE(RunRound(*rerun, kStart + absl::Seconds(2)));
  ASSERT_EQ(overridden.outcomes.size(), 1u);
  EXPECT_EQ(overridden.outcomes[0].round, 2);
  EXPECT_DOUBLE_EQ(*overridden.outcomes[0].epsilon, epsilon_three);

  // From the newest checkpoint the ledger agrees: no override needed, nothing charged twice.
  LedgerRecorder resumed;
  auto newest = Make(DpOptions(), resumed.Hooks());
  ASSERT_TRUE(newest->Restore(first.checkpoints[1]).ok());
  ASSERT_TRUE(newest->ResumePrivacyLedger(first.ledger, false).ok());
  ASSERT_TRUE(RunRound(*newest, kStart + absl::Seconds(2)));
  EXPECT_DOUBLE_EQ(*resumed.outcomes[0].epsilon, epsilon_three);

  // A ledger begun after the checkpoints (empty, or behind them): the checkpoint's accountant
  // already counts those rounds, and nothing is re-run.
  LedgerRecorder late;
  auto behind = Make(DpOptions(), late.Hooks());
  ASSERT_TRUE(behind->Restore(first.checkpoints[1]).ok());
  ASSERT_TRUE(behind->ResumePrivacyLedger({}, false).ok());
  ASSERT_TRUE(RunRound(*behind, kStart + absl::Seconds(2)));
  EXPECT_DOUBLE_EQ(*late.outcomes[0].epsilon, epsilon_three);
  EXPECT_EQ(late.ledger[0].round, 3);

  // Without DP there is no ledger to resume.
  CoordinatorOptions plain = DpOptions();
  plain.dp.reset();
  EXPECT_EQ(Make(plain)->ResumePrivacyLedger({}, false).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PrivacyLedgerCoordinatorTest, ARoundTheLedgerCannotRecordIsNeitherCheckpointedNorFollowed) {
  LedgerRecorder recorder;
  recorder.ledger_status = absl::InternalError("disk full");
  auto c = Make(DpOptions(), recorder.Hooks());
  const std::vector<std::string> first = Ids("c", 3);
  const std::vector<std::string> next = Ids("x", 3);
  for (const std::string& id : first) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart).ok());
  // Enough devices for round 2 wait while round 1 runs.
  for (const std::string& id : next) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart).ok());
  for (const std::string& id : first) EXPECT_TRUE(UploadIfAssigned(*c, id, kStart)) << id;
  EXPECT_EQ(recorder.events, std::vector<std::string>{"ledger 1"});
  EXPECT_TRUE(recorder.checkpoints.empty());
  EXPECT_THAT(c->fatal_error().message(), HasSubstr("disk full"));
  // No device gets round 1's model: no round starts, although enough devices wait.
  const absl::Time later = kStart + absl::Seconds(1);
  EXPECT_FALSE(c->Tick(later).ok());
  EXPECT_EQ(c->Status(later).phase(), "waiting");
  EXPECT_EQ(c->CheckIn(CheckInOf(next[0]), later).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace fedkit::server
