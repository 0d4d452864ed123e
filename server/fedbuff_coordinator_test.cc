// RoundCoordinator with CoordinatorOptions::fedbuff: buffered asynchronous aggregation driven by
// events and times passed in (no sockets, no sleeps).
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/retry_after.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/round_coordinator.h"
#include "server/testing/coordinator_requests.h"

namespace fedkit::server {
namespace {

using ::fedkit::server::coordinator_testing::CheckInOf;
using ::fedkit::server::coordinator_testing::HeaderFor;
using ::fedkit::server::coordinator_testing::ThreeValueLayout;

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

CoordinatorOptions FedBuffOptions(int64_t k, int64_t c, int64_t rounds) {
  CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = rounds;
  o.round_timeout = absl::Seconds(60);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_run_seed(7);
  o.fedbuff = aggregation::FedBuffSettings{.buffer_size = k, .concurrency = c};
  return o;
}

std::unique_ptr<RoundCoordinator> Make(const CoordinatorOptions& o, CoordinatorHooks hooks = {}) {
  auto c = RoundCoordinator::Create(o, ThreeValueLayout(), {1.0f, 2.0f, 3.0f}, std::move(hooks));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

v1::RoundAssignment Assigned(RoundCoordinator& c, const std::string& id, absl::Time now) {
  absl::StatusOr<v1::CheckInResponse> r = c.CheckIn(CheckInOf(id), now);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r.ok() && r->has_assignment()) << id << ": " << (r.ok() ? r->DebugString() : "");
  return r.ok() ? r->assignment() : v1::RoundAssignment();
}

std::string RetryReason(RoundCoordinator& c, const std::string& id, absl::Time now) {
  absl::StatusOr<v1::CheckInResponse> r = c.CheckIn(CheckInOf(id), now);
  EXPECT_TRUE(r.ok() && r->has_retry_later()) << id;
  return r.ok() ? r->retry_later().reason() : "";
}

std::vector<float> ModelOf(RoundCoordinator& c, const v1::RoundAssignment& a,
                           const std::string& id) {
  v1::GetModelRequest get;
  get.set_client_id(id);
  get.set_assignment_id(a.assignment_id());
  get.set_round(a.round());
  absl::StatusOr<RoundCoordinator::ModelSnapshot> model = c.GetModel(get, kStart);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model->parameters : std::vector<float>();
}

TEST(FedBuffCoordinatorTest, CommitsEveryKUploadsWithStaleUpdatesDiscounted) {
  std::vector<RoundOutcome> commits;
  CoordinatorHooks hooks;
  hooks.round_committed = [&](const RoundOutcome& r) { commits.push_back(r); };
  auto c = Make(FedBuffOptions(/*k=*/2, /*c=*/3, /*rounds=*/2), std::move(hooks));
  ASSERT_NE(c, nullptr);
  // Three slots: a, b and x train from version 0 at once; d waits for a free slot.
  const v1::RoundAssignment a = Assigned(*c, "a", kStart);
  const v1::RoundAssignment b = Assigned(*c, "b", kStart);
  const v1::RoundAssignment x = Assigned(*c, "x", kStart);
  EXPECT_EQ(a.round(), 1);
  EXPECT_EQ(x.round(), 1);
  EXPECT_THAT(RetryReason(*c, "d", kStart), HasSubstr("3 of 3 devices training"));

  // Buffer 1: a (1 example) and b (3), both fresh: weighted FedAvg.
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(a, "a", 1), std::vector<float>{1, 0, 0}, kStart).ok());
  // One update per device per buffer: a waits for the commit.
  EXPECT_THAT(RetryReason(*c, "a", kStart), HasSubstr("waiting for it to commit"));
  EXPECT_EQ(c->rounds_completed(), 0);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(b, "b", 3), std::vector<float>{0, 4, -4}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{1.25f, 5.0f, 0.0f}));

  // x still trains from version 0, which it is served although the model moved on.
  EXPECT_EQ(ModelOf(*c, x, "x"), (std::vector<float>{1, 2, 3}));
  // Two slots are free again: a and d train from version 1.
  const v1::RoundAssignment a2 = Assigned(*c, "a", kStart);
  const v1::RoundAssignment d = Assigned(*c, "d", kStart);
  EXPECT_EQ(a2.round(), 2);
  EXPECT_EQ(ModelOf(*c, d, "d"), (std::vector<float>{1.25f, 5.0f, 0.0f}));

  // Buffer 2: x is 1 version stale (weight 1/sqrt(2)), d fresh; 2 examples each.
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(x, "x", 2), std::vector<float>{2, 2, 2}, kStart).ok());
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(d, "d", 2), std::vector<float>{0, 0, 1}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 2);
  EXPECT_TRUE(c->finished());
  const double w = 1.0 / std::sqrt(2.0);
  const std::vector<float> global = c->global_parameters();
  EXPECT_NEAR(global[0], 1.25 + (2 * w * 2) / 4, 1e-5);
  EXPECT_NEAR(global[1], 5.0 + (2 * w * 2) / 4, 1e-5);
  EXPECT_NEAR(global[2], 0.0 + (2 * w * 2 + 2 * 1) / 4, 1e-5);

  ASSERT_EQ(commits.size(), 2u);
  EXPECT_EQ(commits[0].participants, 2);
  EXPECT_EQ(commits[0].assigned, 3);
  EXPECT_EQ(commits[0].staleness_mean, 0.0);
  EXPECT_EQ(commits[0].staleness_max, 0);
  EXPECT_EQ(commits[1].participants, 2);
  EXPECT_EQ(commits[1].assigned, 2);
  EXPECT_EQ(commits[1].staleness_mean, 0.5);
  EXPECT_EQ(commits[1].staleness_max, 1);
  // a's second assignment never uploaded: the run is over.
  EXPECT_EQ(
      c->SubmitUpdate(HeaderFor(a2, "a", 1), std::vector<float>{0, 0, 0}, kStart).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(FedBuffCoordinatorTest, AConstantWeightingCountsStaleUpdatesFully) {
  CoordinatorOptions o = FedBuffOptions(1, 2, 2);
  o.fedbuff->staleness = aggregation::StalenessWeighting{.exponent = 0};
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  const v1::RoundAssignment a = Assigned(*c, "a", kStart);
  const v1::RoundAssignment b = Assigned(*c, "b", kStart);
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(a, "a", 1), std::vector<float>{1, 1, 1}, kStart).ok());
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(b, "b", 1), std::vector<float>{1, 1, 1}, kStart).ok());
  EXPECT_EQ(c->global_parameters(), (std::vector<float>{3, 4, 5}));
}

TEST(FedBuffCoordinatorTest, AnExpiredOrDeclinedAssignmentFreesItsSlot) {
  auto c = Make(FedBuffOptions(1, 1, 5));
  ASSERT_NE(c, nullptr);
  const v1::RoundAssignment a = Assigned(*c, "a", kStart);
  EXPECT_THAT(RetryReason(*c, "b", kStart + absl::Seconds(59)), HasSubstr("1 of 1 devices"));
  // a's deadline (round_timeout after its assignment) passes.
  ASSERT_TRUE(c->Tick(kStart + absl::Seconds(60)).ok());
  const v1::RoundAssignment b = Assigned(*c, "b", kStart + absl::Seconds(61));
  absl::StatusOr<v1::UploadResponse> late =
      c->SubmitUpdate(HeaderFor(a, "a", 1), std::vector<float>{0, 0, 0}, kStart);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("late"));

  v1::DeclineRequest decline;
  decline.set_client_id("b");
  decline.set_assignment_id(b.assignment_id());
  decline.set_round(b.round());
  decline.set_reason(v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  ASSERT_TRUE(c->Decline(decline, kStart + absl::Seconds(62)).ok());
  const v1::RoundAssignment d = Assigned(*c, "d", kStart + absl::Seconds(62));
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(d, "d", 1), std::vector<float>{0, 0, 0}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 1);
}

// While a commit's hooks run (outside the lock), uploads still join the next buffer; once it is
// full, more are refused with a retry hint until it commits, and no device is assigned.
TEST(FedBuffCoordinatorTest, AFullBufferWaitsForThePendingCommit) {
  RoundCoordinator* coordinator = nullptr;
  std::map<std::string, v1::RoundAssignment> assigned;
  absl::Status during_b, during_x;
  std::string during_checkin;
  CoordinatorHooks hooks;
  hooks.evaluate = [&](absl::Span<const float>) -> absl::StatusOr<std::pair<double, double>> {
    if (coordinator->rounds_completed() == 1 && during_b.ok() && during_checkin.empty()) {
      during_b =
          coordinator
              ->SubmitUpdate(HeaderFor(assigned["b"], "b", 1), std::vector<float>{0, 2, 0}, kStart)
              .status();
      during_x =
          coordinator
              ->SubmitUpdate(HeaderFor(assigned["x"], "x", 1), std::vector<float>{0, 0, 4}, kStart)
              .status();
      during_checkin = RetryReason(*coordinator, "y", kStart);
    }
    return std::make_pair(0.5, 1.0);
  };
  auto c = Make(FedBuffOptions(1, 3, 3), std::move(hooks));
  ASSERT_NE(c, nullptr);
  coordinator = c.get();
  for (const char* id : {"a", "b", "x"}) assigned[id] = Assigned(*c, id, kStart);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["a"], "a", 1), std::vector<float>{1, 0, 0}, kStart).ok());
  EXPECT_TRUE(during_b.ok()) << during_b;
  EXPECT_EQ(during_x.code(), absl::StatusCode::kUnavailable) << during_x;
  EXPECT_THAT(during_x.message(), HasSubstr("buffer is full"));
  EXPECT_TRUE(RetryAfterOf(during_x).has_value());
  EXPECT_THAT(during_checkin, HasSubstr("evaluation and checkpoint first"));
  // The full buffer commits on the next event; x's upload then joins the third buffer.
  EXPECT_EQ(c->rounds_completed(), 1);
  ASSERT_TRUE(c->Tick(kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 2);
  ASSERT_TRUE(
      c->SubmitUpdate(HeaderFor(assigned["x"], "x", 1), std::vector<float>{0, 0, 4}, kStart).ok());
  EXPECT_EQ(c->rounds_completed(), 3);
  // b was 1 stale and x 2: 1 + 2/sqrt(2) and 3 + 4/sqrt(3).
  const std::vector<float> global = c->global_parameters();
  EXPECT_NEAR(global[0], 2.0, 1e-6);
  EXPECT_NEAR(global[1], 2.0 + 2.0 / std::sqrt(2.0), 1e-5);
  EXPECT_NEAR(global[2], 3.0 + 4.0 / std::sqrt(3.0), 1e-5);
}

TEST(FedBuffCoordinatorTest, TheFirstAssignmentWaitsForMinAvailableDevices) {
  CoordinatorOptions o = FedBuffOptions(1, 2, 3);
  o.min_available = 3;
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(RetryReason(*c, "a", kStart), HasSubstr("1 waiting; FedBuff starts with 3"));
  EXPECT_THAT(RetryReason(*c, "b", kStart), HasSubstr("2 waiting"));
  const v1::RoundAssignment x = Assigned(*c, "x", kStart);
  const v1::RoundAssignment a = Assigned(*c, "a", kStart);
  EXPECT_THAT(RetryReason(*c, "b", kStart), HasSubstr("2 of 2 devices training"));
  // Once started, FedBuff no longer waits for the pool: one device waiting is assigned.
  ASSERT_TRUE(c->SubmitUpdate(HeaderFor(x, "x", 1), std::vector<float>{0, 0, 0}, kStart).ok());
  Assigned(*c, "b", kStart);
}

TEST(FedBuffCoordinatorTest, CreateRefusesWhatABufferCannotRunNamingTheField) {
  auto refused = [](const CoordinatorOptions& o) {
    return RoundCoordinator::Create(o, ThreeValueLayout(), {1.0f, 2.0f, 3.0f}, {}).status();
  };
  // Secure cohorts of K need K slots of C.
  CoordinatorOptions secure = FedBuffOptions(4, 3, 1);
  secure.plan.set_clip_norm(1.0);
  secure.secure_aggregation = SecureAggregationSettings();
  CoordinatorOptions dp = FedBuffOptions(2, 4, 1);
  dp.plan.set_clip_norm(1.0);
  dp.dp = privacy::DpSettings();
  dp.dp->mode = privacy::DpMode::kCentral;
  dp.dp->noise_multiplier = 1.0;
  CoordinatorOptions median = FedBuffOptions(2, 4, 1);
  median.aggregator.kind = aggregation::AggregatorKind::kMedian;
  CoordinatorOptions over = FedBuffOptions(2, 4, 1);
  over.over_select = 0.3;
  for (const auto& [options, field] :
       std::vector<std::pair<CoordinatorOptions, std::string>>{{secure, "`concurrency`"},
                                                               {dp, "`dp`"},
                                                               {median, "`aggregator`"},
                                                               {over, "`over_select`"}}) {
    const absl::Status status = refused(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(status.message(), HasSubstr("`fedbuff`"));
    EXPECT_THAT(status.message(), HasSubstr(field));
  }
  CoordinatorOptions empty = FedBuffOptions(0, 4, 1);
  EXPECT_THAT(refused(empty).message(), HasSubstr("`buffer_size`"));
  CoordinatorOptions none = FedBuffOptions(2, 0, 1);
  EXPECT_THAT(refused(none).message(), HasSubstr("`concurrency`"));
}

}  // namespace
}  // namespace fedkit::server
