// RoundCoordinator with secure aggregation, driven in process by real SecAggClient state machines
// through the same wire messages the gRPC service passes (no sockets, time passed in).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/encoding.h"
#include "proto/secagg_conversion.h"
#include "server/round_coordinator.h"
#include "server/testing/coordinator_requests.h"

namespace fedkit::server {
namespace {

using ::fedkit::server::coordinator_testing::CheckInOf;

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(2'000'000);

ParameterLayout TinyLayout() {
  ParameterLayout layout;
  layout.Append("w", {3});
  return layout;
}

CoordinatorOptions SecureOptions(int64_t k, secagg::Variant variant) {
  CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = 3;
  o.clients_per_round = k;
  o.min_clients = k;
  o.round_timeout = absl::Seconds(60);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_clip_norm(1.0);
  o.plan.set_run_seed(7);
  o.max_examples_per_client = 100;
  SecureAggregationSettings secure;
  secure.variant = variant;
  secure.phase_timeout = absl::Seconds(10);
  o.secure_aggregation = secure;
  return o;
}

// One device: its assignment, its protocol state machine and its (clipped) delta.
struct Device {
  std::string id;
  v1::RoundAssignment assignment;
  SecAggAssignment params;
  std::unique_ptr<secagg::SecAggClient> protocol;
  std::vector<float> delta;
  int64_t examples = 0;

  v1::SecAggRequest Request() const {
    v1::SecAggRequest r;
    r.set_client_id(id);
    r.set_assignment_id(assignment.assignment_id());
    r.set_round(assignment.round());
    return r;
  }
};

class SecureRoundTest : public ::testing::Test {
 protected:
  // `assign`: every device checks in twice and must hold an assignment (Assign).
  void Start(int n, secagg::Variant variant,
             const std::function<void(CoordinatorOptions&)>& adjust = {}, bool assign = true) {
    CoordinatorOptions options = SecureOptions(n, variant);
    if (adjust) adjust(options);
    CoordinatorHooks hooks;
    hooks.round_participation = [this](const RoundParticipation& p) {
      participation_.push_back(p);
    };
    hooks.log = [this](const std::string& line) { log_.push_back(line); };
    hooks.secagg_phase_closed = [this](int64_t round, const SecAggPhaseStats& stats) {
      phases_.emplace_back(round, stats);
    };
    auto c = RoundCoordinator::Create(options, TinyLayout(), {0, 0, 0}, hooks);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    for (int i = 0; i < n; ++i) {
      Device d;
      d.id = "dev-" + std::to_string(i);
      d.delta = {0.1f * static_cast<float>(i), -0.05f, 0.2f};
      d.examples = 10 + i;
      devices_.push_back(std::move(d));
    }
    if (assign) Assign(variant);
  }
  // Under FedBuff: K devices per cohort, C at once (the cohorts form as devices check in).
  void StartFedBuff(int n, int64_t k, int64_t c, int64_t rounds, bool assign = true,
                    double over_select = 0) {
    Start(
        n, secagg::Variant::kSecAgg,
        [&](CoordinatorOptions& o) {
          o.rounds = rounds;
          o.fedbuff = aggregation::FedBuffSettings{.buffer_size = k, .concurrency = c};
          o.over_select = over_select;
        },
        assign);
  }
  // One device checks in; its assignment (and protocol state) if it got one.
  bool TakeAssignment(Device& d) {
    auto r = coordinator_->CheckIn(CheckInOf(d.id), now_);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !r->has_assignment()) return false;
    d.assignment = r->assignment();
    auto params = SecAggParamsFromProto(d.assignment.secure_aggregation());
    EXPECT_TRUE(params.ok()) << params.status();
    if (!params.ok()) return false;
    d.params = *params;
    d.protocol = *secagg::SecAggClient::Create(params->config, params->client_index);
    return true;
  }
  // A complete honest protocol run of the given devices (one cohort).
  void HonestCohort(const std::vector<int>& members) {
    for (int i : members) Advertise(devices_[i]);
    for (int i : members) Share(devices_[i]);
    for (int i : members) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
    for (int i : members) Unmask(devices_[i]);
  }
  // Every device checks in (again) and learns its assignment: a new protocol state machine.
  void Assign(secagg::Variant variant) {
    for (auto& d : devices_) ASSERT_TRUE(coordinator_->CheckIn(CheckInOf(d.id), now_).ok());
    for (auto& d : devices_) {
      auto r = coordinator_->CheckIn(CheckInOf(d.id), now_);
      ASSERT_TRUE(r.ok() && r->has_assignment());
      d.assignment = r->assignment();
      ASSERT_EQ(d.assignment.secure_aggregation().protocol(), secagg::VariantName(variant));
      auto params = SecAggParamsFromProto(d.assignment.secure_aggregation());
      ASSERT_TRUE(params.ok()) << params.status();
      d.params = *params;
      d.protocol = *secagg::SecAggClient::Create(params->config, params->client_index);
    }
  }

  absl::StatusOr<v1::SecAggResponse> Step(Device& d, v1::SecAggRequest request) {
    return coordinator_->SecureAggregationStep(request, now_);
  }
  absl::StatusOr<v1::SecAggResponse> Poll(Device& d, v1::SecAggPoll::Want want) {
    v1::SecAggRequest r = d.Request();
    r.mutable_poll()->set_want(want);
    return coordinator_->SecureAggregationStep(r, now_);
  }

  void Advertise(Device& d) {
    v1::SecAggRequest r = d.Request();
    *r.mutable_advertise_keys() = AdvertiseKeysToProto(*d.protocol->AdvertiseKeys());
    auto response = Step(d, r);
    ASSERT_TRUE(response.ok() && response->has_accepted()) << response.status();
  }
  void Share(Device& d, const std::function<void(secagg::ShareKeysMessage&)>& tamper = {}) {
    auto dir = Poll(d, v1::SecAggPoll::KEY_DIRECTORY);
    ASSERT_TRUE(dir.ok() && dir->has_key_directory()) << dir.status();
    v1::SecAggRequest r = d.Request();
    absl::StatusOr<secagg::ShareKeysMessage> message =
        d.protocol->ShareKeys(*KeyDirectoryFromProto(dir->key_directory()));
    ASSERT_TRUE(message.ok()) << message.status();
    if (tamper) tamper(*message);
    *r.mutable_share_keys() = ShareKeysToProto(*message);
    auto response = Step(d, r);
    ASSERT_TRUE(response.ok() && response->has_accepted()) << response.status();
  }
  // The masked input of the device's encoded delta, which `forge` may alter first (a malicious
  // device's own encoding). `reported`: the senders whose share ciphertext was bad.
  std::string Packed(Device& d, std::vector<int32_t>* reported = nullptr,
                     const std::function<void(std::vector<uint64_t>&)>& forge = {}) {
    auto bundle = Poll(d, v1::SecAggPoll::SHARE_BUNDLE);
    EXPECT_TRUE(bundle.ok() && bundle->has_share_bundle()) << bundle.status();
    auto encoded = secagg::EncodeWeightedUpdate(
        d.params.encoding, d.delta, std::min(d.examples, d.params.encoding.max_weight), 99);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    if (forge) forge(*encoded);
    auto masked = d.protocol->MaskInput(ShareBundleFromProto(bundle->share_bundle()), *encoded);
    EXPECT_TRUE(masked.ok()) << masked.status();
    if (reported != nullptr) *reported = masked->bad_share_senders;
    return PackMaskedValues(masked->masked_input, d.params.config.modulus_bits);
  }
  absl::StatusOr<v1::UploadResponse> Upload(Device& d, const std::string& packed,
                                            const std::vector<int32_t>& reported = {}) {
    v1::UpdateHeader h;
    h.set_client_id(d.id);
    h.set_assignment_id(d.assignment.assignment_id());
    h.set_round(d.assignment.round());
    h.set_total_size(4);
    for (int32_t sender : reported) h.add_secagg_bad_share_senders(sender);
    h.mutable_telemetry()->set_training_seconds(2.5);  // masked uploads carry telemetry too
    return coordinator_->SubmitMaskedUpdate(h, packed, now_);
  }
  void Unmask(Device& d, const std::function<void(secagg::UnmaskResponse&)>& tamper = {}) {
    auto request = Poll(d, v1::SecAggPoll::UNMASK_REQUEST);
    ASSERT_TRUE(request.ok() && request->has_unmask_request()) << request.status();
    v1::SecAggRequest r = d.Request();
    absl::StatusOr<secagg::UnmaskResponse> revealed =
        d.protocol->Unmask(UnmaskRequestFromProto(request->unmask_request()));
    ASSERT_TRUE(revealed.ok()) << revealed.status();
    if (tamper) tamper(*revealed);
    *r.mutable_unmask() = UnmaskResponseToProto(*revealed);
    auto response = Step(d, r);
    ASSERT_TRUE(response.ok() && response->has_accepted()) << response.status();
  }

  // The weighted average of the given devices' deltas, as the server should commit it.
  std::vector<float> ExpectedAverage(const std::vector<int>& included) {
    std::vector<double> sum(3, 0.0);
    double weight = 0;
    for (int i : included) {
      for (int j = 0; j < 3; ++j) sum[j] += devices_[i].examples * devices_[i].delta[j];
      weight += devices_[i].examples;
    }
    std::vector<float> avg(3);
    for (int j = 0; j < 3; ++j) avg[j] = static_cast<float>(sum[j] / weight);
    return avg;
  }

  // A complete honest round of all devices; the global model is then their weighted average.
  void HonestRound() {
    for (auto& d : devices_) Advertise(d);
    for (auto& d : devices_) Share(d);
    for (auto& d : devices_) ASSERT_TRUE(Upload(d, Packed(d)).ok());
    for (auto& d : devices_) Unmask(d);
  }
  bool Logged(const std::string& text) const {
    for (const std::string& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  int64_t Refusals(const std::string& reason) {
    const auto status = coordinator_->Status(now_);
    auto it = status.refusals().find(reason);
    return it == status.refusals().end() ? 0 : it->second;
  }

  absl::Time now_ = kStart;
  std::vector<std::string> log_;
  std::vector<std::pair<int64_t, SecAggPhaseStats>> phases_;
  std::vector<RoundParticipation> participation_;
  std::unique_ptr<RoundCoordinator> coordinator_;
  std::vector<Device> devices_;
};

TEST_F(SecureRoundTest, RoundCommitsTheSurvivorsWeightedAverageAfterAnUploadDeadline) {
  Start(6, secagg::Variant::kSecAgg);
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  // Devices 0..4 upload; device 5 never does (it died after sharing its keys).
  for (int i = 0; i < 5; ++i) {
    auto up = Upload(devices_[i], Packed(devices_[i]));
    ASSERT_TRUE(up.ok()) << up.status();
  }
  // Still waiting for device 5: unmask requests are not out yet.
  auto early = Poll(devices_[0], v1::SecAggPoll::UNMASK_REQUEST);
  ASSERT_TRUE(early.ok() && early->has_retry_later());
  EXPECT_EQ(coordinator_->Status(now_).phase(), "secagg-upload");
  now_ += absl::Seconds(61);  // the upload deadline (the round timeout) passes
  ASSERT_TRUE(coordinator_->Tick(now_).ok());
  EXPECT_EQ(coordinator_->Status(now_).phase(), "secagg-unmask");
  // GetStatus lists the closed phases: device 5 dropped out in the upload phase, which ran until
  // its deadline.
  {
    const auto status = coordinator_->Status(now_);
    ASSERT_EQ(status.secagg_phases_size(), 3);
    EXPECT_EQ(status.secagg_phases(0).phase(), "secagg-advertise");
    EXPECT_EQ(status.secagg_phases(0).clients_in(), 6);
    EXPECT_EQ(status.secagg_phases(0).clients_out(), 6);
    EXPECT_EQ(status.secagg_phases(2).phase(), "secagg-upload");
    EXPECT_EQ(status.secagg_phases(2).clients_in(), 6);
    EXPECT_EQ(status.secagg_phases(2).clients_out(), 5);
    EXPECT_DOUBLE_EQ(status.secagg_phases(2).seconds(), 61);
  }
  for (int i = 0; i < 5; ++i) Unmask(devices_[i]);
  EXPECT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3, 4});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  auto status = coordinator_->Status(now_);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).participants(), 5);
  EXPECT_EQ(status.history(0).assigned(), 6);
  EXPECT_EQ(status.history(0).device_telemetry().reports(), 5);
  EXPECT_EQ(status.history(0).device_telemetry().training_seconds().p90(), 2.5);
  EXPECT_EQ(status.secagg_phases_size(), 0);  // the next round has not started
  // The hook saw all four phases of round 1, in order.
  ASSERT_EQ(phases_.size(), 4u);
  EXPECT_EQ(phases_[0].first, 1);
  EXPECT_EQ(phases_[1].second.phase, "secagg-share");
  EXPECT_EQ(phases_[2].second.clients_out, 5);
  EXPECT_EQ(phases_[3].second.phase, "secagg-unmask");
  EXPECT_EQ(phases_[3].second.clients_in, 5);
  EXPECT_EQ(phases_[3].second.clients_out, 5);
  // The participation record names the five whose masked input is in the sum.
  ASSERT_EQ(participation_.size(), 1u);
  EXPECT_EQ(participation_[0].assigned.size(), 6u);
  EXPECT_EQ(participation_[0].aggregated,
            (std::vector<std::string>{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4"}));
}

// The same dropout, but device 5 says so (Decline DEVICE_NOT_ELIGIBLE: unplugged mid-training):
// the upload phase closes at once, without waiting for its deadline, and the round commits the
// other five's average with no time passing.
TEST_F(SecureRoundTest, ADeviceThatDeclinesIsWithdrawnAndNotWaitedFor) {
  Start(6, secagg::Variant::kSecAgg);
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  EXPECT_EQ(coordinator_->Status(now_).phase(), "secagg-upload");
  v1::DeclineRequest decline;
  decline.set_client_id(devices_[5].id);
  decline.set_assignment_id(devices_[5].assignment.assignment_id());
  decline.set_round(devices_[5].assignment.round());
  decline.set_reason(v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  ASSERT_TRUE(coordinator_->Decline(decline, now_).ok());
  EXPECT_EQ(coordinator_->Status(now_).phase(), "secagg-unmask");
  for (int i = 0; i < 5; ++i) Unmask(devices_[i]);
  EXPECT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3, 4});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  const auto status = coordinator_->Status(now_);
  EXPECT_EQ(status.declines().at("device_not_eligible"), 1);
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).participants(), 5);
  EXPECT_DOUBLE_EQ(status.history(0).seconds(), 0);  // no deadline passed
  ASSERT_EQ(phases_.size(), 4u);
  EXPECT_EQ(phases_[2].second.clients_out, 5);
  EXPECT_EQ(absl::ToDoubleSeconds(phases_[2].second.duration), 0);
}

TEST_F(SecureRoundTest, RetriesAreAcknowledgedAndDifferentRepeatsRefused) {
  Start(4, secagg::Variant::kSecAggPlus);
  v1::SecAggRequest advert = devices_[0].Request();
  *advert.mutable_advertise_keys() = AdvertiseKeysToProto(*devices_[0].protocol->AdvertiseKeys());
  ASSERT_TRUE(Step(devices_[0], advert).ok());
  auto again = Step(devices_[0], advert);  // a retry after a lost response
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->accepted().duplicate());
  v1::SecAggRequest other = advert;
  other.mutable_advertise_keys()->set_masking_public_key(std::string(32, 'x'));
  EXPECT_TRUE(absl::IsAlreadyExists(Step(devices_[0], other).status()));
  v1::SecAggRequest bad = devices_[1].Request();
  bad.mutable_advertise_keys()->set_masking_public_key("short");
  EXPECT_THAT(Step(devices_[1], bad).status().message(), HasSubstr("32 bytes"));
  // A device that has joined is not handed the assignment again on check-in.
  auto check_in = coordinator_->CheckIn(CheckInOf(devices_[0].id), now_);
  ASSERT_TRUE(check_in.ok());
  EXPECT_TRUE(check_in->has_retry_later());
  // One that has not joined is (e.g. it lost the response).
  check_in = coordinator_->CheckIn(CheckInOf(devices_[1].id), now_);
  ASSERT_TRUE(check_in.ok());
  EXPECT_TRUE(check_in->has_assignment());
}

TEST_F(SecureRoundTest, PlainUploadsAndStrangersAreRefused) {
  Start(3, secagg::Variant::kSecAgg);
  v1::UpdateHeader h;
  h.set_client_id(devices_[0].id);
  h.set_assignment_id(devices_[0].assignment.assignment_id());
  h.set_round(1);
  h.set_num_examples(5);
  h.set_total_size(3);
  const std::vector<float> delta = {0.1f, 0.1f, 0.1f};
  EXPECT_THAT(coordinator_->SubmitUpdate(h, delta, now_).status().message(),
              HasSubstr("secure aggregation"));
  v1::SecAggRequest stranger = devices_[0].Request();
  stranger.set_client_id("intruder");
  stranger.mutable_poll()->set_want(v1::SecAggPoll::KEY_DIRECTORY);
  EXPECT_TRUE(absl::IsFailedPrecondition(Step(devices_[0], stranger).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Step(devices_[0], devices_[0].Request()).status()));
  // A masked upload in the wrong phase changes nothing.
  EXPECT_TRUE(absl::IsFailedPrecondition(Upload(devices_[0], std::string(16, '\0')).status()));
}

TEST_F(SecureRoundTest, TooFewSurvivorsAbortTheRoundWhichRestarts) {
  Start(6, secagg::Variant::kSecAgg);  // t = 4
  for (int i = 0; i < 3; ++i) Advertise(devices_[i]);
  now_ += absl::Seconds(11);  // advertise deadline: only 3 of 6
  ASSERT_TRUE(coordinator_->Tick(now_).ok());
  auto poll = Poll(devices_[0], v1::SecAggPoll::KEY_DIRECTORY);
  EXPECT_FALSE(poll.ok() && poll->has_key_directory());
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
  EXPECT_EQ(coordinator_->global_parameters(), (std::vector<float>{0, 0, 0}));
  auto status = coordinator_->Status(now_);
  EXPECT_EQ(status.refusals().at("secagg_round_aborted"), 1);
  EXPECT_EQ(status.phase(), "waiting");
}

// ---- FedBuff: each buffer a cohort with its own protocol (CoordinatorOptions::fedbuff) ----

// Two cohorts of 4 train from the same model at once; the one that finishes first commits its
// weighted average, the other its average discounted by w(1) = 1/sqrt(2): the plain buffer's
// sum n_i w(s_i) delta_i / sum n_i, never one device's update in the clear.
TEST_F(SecureRoundTest, FedBuffCohortsCommitTheirAveragesDiscountedByStaleness) {
  StartFedBuff(8, 4, 8, 3);
  // The pool's first four (sorted ids) formed cohort 1, the next four cohort 2, both of round 1.
  for (const Device& d : devices_) {
    ASSERT_EQ(d.assignment.round(), 1);
    ASSERT_EQ(d.params.config.num_clients, 4) << d.id;
  }
  EXPECT_THAT(coordinator_->WaitingFor(now_), HasSubstr("2 cohorts of 4"));
  HonestCohort({4, 5, 6, 7});  // cohort 2 finishes first
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> first = ExpectedAverage({4, 5, 6, 7});
  HonestCohort({0, 1, 2, 3});
  ASSERT_EQ(coordinator_->rounds_completed(), 2);
  const std::vector<float> second = ExpectedAverage({0, 1, 2, 3});
  const std::vector<float> global = coordinator_->global_parameters();
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(global[j], first[j] + second[j] / std::sqrt(2.0), 1e-5) << j;
  }
  const auto status = coordinator_->Status(now_);
  ASSERT_EQ(status.history_size(), 2);
  EXPECT_EQ(status.history(0).participants(), 4);
  EXPECT_EQ(status.history(0).assigned(), 4);
  EXPECT_EQ(status.history(1).examples(), 10 + 11 + 12 + 13);
  ASSERT_EQ(participation_.size(), 2u);
  EXPECT_EQ(participation_[0].round, 1);
  EXPECT_EQ(participation_[0].aggregated,
            (std::vector<std::string>{"dev-4", "dev-5", "dev-6", "dev-7"}));
  EXPECT_EQ(participation_[1].round, 2);
  EXPECT_EQ(participation_[1].assigned.size(), 4u);
  // The first cohort's devices are free again: four of them form round 3's cohort, from the
  // model of two commits.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(TakeAssignment(devices_[i]));
  ASSERT_TRUE(TakeAssignment(devices_[3]));
  EXPECT_EQ(devices_[3].assignment.round(), 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(TakeAssignment(devices_[i]));
  HonestCohort({0, 1, 2, 3});
  EXPECT_EQ(coordinator_->rounds_completed(), 3);
  EXPECT_TRUE(coordinator_->finished());
}

// C = K: one cohort at a time; further devices wait, and each is told why.
TEST_F(SecureRoundTest, FedBuffRunsNoMoreCohortsThanConcurrencyAllows) {
  StartFedBuff(8, 4, 7, 2, /*assign=*/false);
  // The fourth check-in forms a cohort of the four waiting; the others come back for theirs.
  for (Device& d : devices_) TakeAssignment(d);
  int assigned = 0;
  for (Device& d : devices_) assigned += TakeAssignment(d) ? 1 : 0;
  EXPECT_EQ(assigned, 4);  // 4 + 4 > 7: no second cohort
  auto r = coordinator_->CheckIn(CheckInOf(devices_[7].id), now_);
  ASSERT_TRUE(r.ok() && r->has_retry_later());
  EXPECT_THAT(r->retry_later().reason(), HasSubstr("4 of 7 devices in flight"));
}

// A cohort whose protocol aborts (too few advertised keys) is dropped alone: the other cohort
// commits undiscounted, and the dropped cohort's devices are assigned again.
TEST_F(SecureRoundTest, AFedBuffCohortThatAbortsIsDroppedAlone) {
  StartFedBuff(8, 4, 8, 2);
  Advertise(devices_[0]);  // cohort 1: one of four advertises
  for (int i = 4; i < 8; ++i) Advertise(devices_[i]);
  for (int i = 4; i < 8; ++i) Share(devices_[i]);
  now_ += absl::Seconds(11);  // cohort 1's advertise deadline; cohort 2 is in its upload phase
  ASSERT_TRUE(coordinator_->Tick(now_).ok());
  EXPECT_EQ(Refusals("secagg_round_aborted"), 1);
  EXPECT_TRUE(Logged("a cohort of 4 devices (from round 1's model) dropped"))
      << testing::PrintToString(log_);
  for (int i = 4; i < 8; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  for (int i = 4; i < 8; ++i) Unmask(devices_[i]);
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({4, 5, 6, 7});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  // A dropped device's late message is refused; the device itself is assigned again.
  EXPECT_TRUE(
      absl::IsFailedPrecondition(Poll(devices_[0], v1::SecAggPoll::KEY_DIRECTORY).status()));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(TakeAssignment(devices_[i]));
  EXPECT_TRUE(TakeAssignment(devices_[3]));
  EXPECT_EQ(devices_[3].assignment.round(), 2);
}

// A member that declines is withdrawn from its cohort's protocol, which goes on without it.
TEST_F(SecureRoundTest, AFedBuffCohortMemberThatDeclinesIsNotWaitedFor) {
  StartFedBuff(5, 5, 5, 1);  // t = 4 of 5
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  v1::DeclineRequest decline;
  decline.set_client_id(devices_[4].id);
  decline.set_assignment_id(devices_[4].assignment.assignment_id());
  decline.set_round(devices_[4].assignment.round());
  decline.set_reason(v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  ASSERT_TRUE(coordinator_->Decline(decline, now_).ok());
  for (int i = 0; i < 4; ++i) Unmask(devices_[i]);
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
}

// Over-selected cohorts (over_select 0.3: 4 devices for K = 3): the first three masked inputs
// close the upload phase, the fourth device drops out, and the commit is the three's average.
TEST_F(SecureRoundTest, AnOverSelectedFedBuffCohortCommitsItsFirstKMaskedInputs) {
  StartFedBuff(8, 3, 8, 2, /*assign=*/true, /*over_select=*/0.3);
  for (const Device& d : devices_) ASSERT_EQ(d.params.config.num_clients, 4) << d.id;
  for (int i = 0; i < 4; ++i) Advertise(devices_[i]);
  for (int i = 0; i < 4; ++i) Share(devices_[i]);
  const std::string late = Packed(devices_[3]);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(Upload(devices_[3], late).status()));
  for (int i = 0; i < 3; ++i) Unmask(devices_[i]);
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  const auto status = coordinator_->Status(now_);
  EXPECT_EQ(status.history(0).participants(), 3);
  EXPECT_EQ(status.history(0).assigned(), 4);
  // Without secure aggregation over_select stays refused; with it, C must hold the cohort.
  CoordinatorOptions plain = SecureOptions(3, secagg::Variant::kSecAgg);
  plain.secure_aggregation.reset();
  plain.fedbuff = aggregation::FedBuffSettings{.buffer_size = 3, .concurrency = 8};
  plain.over_select = 0.3;
  EXPECT_THAT(RoundCoordinator::Create(plain, TinyLayout(), {0, 0, 0}, {}).status().message(),
              HasSubstr("`over_select`"));
  CoordinatorOptions small = SecureOptions(3, secagg::Variant::kSecAgg);
  small.fedbuff = aggregation::FedBuffSettings{.buffer_size = 3, .concurrency = 3};
  small.over_select = 0.3;
  EXPECT_THAT(RoundCoordinator::Create(small, TinyLayout(), {0, 0, 0}, {}).status().message(),
              HasSubstr("over-selected by `over_select` (4)"));
}

// ---- Malicious clients (privacy/secagg/protocol.h) ----

// Shifts the revealed shares of the given owners off their polynomial.
std::function<void(secagg::UnmaskResponse&)> LieAbout(std::vector<int32_t> owners) {
  return [owners](secagg::UnmaskResponse& response) {
    for (secagg::RevealedShare& revealed : response.shares) {
      if (std::find(owners.begin(), owners.end(), revealed.owner) == owners.end()) continue;
      revealed.share.y[0] = (revealed.share.y[0] + 4242) % secagg::kShamirPrime;
    }
  };
}

TEST_F(SecureRoundTest, AWrongShareIsNamedAndTheRoundCommitsTheRightAverage) {
  Start(6, secagg::Variant::kSecAgg);  // t = 4; protocol index i is dev-i (sorted ids)
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  for (auto& d : devices_) ASSERT_TRUE(Upload(d, Packed(d)).ok());
  Unmask(devices_[0], LieAbout({3}));
  for (int i = 1; i < 6; ++i) Unmask(devices_[i]);
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  // Its lie changed nothing: everyone's input is in, unmasked with the committed seeds.
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3, 4, 5});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  EXPECT_EQ(Refusals("secagg_bad_share"), 1);
  EXPECT_TRUE(Logged("client dev-0 revealed shares of clients dev-3 that do not match"))
      << testing::PrintToString(log_);
}

TEST_F(SecureRoundTest, ABadCiphertextExcludesItsSenderAndTheOthersCommit) {
  Start(7, secagg::Variant::kSecAgg);  // t = 4
  for (auto& d : devices_) Advertise(d);
  for (int i = 0; i < 6; ++i) Share(devices_[i]);
  Share(devices_[6], [](secagg::ShareKeysMessage& m) {
    for (auto& share : m.shares) {
      if (share.recipient == 0) share.ciphertext[30] ^= 0x40;
    }
  });
  std::vector<int32_t> reported;
  const std::string packed = Packed(devices_[0], &reported);  // no abort: dev-6 reported
  ASSERT_EQ(reported, std::vector<int32_t>{6});
  ASSERT_TRUE(Upload(devices_[0], packed, reported).ok());
  EXPECT_TRUE(
      Logged("client dev-6 sent share ciphertexts that clients dev-0 reported bad; it is "
             "excluded"))
      << testing::PrintToString(log_);
  auto refused = Upload(devices_[6], Packed(devices_[6]));
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  for (int i = 1; i < 6; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  // The excluded device is not waited for: unmasking starts at once.
  EXPECT_EQ(coordinator_->Status(now_).phase(), "secagg-unmask");
  for (int i = 0; i < 6; ++i) Unmask(devices_[i]);
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3, 4, 5});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
  EXPECT_EQ(Refusals("secagg_bad_ciphertext"), 1);
  ASSERT_EQ(participation_.size(), 1u);
  EXPECT_EQ(participation_[0].aggregated,
            (std::vector<std::string>{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}));
}

TEST_F(SecureRoundTest, AForgedWeightAbandonsTheRoundWhichThenCommitsTheHonestAverage) {
  Start(4, secagg::Variant::kSecAgg);
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  // dev-3 claims 5000 examples, beyond the cap of 100 (the last value is the weight).
  ASSERT_TRUE(
      Upload(devices_[3], Packed(devices_[3], nullptr,
                                 [](std::vector<uint64_t>& encoded) { encoded.back() = 5000; }))
          .ok());
  for (auto& d : devices_) Unmask(d);
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
  EXPECT_EQ(coordinator_->global_parameters(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(Refusals("secagg_forged_weight"), 1);
  EXPECT_TRUE(Logged("abandoned (secagg_forged_weight)")) << testing::PrintToString(log_);
  EXPECT_TRUE(Logged("outside [4, 400]")) << testing::PrintToString(log_);
  // The round starts again; played honestly it commits the right average.
  Assign(secagg::Variant::kSecAgg);
  HonestRound();
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
}

TEST_F(SecureRoundTest, AnUnclippedDeltaWithinTheWeightCapAbandonsTheRound) {
  Start(4, secagg::Variant::kSecAgg);
  for (auto& d : devices_) Advertise(d);
  for (auto& d : devices_) Share(d);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Upload(devices_[i], Packed(devices_[i])).ok());
  // dev-3 skips clipping: 13 examples x 10 in the first value, against a clip norm of 1.
  const double scale = devices_[3].params.encoding.scale;
  ASSERT_TRUE(Upload(devices_[3], Packed(devices_[3], nullptr,
                                         [scale](std::vector<uint64_t>& encoded) {
                                           encoded[0] =
                                               static_cast<uint64_t>(std::llround(13 * 10 * scale));
                                         }))
                  .ok());
  for (auto& d : devices_) Unmask(d);
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
  EXPECT_EQ(Refusals("secagg_sum_out_of_range"), 1);
  EXPECT_TRUE(Logged("abandoned (secagg_sum_out_of_range)")) << testing::PrintToString(log_);
}

TEST_F(SecureRoundTest, ANonFiniteGlobalModelIsNeverCommitted) {
  Start(4, secagg::Variant::kSecAgg, [](CoordinatorOptions& o) {
    o.server_optimizer.learning_rate = 1e300;  // 1e300 x an average of 0.2 overflows a float
  });
  HonestRound();
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
  EXPECT_EQ(coordinator_->global_parameters(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(Refusals("non_finite_model"), 1);
  EXPECT_TRUE(Logged("abandoned (non_finite_model)")) << testing::PrintToString(log_);
}

TEST(SecureRoundConfigTest, RefusedAtConfigurationTime) {
  CoordinatorOptions o = SecureOptions(4, secagg::Variant::kSecAgg);
  o.plan.set_clip_norm(0);
  EXPECT_THAT(RoundCoordinator::Create(o, TinyLayout(), {0, 0, 0}, {}).status().message(),
              HasSubstr("clip norm"));
  o = SecureOptions(4, secagg::Variant::kSecAgg);
  o.secure_aggregation->modulus_bits = 10;  // 4 clients x 100 examples do not fit
  EXPECT_FALSE(RoundCoordinator::Create(o, TinyLayout(), {0, 0, 0}, {}).ok());
  o = SecureOptions(1, secagg::Variant::kSecAgg);
  EXPECT_FALSE(RoundCoordinator::Create(o, TinyLayout(), {0, 0, 0}, {}).ok());
}

// Every device on a thread of its own, as the gRPC service calls the coordinator, and another
// thread reading the status and checking in all along: the round commits the exact average, and
// (under TSan, scripts/sanitize.sh tsan) nothing touches the round while its sum is reconstructed
// outside the lock.
TEST_F(SecureRoundTest, DevicesOnTheirOwnThreadsCommitTheAverageWhileOthersReadTheStatus) {
  Start(6, secagg::Variant::kSecAggPlus);
  // Polls until the phase's message is out (the coordinator answers retry_later before).
  auto poll = [&](Device& d, v1::SecAggPoll::Want want) {
    while (true) {
      auto response = Poll(d, want);
      if (!response.ok() || !response->has_retry_later()) return response;
      std::this_thread::yield();
    }
  };
  std::atomic<bool> done{false};
  std::thread observer([&] {
    while (!done.load()) {
      EXPECT_FALSE(coordinator_->Status(now_).phase().empty());
      EXPECT_TRUE(coordinator_->CheckIn(CheckInOf("dev-0"), now_).ok());
    }
  });
  std::vector<std::thread> threads;
  for (Device& d : devices_) {
    threads.emplace_back([&, &d = d] {
      Advertise(d);
      auto directory = poll(d, v1::SecAggPoll::KEY_DIRECTORY);
      ASSERT_TRUE(directory.ok() && directory->has_key_directory()) << directory.status();
      v1::SecAggRequest share = d.Request();
      *share.mutable_share_keys() = ShareKeysToProto(
          *d.protocol->ShareKeys(*KeyDirectoryFromProto(directory->key_directory())));
      ASSERT_TRUE(Step(d, share).ok());
      auto bundle = poll(d, v1::SecAggPoll::SHARE_BUNDLE);
      ASSERT_TRUE(bundle.ok() && bundle->has_share_bundle()) << bundle.status();
      auto encoded = secagg::EncodeWeightedUpdate(
          d.params.encoding, d.delta, std::min(d.examples, d.params.encoding.max_weight), 99);
      ASSERT_TRUE(encoded.ok());
      auto masked = d.protocol->MaskInput(ShareBundleFromProto(bundle->share_bundle()), *encoded);
      ASSERT_TRUE(masked.ok());
      ASSERT_TRUE(
          Upload(d, PackMaskedValues(masked->masked_input, d.params.config.modulus_bits)).ok());
      auto request = poll(d, v1::SecAggPoll::UNMASK_REQUEST);
      ASSERT_TRUE(request.ok() && request->has_unmask_request()) << request.status();
      v1::SecAggRequest unmask = d.Request();
      *unmask.mutable_unmask() = UnmaskResponseToProto(
          *d.protocol->Unmask(UnmaskRequestFromProto(request->unmask_request())));
      auto accepted = Step(d, unmask);
      ASSERT_TRUE(accepted.ok()) << accepted.status();
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  observer.join();
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  const std::vector<float> global = coordinator_->global_parameters();
  const std::vector<float> expected = ExpectedAverage({0, 1, 2, 3, 4, 5});
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(global[j], expected[j], 1e-5) << j;
}

}  // namespace
}  // namespace fedkit::server
