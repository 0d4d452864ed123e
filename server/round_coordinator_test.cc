#include "server/round_coordinator.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/retry_after.h"
#include "core/sampling.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/client_sampler.h"
#include "server/testing/coordinator_requests.h"

namespace fedkit::server {
namespace {

using ::fedkit::server::coordinator_testing::CheckInOf;
using ::fedkit::server::coordinator_testing::HeaderFor;
using ::fedkit::server::coordinator_testing::ThreeValueLayout;

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

CoordinatorOptions Options(int64_t k, int64_t rounds) {
  CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = rounds;
  o.clients_per_round = k;
  o.min_clients = k;
  o.round_timeout = absl::Seconds(60);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_run_seed(7);
  return o;
}

std::unique_ptr<RoundCoordinator> Make(const CoordinatorOptions& o, CoordinatorHooks hooks = {}) {
  auto c = RoundCoordinator::Create(o, ThreeValueLayout(), {1.0f, 2.0f, 3.0f}, std::move(hooks));
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

// Checks in every id; then checks each in again so that all learn their assignments.
std::map<std::string, v1::RoundAssignment> CheckInAll(RoundCoordinator& c,
                                                      const std::vector<std::string>& ids,
                                                      absl::Time now) {
  for (const auto& id : ids) EXPECT_TRUE(c.CheckIn(CheckInOf(id), now).ok());
  std::map<std::string, v1::RoundAssignment> assigned;
  for (const auto& id : ids) {
    auto r = c.CheckIn(CheckInOf(id), now);
    EXPECT_TRUE(r.ok());
    if (r.ok() && r->has_assignment()) assigned[id] = r->assignment();
  }
  return assigned;
}

TEST(RoundCoordinatorTest, RoundRunsAndCommitsTheWeightedAverage) {
  auto c = Make(Options(2, 2));
  auto first = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->has_retry_later());  // 1 of 2 waiting
  EXPECT_THAT(first->retry_later().reason(), HasSubstr("waiting"));
  auto second = c->CheckIn(CheckInOf("b"), kStart);
  ASSERT_TRUE(second->has_assignment());  // the round starts on the second check-in
  const v1::RoundAssignment b = second->assignment();
  EXPECT_EQ(b.round(), 1);
  EXPECT_EQ(b.model_name(), "tiny");
  EXPECT_EQ(b.model_size(), 3);
  EXPECT_EQ(b.layout().entries(0).name(), "w");
  EXPECT_EQ(b.plan().run_seed(), 7u);
  auto again = c->CheckIn(CheckInOf("a"), kStart + absl::Seconds(1));
  ASSERT_TRUE(again->has_assignment());
  const v1::RoundAssignment a = again->assignment();
  EXPECT_NE(a.assignment_id(), b.assignment_id());

  v1::GetModelRequest get;
  get.set_client_id("a");
  get.set_assignment_id(a.assignment_id());
  get.set_round(1);
  auto model = c->GetModel(get, kStart);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(*model->parameters, (std::vector<float>{1, 2, 3}));

  // Weighted by example counts 1 and 3: mean delta = (1*{1,0,0} + 3*{0,4,-4}) / 4 = {0.25, 3, -3}.
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(a, "a", 1), std::vector<float>{1, 0, 0}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(b, "b", 3), std::vector<float>{0, 4, -4}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{1.25f, 5.0f, 0.0f}));

  auto status = c->Status(kStart);
  EXPECT_EQ(status.current_round(), 2);
  EXPECT_EQ(status.phase(), "waiting");
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).participants(), 2);
}

TEST(RoundCoordinatorTest, FinishesAfterTheLastRound) {
  auto c = Make(Options(1, 1));
  auto r = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(r->has_assignment());
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(r->assignment(), "a", 5), std::vector<float>{0, 0, 0}, kStart)
          .ok());
  EXPECT_TRUE(c->finished());
  auto done = c->CheckIn(CheckInOf("z"), kStart);
  ASSERT_TRUE(done->has_finished());
  EXPECT_EQ(done->finished().rounds_completed(), 1);
}

// Evaluation and the checkpoint run without the coordinator's lock: another thread's check-in is
// answered meanwhile (told to retry while the round's checkpoint is written), the next round
// starts only after the hooks returned, and the run is not finished before its last checkpoint.
TEST(RoundCoordinatorTest, HooksRunOutsideTheLockAndTheNextRoundWaitsForTheCheckpoint) {
  RoundCoordinator* self = nullptr;
  std::vector<std::thread> devices;
  std::vector<bool> answered_in_time;
  std::vector<std::string> reasons;
  std::vector<bool> finished_while_saving;
  CoordinatorHooks hooks;
  hooks.evaluate = [&](absl::Span<const float>) -> absl::StatusOr<std::pair<double, double>> {
    auto answered = std::make_shared<absl::Notification>();
    auto reason = std::make_shared<std::string>();
    devices.emplace_back([self, answered, reason] {
      auto r = self->CheckIn(CheckInOf("b"), kStart);
      if (r.ok() && r->has_retry_later()) *reason = r->retry_later().reason();
      answered->Notify();
    });
    answered_in_time.push_back(answered->WaitForNotificationWithTimeout(absl::Seconds(60)));
    reasons.push_back(answered->HasBeenNotified() ? *reason : "");
    return std::make_pair(0.5, 1.0);
  };
  hooks.save_checkpoint = [&](const v1::Checkpoint& checkpoint) {
    EXPECT_DOUBLE_EQ(checkpoint.history(checkpoint.history_size() - 1).accuracy(), 0.5);
    finished_while_saving.push_back(self->finished());
    return absl::OkStatus();
  };
  auto c = Make(Options(1, 2), hooks);
  self = c.get();
  auto r = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(r->has_assignment());
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(r->assignment(), "a", 5), std::vector<float>{0, 0, 0}, kStart)
          .ok());
  ASSERT_EQ(answered_in_time.size(), 1u);
  EXPECT_TRUE(answered_in_time[0]) << "a check-in waited for the evaluation hook";
  EXPECT_THAT(reasons[0], HasSubstr("round 1: its evaluation and checkpoint"));
  // Now round 2 starts, with the device that was told to retry.
  auto second = c->CheckIn(CheckInOf("b"), kStart);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->has_assignment()) << second->DebugString();
  EXPECT_EQ(second->assignment().round(), 2);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(second->assignment(), "b", 5), std::vector<float>{0, 0, 0}, kStart)
          .ok());
  for (std::thread& t : devices) t.join();
  EXPECT_EQ(finished_while_saving, (std::vector<bool>{false, false}));
  EXPECT_TRUE(c->finished());
  const v1::GetStatusResponse status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 2);
  EXPECT_DOUBLE_EQ(status.history(1).accuracy(), 0.5);
}

// SIGTERM's path: Drain abandons the round in progress (logged), keeps every committed round, and
// no round starts afterwards.
TEST(RoundCoordinatorTest, DrainAbandonsTheRoundInProgressAndStartsNoOther) {
  std::vector<std::string> log;
  std::vector<int64_t> saved_rounds;
  CoordinatorHooks hooks;
  hooks.log = [&](const std::string& line) { log.push_back(line); };
  hooks.save_checkpoint = [&](const v1::Checkpoint& checkpoint) {
    saved_rounds.push_back(checkpoint.rounds_completed());
    return absl::OkStatus();
  };
  auto c = Make(Options(2, 5), hooks);
  auto first = CheckInAll(*c, {"a", "b"}, kStart);
  ASSERT_EQ(first.size(), 2u);
  for (const auto& [id, a] : first) {
    ASSERT_TRUE(c->SubmitUpdate(HeaderFor(a, id, 1), std::vector<float>{0, 0, 0}, kStart).ok());
  }
  ASSERT_EQ(c->rounds_completed(), 1);
  auto second = CheckInAll(*c, {"a", "b"}, kStart);
  ASSERT_EQ(second.size(), 2u);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(second["a"], "a", 1), std::vector<float>{1, 1, 1}, kStart).ok());

  EXPECT_EQ(c->Drain().value_or(-1), 1);
  EXPECT_EQ(c->Drain().value_or(-1), 1);  // idempotent
  // The commit's checkpoint, then one per Drain, each of round 1.
  EXPECT_EQ(saved_rounds, (std::vector<int64_t>{1, 1, 1}));
  const v1::GetStatusResponse status = c->Status(kStart);
  EXPECT_EQ(status.phase(), "waiting");
  EXPECT_EQ(status.rounds_abandoned(), 1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_THAT(log[0], HasSubstr("round 2 abandoned (shutting down) with 1 of 2 updates"));
  // The abandoned round's upload is late, and no new round starts for anyone.
  auto late = c->SubmitUpdate(HeaderFor(second["b"], "b", 1), std::vector<float>{1, 1, 1}, kStart);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  auto again = CheckInAll(*c, {"a", "b", "c"}, kStart + absl::Seconds(120));
  EXPECT_TRUE(again.empty());
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(200)).ok());
  EXPECT_EQ(c->Status(kStart).phase(), "waiting");
  EXPECT_EQ(c->rounds_completed(), 1);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{1, 2, 3}));
}

// A round whose checkpoint is being written when Drain is called is finished, not abandoned:
// Drain returns only after the checkpoint hook did, and counts the round.
TEST(RoundCoordinatorTest, DrainWaitsForTheCommitInProgress) {
  absl::Notification saving, release;
  std::atomic<bool> drained{false};
  std::atomic<int> saves{0};
  CoordinatorHooks hooks;
  hooks.save_checkpoint = [&](const v1::Checkpoint& checkpoint) {
    EXPECT_EQ(checkpoint.rounds_completed(), 1);
    if (saves++ == 0) {  // the commit's; Drain's own comes after
      saving.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  };
  auto c = Make(Options(1, 5), hooks);
  auto r = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(r.ok() && r->has_assignment());
  std::thread device([&] {
    EXPECT_TRUE(
        c->SubmitUpdate(HeaderFor(r->assignment(), "a", 1), std::vector<float>{0, 0, 0}, kStart)
            .ok());
  });
  saving.WaitForNotification();
  int64_t completed = -1;
  std::thread drain([&] {
    completed = c->Drain().value_or(-1);
    drained = true;
  });
  // The checkpoint hook has not returned: Drain cannot have either.
  EXPECT_FALSE(drained.load());
  release.Notify();
  drain.join();
  device.join();
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(saves.load(), 2);
  EXPECT_EQ(c->Status(kStart).rounds_abandoned(), 0);
  EXPECT_EQ(c->Status(kStart).phase(), "waiting");
}

TEST(RoundCoordinatorTest, SamplesUniformlyFromSortedWaitingClients) {
  auto o = Options(4, 3);
  o.selection_timeout = absl::Seconds(5);
  o.over_select = 1.5;  // target 10, but only 8 will wait
  auto c = Make(o);
  std::vector<std::string> ids;
  for (int i = 7; i >= 0; --i) ids.push_back("client-" + std::to_string(i));
  for (const auto& id : ids) ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart)->has_retry_later());
  // 8 >= K waiting, fewer than the target: the round starts when the selection window ends.
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(4)).ok());
  EXPECT_EQ(c->Status(kStart).phase(), "waiting");
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(6)).ok());
  EXPECT_EQ(c->Status(kStart).phase(), "training");
  std::set<std::string> assigned;
  for (const auto& id : ids) {
    auto r = c->CheckIn(CheckInOf(id), kStart + absl::Seconds(6));
    if (r->has_assignment()) assigned.insert(id);
  }
  std::vector<std::string> sorted(ids.rbegin(), ids.rend());
  std::set<std::string> expected;
  for (int64_t i : SampleIndices(8, 8, SamplingSeed(7, 1, 0))) expected.insert(sorted[i]);
  EXPECT_EQ(assigned, expected);
  EXPECT_EQ(assigned.size(), 8u);
}

TEST(RoundCoordinatorTest, DeadlineCommitsWithMinClientsOrAbandons) {
  auto o = Options(3, 5);
  o.min_clients = 2;
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a", "b", "c"}, kStart);
  ASSERT_EQ(assigned.size(), 3u);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["a"], "a", 2), std::vector<float>{2, 2, 2}, kStart).ok());
  // One of three by the deadline: below min_clients, the round is abandoned and nothing applied.
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(61)).ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(c->Status(kStart).phase(), "waiting");
  EXPECT_EQ(c->Status(kStart).rounds_abandoned(), 1);
  // The abandoned round's upload is now late.
  auto late = c->SubmitUpdate(HeaderFor(assigned["b"], "b", 2), std::vector<float>{0, 0, 0},
                              kStart + absl::Seconds(62));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("late"));

  // Second attempt: two of three arrive, the deadline commits them.
  const absl::Time t2 = kStart + absl::Seconds(100);
  assigned = CheckInAll(*c, {"a", "b", "c"}, t2);
  ASSERT_EQ(assigned.size(), 3u);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["a"], "a", 1), std::vector<float>{1, 1, 1}, t2).ok());
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["c"], "c", 1), std::vector<float>{3, 3, 3}, t2).ok());
  ASSERT_TRUE(c->Tick(t2 + absl::Seconds(59)).ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  ASSERT_TRUE(c->Tick(t2 + absl::Seconds(60)).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{3, 4, 5}));
  // Three assigned, two aggregated: one dropout.
  const v1::GetStatusResponse status = c->Status(t2);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).assigned(), 3);
  EXPECT_EQ(status.history(0).participants(), 2);
  EXPECT_EQ(status.history(0).examples(), 2);
  EXPECT_FALSE(status.history(0).has_epsilon());
  EXPECT_FALSE(status.has_epsilon());
  EXPECT_EQ(status.rounds_abandoned(), 1);
}

TEST(RoundCoordinatorTest, BadUpdatesAreRefusedWithReasonsAndNeverCounted) {
  auto o = Options(2, 3);
  o.plan.set_clip_norm(10.0);
  o.max_examples_per_client = 100;
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a", "b"}, kStart);
  ASSERT_EQ(assigned.size(), 2u);
  const auto& a = assigned["a"];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();

  struct Case {
    v1::UpdateHeader header;
    std::vector<float> delta;
    absl::StatusCode code;
    std::string reason;
  };
  v1::UpdateHeader wrong_round = HeaderFor(a, "a", 1);
  wrong_round.set_round(2);
  v1::UpdateHeader other_client = HeaderFor(a, "b", 1);
  v1::UpdateHeader unassigned = HeaderFor(a, "a", 1);
  unassigned.set_assignment_id("made-up");
  v1::UpdateHeader short_header = HeaderFor(a, "a", 1);
  short_header.set_total_size(2);
  const std::vector<Case> cases = {
      {HeaderFor(a, "a", 1), {1, 2}, absl::StatusCode::kInvalidArgument, "wrong_shape"},
      {short_header, {1, 2}, absl::StatusCode::kInvalidArgument, "wrong_shape"},
      {HeaderFor(a, "a", 1), {1, nan, 0}, absl::StatusCode::kInvalidArgument, "not_finite"},
      {HeaderFor(a, "a", 1), {inf, 0, 0}, absl::StatusCode::kInvalidArgument, "not_finite"},
      {HeaderFor(a, "a", 1), {10, 10, 0}, absl::StatusCode::kInvalidArgument, "over_norm"},
      {HeaderFor(a, "a", 0), {1, 0, 0}, absl::StatusCode::kInvalidArgument, "bad_example_count"},
      {HeaderFor(a, "a", 101), {1, 0, 0}, absl::StatusCode::kInvalidArgument, "bad_example_count"},
      {wrong_round, {1, 0, 0}, absl::StatusCode::kFailedPrecondition, "wrong_round"},
      {other_client, {1, 0, 0}, absl::StatusCode::kFailedPrecondition, "unassigned"},
      {unassigned, {1, 0, 0}, absl::StatusCode::kFailedPrecondition, "unassigned"},
  };
  std::map<std::string, int64_t> expected_refusals;
  for (const Case& k : cases) {
    auto r = c->SubmitUpdate(k.header, k.delta, kStart);
    EXPECT_EQ(r.status().code(), k.code) << k.reason << ": " << r.status();
    ++expected_refusals[k.reason];
  }
  EXPECT_EQ(c->Status(kStart).received(), 0);

  // A valid update counts; its exact retry is acknowledged as a duplicate; a different one is not.
  ASSERT_FALSE(
      c->SubmitUpdate(HeaderFor(a, "a", 4), std::vector<float>{4, 0, 0}, kStart)->duplicate());
  auto retry = c->SubmitUpdate(HeaderFor(a, "a", 4), std::vector<float>{4, 0, 0}, kStart);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate());
  auto different = c->SubmitUpdate(HeaderFor(a, "a", 4), std::vector<float>{0, 4, 0}, kStart);
  EXPECT_EQ(different.status().code(), absl::StatusCode::kAlreadyExists);
  ++expected_refusals["duplicate"];
  EXPECT_EQ(c->Status(kStart).received(), 1);

  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["b"], "b", 4), std::vector<float>{0, 0, 0}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  // Only the two valid deltas were averaged: {4,0,0} and {0,0,0} with equal weights.
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{3, 2, 3}));
  auto late = c->SubmitUpdate(HeaderFor(a, "a", 4), std::vector<float>{4, 0, 0}, kStart);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  ++expected_refusals["late"];

  auto status = c->Status(kStart);
  std::map<std::string, int64_t> refusals(status.refusals().begin(), status.refusals().end());
  EXPECT_EQ(refusals, expected_refusals);
}

TEST(RoundCoordinatorTest, OverSelectionClosesAtKAndLateComersAreRefused) {
  auto o = Options(2, 2);
  o.over_select = 0.5;  // 3 assigned
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a", "b", "c"}, kStart);
  ASSERT_EQ(assigned.size(), 3u);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["c"], "c", 1), std::vector<float>{0, 0, 0}, kStart).ok());
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["a"], "a", 1), std::vector<float>{0, 0, 0}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  auto late =
      c->SubmitUpdate(HeaderFor(assigned["b"], "b", 1), std::vector<float>{0, 0, 0}, kStart);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RoundCoordinatorTest, CheckpointRestoresStateAndTheRunContinuesIdentically) {
  std::vector<v1::Checkpoint> saved;
  CoordinatorHooks hooks;
  hooks.save_checkpoint = [&](const v1::Checkpoint& ckpt) {
    saved.push_back(ckpt);
    return absl::OkStatus();
  };
  auto o = Options(1, 3);
  o.server_optimizer.kind = aggregation::ServerOptimizerOptions::Kind::kAdam;
  o.server_optimizer.learning_rate = 0.5;
  auto run_round = [](RoundCoordinator& c, float value) {
    auto r = c.CheckIn(CheckInOf("a"), kStart);
    ASSERT_TRUE(r->has_assignment());
    ASSERT_TRUE(c.SubmitUpdate(HeaderFor(r->assignment(), "a", 1),
                               std::vector<float>{value, -value, 0}, kStart)
                    .ok());
  };
  auto original = Make(o, hooks);
  run_round(*original, 1.0f);
  run_round(*original, 2.0f);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved.back().rounds_completed(), 2);

  auto restored = Make(o);
  ASSERT_TRUE(restored->Restore(saved[0]).ok());
  EXPECT_EQ(restored->rounds_completed(), 1);
  run_round(*restored, 2.0f);
  // Adam's moment state came back too, or the second step would differ.
  EXPECT_EQ(restored->global_parameters(), original->global_parameters());

  auto other = o;
  other.model_name = "other";
  auto mismatched = Make(other);
  EXPECT_EQ(mismatched->Restore(saved[0]).code(), absl::StatusCode::kFailedPrecondition);
}

// Device telemetry: the round's distribution in GetStatus and the checkpoint, no client ids in
// either, and invalid telemetry ignored and counted without refusing the update.
TEST(RoundCoordinatorTest, DeviceTelemetryIsSummarisedPerRoundWithoutClientIds) {
  std::vector<v1::Checkpoint> saved;
  CoordinatorHooks hooks;
  hooks.save_checkpoint = [&](const v1::Checkpoint& ckpt) {
    saved.push_back(ckpt);
    return absl::OkStatus();
  };
  std::vector<RoundOutcome> committed;
  hooks.round_committed = [&](const RoundOutcome& outcome) { committed.push_back(outcome); };
  auto c = Make(Options(4, 2), hooks);
  const std::vector<std::string> ids = {"device-a", "device-b", "device-c", "device-d"};
  auto assigned = CheckInAll(*c, ids, kStart);
  ASSERT_EQ(assigned.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    v1::UpdateHeader h = HeaderFor(assigned[ids[i]], ids[i], 10);
    v1::DeviceTelemetry* t = h.mutable_telemetry();
    t->set_training_seconds(i + 1);  // 1, 2, 3, and the last device's is NaN
    t->set_upload_bytes(1000 * (i + 1));
    if (i == 3) t->set_training_seconds(std::numeric_limits<double>::quiet_NaN());
    auto r = c->SubmitUpdate(h, std::vector<float>{0.1f, 0, 0}, kStart);
    ASSERT_TRUE(r.ok()) << r.status();  // the NaN telemetry does not refuse the update
    // A retry of the same upload is not counted twice.
    if (i == 0) {
      ASSERT_TRUE(c->SubmitUpdate(h, std::vector<float>{0.1f, 0, 0}, kStart)->duplicate());
    }
  }
  ASSERT_EQ(c->rounds_completed(), 1);
  // Round 2 without telemetry.
  assigned = CheckInAll(*c, ids, kStart);
  for (const auto& [id, a] : assigned) {
    ASSERT_TRUE(c->SubmitUpdate(HeaderFor(a, id, 10), std::vector<float>{0, 0, 0}, kStart).ok());
  }
  ASSERT_EQ(c->rounds_completed(), 2);

  const v1::GetStatusResponse status = c->Status(kStart);
  ASSERT_EQ(status.history_size(), 2);
  ASSERT_TRUE(status.history(0).has_device_telemetry());
  const v1::DeviceTelemetrySummary& t = status.history(0).device_telemetry();
  EXPECT_EQ(t.reports(), 3);
  EXPECT_EQ(t.invalid_reports(), 1);
  EXPECT_EQ(t.training_seconds().count(), 3);
  EXPECT_EQ(t.training_seconds().p50(), 2);
  EXPECT_EQ(t.training_seconds().p90(), 3);
  EXPECT_EQ(t.upload_bytes().p90(), 3000);
  EXPECT_FALSE(status.history(1).has_device_telemetry());
  EXPECT_EQ(status.device_telemetry_invalid(), 1);
  ASSERT_EQ(committed.size(), 2u);
  ASSERT_TRUE(committed[0].device_telemetry.has_value());
  EXPECT_EQ(committed[0].device_telemetry->reports(), 3);

  // The checkpoint keeps the summary and a restore brings it back; no client id is in either.
  ASSERT_EQ(saved.size(), 2u);
  const v1::RoundRecord& record = saved.back().history(0);
  EXPECT_EQ(record.device_telemetry().SerializeAsString(), t.SerializeAsString());
  for (const std::string& id : ids) {
    EXPECT_THAT(t.SerializeAsString(), ::testing::Not(HasSubstr(id)));
    EXPECT_THAT(record.SerializeAsString(), ::testing::Not(HasSubstr(id)));
  }
  auto restored = Make(Options(4, 2));
  ASSERT_TRUE(restored->Restore(saved.back()).ok());
  EXPECT_EQ(restored->Status(kStart).history(0).device_telemetry().SerializeAsString(),
            t.SerializeAsString());
}

// Found by fuzz/checkpoint_fuzz.cc (reproducer fuzz/corpus/checkpoint/crash-nonfinite-parameter):
// a checkpoint whose parameters are not finite was restored, and its model sent to devices.
TEST(RoundCoordinatorTest, ACheckpointWithANonFiniteParameterIsRefusedAndChangesNothing) {
  std::vector<v1::Checkpoint> saved;
  CoordinatorHooks hooks;
  hooks.save_checkpoint = [&](const v1::Checkpoint& ckpt) {
    saved.push_back(ckpt);
    return absl::OkStatus();
  };
  auto original = Make(Options(1, 3), hooks);
  auto r = original->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(r->has_assignment());
  ASSERT_TRUE(
      original
          ->SubmitUpdate(HeaderFor(r->assignment(), "a", 1), std::vector<float>{1, -1, 0}, kStart)
          .ok());
  ASSERT_EQ(saved.size(), 1u);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    v1::Checkpoint checkpoint = saved[0];
    checkpoint.set_global_parameters(1, bad);
    auto restored = Make(Options(1, 3));
    const std::vector<float> before = restored->global_parameters();
    const absl::Status status = restored->Restore(checkpoint);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr("global parameter 1 is not finite"));
    EXPECT_EQ(restored->global_parameters(), before);
    EXPECT_EQ(restored->rounds_completed(), 0);
  }
  auto restored = Make(Options(1, 3));
  EXPECT_TRUE(restored->Restore(saved[0]).ok());
}

TEST(RoundCoordinatorTest, CheckpointFailureStopsTheRun) {
  CoordinatorHooks hooks;
  hooks.save_checkpoint = [](const v1::Checkpoint&) { return absl::DataLossError("disk full"); };
  auto c = Make(Options(1, 3), hooks);
  auto r = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(r->assignment(), "a", 1), std::vector<float>{0, 0, 0}, kStart)
          .ok());
  EXPECT_EQ(c->fatal_error().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(c->CheckIn(CheckInOf("a"), kStart).status().code(), absl::StatusCode::kUnavailable);
}

TEST(RoundCoordinatorTest, MalformedRequestsAreRefused) {
  auto c = Make(Options(1, 1));
  EXPECT_EQ(c->CheckIn(CheckInOf(""), kStart).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->CheckIn(CheckInOf("a b"), kStart).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->CheckIn(CheckInOf(std::string(129, 'x')), kStart).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto future = CheckInOf("a");
  future.set_api_version(2);
  EXPECT_EQ(c->CheckIn(future, kStart).status().code(), absl::StatusCode::kFailedPrecondition);
  v1::GetModelRequest get;
  get.set_client_id("a");
  get.set_assignment_id("nope");
  EXPECT_EQ(c->GetModel(get, kStart).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RoundCoordinatorTest, InvalidOptions) {
  auto o = Options(2, 1);
  o.min_clients = 3;
  EXPECT_FALSE(RoundCoordinator::Create(o, ThreeValueLayout(), {1, 2, 3}, {}).ok());
  EXPECT_FALSE(RoundCoordinator::Create(Options(2, 1), ThreeValueLayout(), {1, 2}, {}).ok());
}

v1::DeclineRequest DeclineOf(const v1::RoundAssignment& a, const std::string& id,
                             v1::DeclineRequest::Reason reason) {
  v1::DeclineRequest d;
  d.set_client_id(id);
  d.set_assignment_id(a.assignment_id());
  d.set_round(a.round());
  d.set_reason(reason);
  return d;
}

// A device that refused its artifact says so; the count survives the round's close (a slow
// download can outlive the round), and the round still commits with the others' updates.
TEST(RoundCoordinatorTest, DeclinesAreCountedEvenAfterTheRoundClosed) {
  CoordinatorOptions o = Options(1, 2);
  o.artifact.emplace();
  o.artifact->set_sha256(std::string(64, 'b'));
  o.artifact->set_size_bytes(10);
  std::vector<std::string> observed;
  CoordinatorHooks hooks;
  hooks.assignment_declined = [&](const v1::DeclineRequest& d) {
    observed.push_back(d.client_id());
  };
  auto c = Make(o, hooks);
  auto assigned = CheckInAll(*c, {"a", "b"}, kStart);
  ASSERT_EQ(assigned.size(), 1u);
  const auto& [id, a] = *assigned.begin();
  EXPECT_EQ(a.artifact().sha256(), std::string(64, 'b'));  // every assignment names the artifact
  auto first = c->Decline(DeclineOf(a, id, v1::DeclineRequest::ARTIFACT_HASH_MISMATCH), kStart);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->duplicate());
  // Its only device declined: the round is abandoned at once (nothing more can come) and starts
  // again.
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(61)).ok());
  auto again = c->Decline(DeclineOf(a, id, v1::DeclineRequest::ARTIFACT_HASH_MISMATCH),
                          kStart + absl::Seconds(62));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate());
  EXPECT_EQ(c->Status(kStart).declines().at("artifact_hash_mismatch"), 1);
  // A wrong round for a current assignment and someone else's assignment are refused.
  const std::string other = id == "a" ? "b" : "a";
  EXPECT_EQ(
      c->Decline(DeclineOf(a, other, v1::DeclineRequest::MODEL_MISMATCH), kStart).status().code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Status(kStart).declines_size(), 1);
  EXPECT_THAT(observed, ::testing::ElementsAre(id));  // once: the duplicate is not observed
}

// A device that drops out (DEVICE_NOT_ELIGIBLE) is not waited for: the round commits as soon as
// every other assigned device uploaded, at the time of the last of those events, not at the
// deadline; the declined assignment's upload is refused and its device waits for the next round.
TEST(RoundCoordinatorTest, ADeclinedAssignmentIsNotWaitedFor) {
  CoordinatorOptions o = Options(3, 2);
  o.min_clients = 2;
  o.round_timeout = absl::Hours(1);
  std::vector<RoundParticipation> participation;
  CoordinatorHooks hooks;
  hooks.round_participation = [&](const RoundParticipation& p) { participation.push_back(p); };
  auto c = Make(o, hooks);
  auto assigned = CheckInAll(*c, {"a", "b", "c"}, kStart);
  ASSERT_EQ(assigned.size(), 3u);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned["a"], "a", 5), {0.1f, 0.2f, 0.3f}, kStart).ok());
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned["b"], "b", 5), {0.1f, 0.2f, 0.3f}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 0);  // still waiting for c
  EXPECT_THAT(c->WaitingFor(kStart), HasSubstr("0 declined"));
  const absl::Time dropped = kStart + absl::Seconds(5);
  auto declined =
      c->Decline(DeclineOf(assigned["c"], "c", v1::DeclineRequest::DEVICE_NOT_ELIGIBLE), dropped);
  ASSERT_TRUE(declined.ok()) << declined.status();
  EXPECT_EQ(c->rounds_completed(), 1);  // committed by the decline, an hour before the deadline
  const v1::GetStatusResponse status = c->Status(dropped);
  EXPECT_EQ(status.declines().at("device_not_eligible"), 1);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).participants(), 2);
  EXPECT_EQ(status.history(0).assigned(), 3);
  EXPECT_DOUBLE_EQ(status.history(0).seconds(), 5.0);
  ASSERT_EQ(participation.size(), 1u);
  EXPECT_THAT(participation[0].aggregated, ::testing::ElementsAre("a", "b"));
  EXPECT_THAT(participation[0].assigned, ::testing::ElementsAre("a", "b", "c"));
}

TEST(RoundCoordinatorTest, AfterADeclineTheRoundClosesAtTheRemainingUploads) {
  CoordinatorOptions o = Options(3, 2);
  o.min_clients = 1;
  o.round_timeout = absl::Hours(1);
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a", "b", "c"}, kStart);
  ASSERT_EQ(assigned.size(), 3u);
  ASSERT_TRUE(
      c->Decline(DeclineOf(assigned["c"], "c", v1::DeclineRequest::DEVICE_NOT_ELIGIBLE), kStart)
          .ok());
  EXPECT_THAT(c->WaitingFor(kStart), HasSubstr("1 declined; the round closes at 2"));
  // The declined device checking in again is told to wait for the next round, not re-assigned.
  auto again = c->CheckIn(CheckInOf("c"), kStart);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->has_retry_later());
  EXPECT_THAT(again->retry_later().reason(), HasSubstr("declined"));
  // Its upload is refused, counted.
  auto late = c->SubmitUpdate(HeaderFor(assigned["c"], "c", 5), {0.1f, 0.2f, 0.3f}, kStart);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Status(kStart).refusals().at("declined"), 1);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned["a"], "a", 5), {0.1f, 0.2f, 0.3f}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned["b"], "b", 5), {0.1f, 0.2f, 0.3f}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  // It waits in the pool and takes part in the next round.
  auto next = CheckInAll(*c, {"a", "b", "c"}, kStart + absl::Seconds(1));
  EXPECT_EQ(next.size(), 3u);
  EXPECT_EQ(next["c"].round(), 2);
}

// With fewer than min_clients updates possible, the round is abandoned at once and starts again.
TEST(RoundCoordinatorTest, WhenEveryoneElseDeclinedTheRoundIsAbandonedAtOnce) {
  CoordinatorOptions o = Options(2, 1);
  o.round_timeout = absl::Hours(1);
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a", "b"}, kStart);
  ASSERT_EQ(assigned.size(), 2u);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned["a"], "a", 5), {0.1f, 0.2f, 0.3f}, kStart).ok());
  ASSERT_TRUE(
      c->Decline(DeclineOf(assigned["b"], "b", v1::DeclineRequest::DEVICE_NOT_ELIGIBLE), kStart)
          .ok());
  const v1::GetStatusResponse status = c->Status(kStart);
  EXPECT_EQ(status.rounds_abandoned(), 1);
  EXPECT_EQ(status.phase(), "waiting");
  EXPECT_EQ(c->rounds_completed(), 0);
}

// A device that cannot hold the model is never assigned it, and is told why.
TEST(RoundCoordinatorTest, ADeviceThatCannotHoldTheModelIsToldToRetryLaterAndNotAssigned) {
  CoordinatorOptions o = Options(1, 1);
  o.artifact.emplace();
  o.artifact->set_sha256(std::string(64, 'c'));
  o.artifact->set_size_bytes(100);  // larger than 4 x 3 parameters
  auto c = Make(o);
  EXPECT_EQ(c->model_bytes(), 100);
  v1::CheckInRequest small = CheckInOf("watch");
  small.mutable_capabilities()->set_max_model_bytes(99);
  auto response = c->CheckIn(small, kStart);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_TRUE(response->has_retry_later());
  EXPECT_THAT(response->retry_later().reason(), HasSubstr("needs 100 bytes"));
  EXPECT_GE(response->retry_later().retry_after_seconds(), 600);
  v1::CheckInRequest little_memory = CheckInOf("sensor");
  little_memory.mutable_capabilities()->set_max_model_bytes(1000);
  little_memory.mutable_capabilities()->set_memory_bytes(50);
  ASSERT_TRUE(c->CheckIn(little_memory, kStart)->has_retry_later());
  v1::GetStatusResponse status = c->Status(kStart);
  EXPECT_EQ(status.refusals().at("model_too_large"), 2);
  EXPECT_EQ(status.checked_in(), 0);  // neither waits in the pool
  // A device at the limit (or that says nothing) is assigned.
  v1::CheckInRequest fits = CheckInOf("phone");
  fits.mutable_capabilities()->set_max_model_bytes(100);
  EXPECT_TRUE(c->CheckIn(fits, kStart)->has_assignment());
}

TEST(RoundCoordinatorTest, ABadComputeBudgetIsInvalidArgument) {
  CoordinatorOptions o = Options(1, 1);
  o.plan.set_max_steps(-1);
  EXPECT_EQ(RoundCoordinator::Create(o, ThreeValueLayout(), {1, 2, 3}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.plan.set_max_steps(5);
  o.plan.set_max_seconds(std::numeric_limits<double>::infinity());
  EXPECT_EQ(RoundCoordinator::Create(o, ThreeValueLayout(), {1, 2, 3}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.plan.set_max_seconds(2.5);
  auto c = Make(o);
  auto assigned = c->CheckIn(CheckInOf("a"), kStart);
  ASSERT_TRUE(assigned->has_assignment());
  EXPECT_EQ(assigned->assignment().plan().max_steps(), 5);
  EXPECT_DOUBLE_EQ(assigned->assignment().plan().max_seconds(), 2.5);
}

// Updates are folded into an exact aggregate on arrival: the committed model is the same bit for
// bit whatever order they arrive in (the old coordinator had to keep every delta to sum them in
// client-id order). Ids chosen so that arrival, id and index orders all differ.
TEST(RoundCoordinatorTest, TheCommittedModelIsTheSameInEveryArrivalOrder) {
  const std::vector<std::string> ids = {"zeta-3", "alpha-10", "mu-2", "beta-1", "omega-0"};
  std::vector<std::vector<float>> deltas;
  for (int i = 0; i < 5; ++i) {
    deltas.push_back({0.1f * static_cast<float>(i) + 1e-7f, -0.3f / static_cast<float>(i + 1),
                      1.0f / 3.0f + static_cast<float>(i) * 1e-3f});
  }
  auto run = [&](std::vector<int> order) {
    auto c = Make(Options(5, 1));
    auto assigned = CheckInAll(*c, ids, kStart);
    EXPECT_EQ(assigned.size(), 5u);
    for (int i : order) {
      EXPECT_TRUE(
          c->SubmitUpdate(HeaderFor(assigned[ids[i]], ids[i], 7 + 13 * i), deltas[i], kStart).ok());
    }
    EXPECT_EQ(c->rounds_completed(), 1);
    return c->global_parameters();
  };
  const std::vector<float> forward = run({0, 1, 2, 3, 4});
  EXPECT_EQ(run({4, 3, 2, 1, 0}), forward);
  EXPECT_EQ(run({2, 0, 4, 1, 3}), forward);
  // And it is the weighted mean (to float precision).
  for (int j = 0; j < 3; ++j) {
    double num = 0, den = 0;
    for (int i = 0; i < 5; ++i) {
      num += static_cast<double>(deltas[i][j]) * (7 + 13 * i);
      den += 7 + 13 * i;
    }
    EXPECT_FLOAT_EQ(forward[j], static_cast<float>((j + 1) + num / den)) << j;
  }
}

TEST(RoundCoordinatorTest, WithoutAClipNormValuesBeyondTheRangeAreRefused) {
  auto o = Options(1, 1);
  o.max_update_value = 100;
  auto c = Make(o);
  auto assigned = CheckInAll(*c, {"a"}, kStart);
  ASSERT_EQ(assigned.size(), 1u);
  auto r = c->SubmitUpdate(HeaderFor(assigned["a"], "a", 1), std::vector<float>{1, 101, 0}, kStart);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("update value 1"));
  EXPECT_EQ(c->Status(kStart).refusals().at("out_of_range"), 1);
  EXPECT_EQ(c->Status(kStart).received(), 0);
  o.max_update_value = 0;
  EXPECT_EQ(RoundCoordinator::Create(o, ThreeValueLayout(), {1, 2, 3}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A fleet smaller than K: after the selection window a round starts with the min_clients
// waiting, closes as soon as all of them reported (not at the deadline), and GetStatus says what
// the coordinator waits for at each step.
TEST(RoundCoordinatorTest, AShrunkenFleetStartsRoundsWithMinClientsAfterTheSelectionWindow) {
  auto o = Options(3, 2);
  o.min_clients = 2;
  o.selection_timeout = absl::Seconds(30);
  auto c = Make(o);
  ASSERT_TRUE(c->CheckIn(CheckInOf("a"), kStart).ok());
  EXPECT_THAT(c->Status(kStart).waiting_for(), HasSubstr("clients: 1 waiting"));
  EXPECT_THAT(c->Status(kStart).waiting_for(), HasSubstr("at least 2 (min clients)"));
  ASSERT_TRUE(c->CheckIn(CheckInOf("b"), kStart).ok());
  EXPECT_THAT(c->Status(kStart).waiting_for(), HasSubstr("selection window ends in 30 s"));
  for (int s = 5; s < 30; s += 5) {  // the two keep checking in; the window runs
    for (const char* id : {"a", "b"}) {
      ASSERT_TRUE(c->CheckIn(CheckInOf(id), kStart + absl::Seconds(s)).ok());
    }
    ASSERT_TRUE(c->Tick(kStart + absl::Seconds(s)).ok());
    EXPECT_EQ(c->Status(kStart).phase(), "waiting") << s;
  }
  const absl::Time t = kStart + absl::Seconds(30);
  auto assigned = CheckInAll(*c, {"a", "b"}, t);
  ASSERT_EQ(assigned.size(), 2u);
  EXPECT_THAT(c->Status(t).waiting_for(), HasSubstr("updates (0 of 3 received from 2 assigned"));
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["a"], "a", 1), std::vector<float>{1, 1, 1}, t).ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["b"], "b", 1), std::vector<float>{3, 3, 3}, t).ok());
  EXPECT_EQ(c->rounds_completed(), 1);  // both of two assigned: no wait for the deadline
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{3, 4, 5}));
  // One device alone never starts a round (below min_clients), and the status says so.
  const absl::Time later = t + absl::Seconds(100);
  for (int s = 0; s <= 60; s += 5) {
    ASSERT_TRUE(c->CheckIn(CheckInOf("a"), later + absl::Seconds(s)).ok());
    ASSERT_TRUE(c->Tick(later + absl::Seconds(s)).ok());
  }
  EXPECT_EQ(c->Status(later).phase(), "waiting");
  EXPECT_THAT(c->Status(later + absl::Seconds(60)).waiting_for(), HasSubstr("1 waiting"));
}

// With min_available, a round samples from the whole fleet, not from the first devices to check
// in; the participation record names the pool, the assignments and whose update was aggregated.
TEST(RoundCoordinatorTest, MinAvailableSamplesFromTheFleetAndTheParticipationIsRecorded) {
  auto o = Options(2, 2);
  o.over_select = 0.5;  // 3 assigned
  o.min_available = 5;
  o.selection_timeout = absl::Seconds(30);
  std::vector<RoundParticipation> recorded;
  std::vector<int64_t> committed;
  CoordinatorHooks hooks;
  hooks.round_participation = [&](const RoundParticipation& p) { recorded.push_back(p); };
  hooks.round_committed = [&](const RoundOutcome& r) {
    // The participation of a round is observed before its commit.
    EXPECT_EQ(recorded.size(), static_cast<size_t>(r.round));
    committed.push_back(r.round);
  };
  auto c = Make(o, std::move(hooks));
  const std::vector<std::string> fleet = {"kiwi", "apple", "mango", "fig", "date"};
  for (size_t i = 0; i + 1 < fleet.size(); ++i) {
    auto r = c->CheckIn(CheckInOf(fleet[i]), kStart);
    ASSERT_TRUE(r.ok() && r->has_retry_later()) << i;  // 3 waiting is the target, not enough
  }
  EXPECT_THAT(c->Status(kStart).waiting_for(), HasSubstr("starts with 5"));
  auto assigned = CheckInAll(*c, fleet, kStart);  // the fifth starts the round
  ASSERT_EQ(assigned.size(), 3u);
  std::vector<std::string> sorted = fleet;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> expected;
  for (int64_t i : SampleIndices(5, 3, SamplingSeed(7, 1, 0))) expected.push_back(sorted[i]);
  std::vector<std::string> got;
  for (const auto& [id, a] : assigned) got.push_back(id);
  EXPECT_EQ(got, expected);
  // Two of three report; the third is late.
  auto it = assigned.begin();
  const std::string first = it->first, second = std::next(it)->first;
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned[second], second, 2), std::vector<float>{1, 1, 1}, kStart)
          .ok());
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned[first], first, 1), std::vector<float>{2, 2, 2}, kStart)
          .ok());
  ASSERT_EQ(c->rounds_completed(), 1);
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0].round, 1);
  EXPECT_EQ(recorded[0].attempt, 0);
  EXPECT_EQ(recorded[0].pool, sorted);
  EXPECT_EQ(recorded[0].assigned, expected);
  EXPECT_EQ(recorded[0].aggregated, (std::vector<std::string>{first, second}));
  // Round 2: one device is gone; below min_available the round waits for the selection window
  // and then samples from the four left.
  const absl::Time t = kStart + absl::Seconds(1);
  const std::vector<std::string> left = {"kiwi", "apple", "mango", "fig"};
  for (int s = 0; s < 30; s += 5) {  // they keep checking in through the selection window
    for (const auto& id : left) ASSERT_TRUE(c->CheckIn(CheckInOf(id), t + absl::Seconds(s)).ok());
    EXPECT_EQ(c->Status(t).phase(), "waiting") << s;
  }
  assigned = CheckInAll(*c, left, t + absl::Seconds(30));
  ASSERT_EQ(assigned.size(), 3u);
  for (const auto& [id, a] : assigned) {
    ASSERT_TRUE(
        c->SubmitUpdate(HeaderFor(a, id, 1), std::vector<float>{0, 0, 0}, t + absl::Seconds(31))
            .ok());
    if (c->rounds_completed() == 2) break;
  }
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[1].pool, (std::vector<std::string>{"apple", "fig", "kiwi", "mango"}));
  EXPECT_EQ(recorded[1].assigned.size(), 3u);
  EXPECT_EQ(recorded[1].aggregated.size(), 2u);
  EXPECT_EQ(committed, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(RoundCoordinator::Create(
                [] {
                  auto bad = Options(2, 1);
                  bad.min_available = -1;
                  return bad;
                }(),
                ThreeValueLayout(), {1, 2, 3}, {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedkit::server

namespace fedkit::server {
namespace {

// The waiting pool is bounded: a new device beyond max_waiting is told to retry (with a hint),
// devices already waiting keep their place, and silent ones expire in every phase.
TEST(RoundCoordinatorPoolTest, TheWaitingPoolIsCappedAndExpiresDuringRounds) {
  CoordinatorOptions o = Options(/*k=*/3, /*rounds=*/2);
  o.min_clients = 3;
  o.max_waiting = 2;
  o.retry_interval = absl::Seconds(1);  // a silent device leaves the pool after 13 s
  auto c = Make(o);
  ASSERT_TRUE(c->CheckIn(CheckInOf("a"), kStart).ok());
  ASSERT_TRUE(c->CheckIn(CheckInOf("b"), kStart).ok());
  const absl::StatusOr<v1::CheckInResponse> full = c->CheckIn(CheckInOf("c"), kStart);
  ASSERT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfterOf(full.status()), absl::Seconds(3));
  EXPECT_TRUE(c->CheckIn(CheckInOf("a"), kStart + absl::Seconds(5)).ok());  // already waiting
  EXPECT_EQ(c->Status(kStart).refusals().at("pool_full"), 1);
  // b falls silent and expires; its place goes to c.
  EXPECT_TRUE(c->CheckIn(CheckInOf("c"), kStart + absl::Seconds(14)).ok());
  EXPECT_EQ(c->Status(kStart + absl::Seconds(14)).checked_in(), 2);

  // During a round, devices that check in once and fall silent leave the pool too.
  CoordinatorOptions big = Options(/*k=*/1, /*rounds=*/2);
  big.max_waiting = 0;  // unlimited
  auto d = Make(big);
  ASSERT_TRUE(d->CheckIn(CheckInOf("first"), kStart)->has_assignment());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(d->CheckIn(CheckInOf("w" + std::to_string(i)), kStart).ok());
  }
  EXPECT_EQ(d->Status(kStart).checked_in(), 1000);
  ASSERT_TRUE(d->Tick(kStart + absl::Seconds(14)).ok());
  EXPECT_EQ(d->Status(kStart + absl::Seconds(14)).checked_in(), 0);
}

}  // namespace
}  // namespace fedkit::server

namespace fedkit::server {
namespace {

// --- Robust aggregation (CoordinatorOptions::aggregator) ---

// Commits one round of `updates` (client id -> delta; each with 2 examples and train loss 0.5)
// and returns the coordinator.
std::unique_ptr<RoundCoordinator> CommitOneRound(
    const std::string& aggregator, const std::map<std::string, std::vector<float>>& updates) {
  CoordinatorOptions o = Options(static_cast<int64_t>(updates.size()), /*rounds=*/2);
  o.aggregator = *aggregation::ParseAggregatorSpec(aggregator);
  auto c = Make(o);
  std::vector<std::string> ids;
  for (const auto& [id, delta] : updates) ids.push_back(id);
  auto assigned = CheckInAll(*c, ids, kStart);
  EXPECT_EQ(assigned.size(), updates.size());
  for (const auto& [id, delta] : updates) {
    v1::UpdateHeader header = HeaderFor(assigned[id], id, 2);
    header.set_train_loss(0.5);
    EXPECT_TRUE(c->SubmitUpdate(header, delta, kStart).ok()) << id;
  }
  EXPECT_EQ(c->rounds_completed(), 1) << aggregator;
  return c;
}

// Four honest clients near {1, 1, 1} and one that scales its update by 100 (model replacement):
// under mean it drags the model far away, under the coordinate-wise median it has no influence.
TEST(RobustRoundCoordinatorTest, MedianRejectsAScaledMaliciousUpdate) {
  const std::map<std::string, std::vector<float>> updates = {
      {"honest-1", {1.0f, 1.0f, 1.0f}},       {"honest-2", {1.1f, 0.9f, 1.0f}},
      {"honest-3", {0.9f, 1.1f, 1.0f}},       {"honest-4", {1.0f, 1.0f, 1.2f}},
      {"mallory", {100.0f, -100.0f, 100.0f}},
  };
  auto mean = CommitOneRound("mean", updates);
  auto median = CommitOneRound("median", updates);
  // Start {1, 2, 3}; server SGD with learning rate 1 adds the aggregate.
  const std::vector<float> dragged = mean->global_parameters();
  EXPECT_GT(dragged[0], 20.0f);
  EXPECT_LT(dragged[1], -17.0f);
  EXPECT_EQ(median->global_parameters(), (std::vector<float>{2.0f, 3.0f, 4.0f}));
  // The round's training loss is example-weighted under either: (5 x 2 x 0.5) / 10 examples
  // (the median's total_weight is 1, the one value behind each coordinate).
  for (RoundCoordinator* c : {mean.get(), median.get()}) {
    const v1::GetStatusResponse status = c->Status(kStart);
    ASSERT_EQ(status.history_size(), 1);
    EXPECT_DOUBLE_EQ(status.history(0).train_loss(), 0.5);
    EXPECT_EQ(status.history(0).examples(), 10);
    EXPECT_EQ(status.history(0).participants(), 5);
  }
  // Trimmed mean (one value trimmed from each end) and Krum ignore it too.
  auto trimmed = CommitOneRound("trimmed-mean:0.2", updates);
  for (float v : trimmed->global_parameters()) EXPECT_LT(v, 5.0f);
  auto krum = CommitOneRound("krum:1", updates);
  EXPECT_EQ(krum->global_parameters(), (std::vector<float>{2.0f, 3.0f, 4.0f}));  // honest-1
}

// Krum with F = 1 needs 5 updates. A round that reaches its deadline with 3 (min_clients 1) is
// abandoned like a round without enough clients, counted and logged: the coordinator carries on,
// and the next attempt with 5 updates commits.
TEST(RobustRoundCoordinatorTest, KrumWithTooFewUpdatesAbandonsTheRoundAndCarriesOn) {
  CoordinatorOptions o = Options(5, 1);
  o.min_clients = 1;
  o.aggregator = *aggregation::ParseAggregatorSpec("krum:1");
  std::vector<std::string> log;
  CoordinatorHooks hooks;
  hooks.log = [&](const std::string& line) { log.push_back(line); };
  auto c = Make(o, hooks);
  const std::vector<std::string> ids = {"a", "b", "c", "d", "e"};
  auto assigned = CheckInAll(*c, ids, kStart);
  ASSERT_EQ(assigned.size(), 5u);
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(
        c->SubmitUpdate(HeaderFor(assigned[id], id, 2), std::vector<float>{1, 1, 1}, kStart).ok());
  }
  EXPECT_TRUE(c->Tick(kStart + absl::Seconds(61)).ok());  // not fatal
  EXPECT_TRUE(c->fatal_error().ok());
  EXPECT_EQ(c->rounds_completed(), 0);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{1, 2, 3}));
  v1::GetStatusResponse status = c->Status(kStart + absl::Seconds(61));
  EXPECT_EQ(status.phase(), "waiting");
  EXPECT_EQ(status.rounds_abandoned(), 1);
  EXPECT_EQ(status.refusals().at("aggregator_too_few_updates"), 1);
  ASSERT_FALSE(log.empty());
  EXPECT_THAT(log.back(), HasSubstr("krum:1"));
  EXPECT_THAT(log.back(), HasSubstr("aggregator_too_few_updates"));
  // The abandoned round's uploads are late now.
  EXPECT_EQ(c->SubmitUpdate(HeaderFor(assigned["d"], "d", 2), std::vector<float>{1, 1, 1},
                            kStart + absl::Seconds(62))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);

  // The next attempt: five updates, one far off; Krum releases one of the identical honest ones.
  const absl::Time t2 = kStart + absl::Seconds(100);
  assigned = CheckInAll(*c, ids, t2);
  ASSERT_EQ(assigned.size(), 5u);
  const std::map<std::string, std::vector<float>> updates = {{"a", {1.0f, 1.0f, 1.0f}},
                                                             {"b", {1.0f, 1.0f, 1.0f}},
                                                             {"c", {1.0f, 1.0f, 1.1f}},
                                                             {"d", {1.0f, 1.0f, 0.9f}},
                                                             {"e", {50.0f, 50.0f, 50.0f}}};
  for (const auto& [id, delta] : updates) {
    ASSERT_TRUE(c->SubmitUpdate(HeaderFor(assigned[id], id, 2), delta, t2).ok()) << id;
  }
  EXPECT_EQ(c->rounds_completed(), 1);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{2.0f, 3.0f, 4.0f}));
  EXPECT_TRUE(c->finished());
}

TEST(RobustRoundCoordinatorTest, RobustAggregatorsNeedPlainRoundsAndEnoughClients) {
  auto create = [](const CoordinatorOptions& o) {
    return RoundCoordinator::Create(o, ThreeValueLayout(), {1, 2, 3}, {}).status();
  };
  CoordinatorOptions o = Options(5, 1);
  o.aggregator = *aggregation::ParseAggregatorSpec("median");
  EXPECT_TRUE(create(o).ok());
  CoordinatorOptions secure = o;
  secure.plan.set_clip_norm(1);
  secure.secure_aggregation.emplace();
  EXPECT_EQ(create(secure).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(create(secure).message(), HasSubstr("`aggregator` median"));
  CoordinatorOptions dp = o;
  dp.plan.set_clip_norm(1);
  dp.dp.emplace();
  dp.dp->mode = privacy::DpMode::kCentral;
  dp.population = 100;
  EXPECT_THAT(create(dp).message(), HasSubstr("`aggregator` median"));
  CoordinatorOptions krum = o;
  krum.aggregator = *aggregation::ParseAggregatorSpec("multi-krum:2,3");
  EXPECT_THAT(create(krum).message(), HasSubstr("2F + 3 = 7"));
  krum.aggregator = *aggregation::ParseAggregatorSpec("krum:1");
  EXPECT_TRUE(create(krum).ok());
}

}  // namespace
}  // namespace fedkit::server
