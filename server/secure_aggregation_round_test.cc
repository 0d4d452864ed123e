// SecureAggregationRound on its own, driven by real SecAggClient state machines through the wire
// messages: the unmask phase's close only marks the round ready, and Finish() (which the
// coordinator runs outside its lock) reconstructs the sum.
#include "server/secure_aggregation_round.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/encoding.h"
#include "proto/secagg_conversion.h"

namespace fedkit::server {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(4'000'000);

v1::SecAggRequest Poll(v1::SecAggPoll::Want want) {
  v1::SecAggRequest r;
  r.mutable_poll()->set_want(want);
  return r;
}

TEST(SecureAggregationRoundTest, UnmaskingIsASeparateFinishAndTheRoundRefusesMessagesBeforeIt) {
  SecureAggregationSettings settings;
  settings.variant = secagg::Variant::kSecAgg;
  SecAggInputEncoding encoding;
  encoding.fixed_point = *secagg::ChooseEncoding(32, 3, /*clip_norm=*/1.0, /*max_weight=*/100);
  const std::vector<std::string> ids = {"a", "b", "c"};
  auto round = SecureAggregationRound::Start(settings, encoding, /*vector_length=*/3, ids, kNow,
                                             absl::Seconds(60));
  ASSERT_TRUE(round.ok()) << round.status();
  SecureAggregationRound& r = **round;
  std::vector<std::unique_ptr<secagg::SecAggClient>> clients;
  std::vector<SecAggAssignment> params;
  for (const std::string& id : ids) {
    auto p = SecAggParamsFromProto(*r.ParamsFor(id));
    ASSERT_TRUE(p.ok()) << p.status();
    params.push_back(*p);
    clients.push_back(*secagg::SecAggClient::Create(p->config, p->client_index));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::SecAggRequest advertise;
    *advertise.mutable_advertise_keys() = AdvertiseKeysToProto(*clients[i]->AdvertiseKeys());
    ASSERT_TRUE(r.Handle(ids[i], advertise, kNow).ok());
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    auto directory = r.Handle(ids[i], Poll(v1::SecAggPoll::KEY_DIRECTORY), kNow);
    ASSERT_TRUE(directory.ok() && directory->has_key_directory());
    v1::SecAggRequest share;
    *share.mutable_share_keys() = ShareKeysToProto(
        *clients[i]->ShareKeys(*KeyDirectoryFromProto(directory->key_directory())));
    ASSERT_TRUE(r.Handle(ids[i], share, kNow).ok());
  }
  // Client i sends delta (0.1 i, -0.2) with weight 10 + i.
  for (size_t i = 0; i < ids.size(); ++i) {
    auto bundle = r.Handle(ids[i], Poll(v1::SecAggPoll::SHARE_BUNDLE), kNow);
    ASSERT_TRUE(bundle.ok() && bundle->has_share_bundle());
    const std::vector<float> delta = {0.1f * static_cast<float>(i), -0.2f};
    auto encoded =
        secagg::EncodeWeightedUpdate(params[i].encoding, delta, 10 + static_cast<int64_t>(i), 5);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    auto masked = clients[i]->MaskInput(ShareBundleFromProto(bundle->share_bundle()), *encoded);
    ASSERT_TRUE(masked.ok()) << masked.status();
    ASSERT_TRUE(
        r.HandleMaskedInput(
             ids[i], PackMaskedValues(masked->masked_input, params[i].config.modulus_bits), 0.5)
            .ok());
  }
  std::string late_packed;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto request = r.Handle(ids[i], Poll(v1::SecAggPoll::UNMASK_REQUEST), kNow);
    ASSERT_TRUE(request.ok() && request->has_unmask_request());
    v1::SecAggRequest unmask;
    *unmask.mutable_unmask() = UnmaskResponseToProto(
        *clients[i]->Unmask(UnmaskRequestFromProto(request->unmask_request())));
    ASSERT_TRUE(r.Handle(ids[i], unmask, kNow).ok());
  }
  // Every response is in: ready, but nothing is reconstructed until Finish.
  EXPECT_EQ(r.Advance(kNow), SecureAggregationRound::State::kReadyToFinish);
  EXPECT_TRUE(r.sum().empty());
  EXPECT_EQ(r.included(), 0);
  auto poll = r.Handle("a", Poll(v1::SecAggPoll::UNMASK_REQUEST), kNow);
  ASSERT_TRUE(poll.ok());
  EXPECT_TRUE(poll->has_retry_later());
  EXPECT_EQ(r.HandleMaskedInput("b", "x", 0.5).status().code(),
            absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(r.Finish(), SecureAggregationRound::State::kSucceeded);
  EXPECT_EQ(r.Finish(), SecureAggregationRound::State::kSucceeded);  // once only
  EXPECT_EQ(r.included(), 3);
  EXPECT_EQ(r.included_clients(), ids);
  auto decoded = secagg::DecodeSum(encoding.fixed_point, r.sum());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->total_weight, 10 + 11 + 12);
  const std::vector<float> average = decoded->Average();
  EXPECT_NEAR(average[0], (0.0 * 10 + 0.1 * 11 + 0.2 * 12) / 33, 1e-6);
  EXPECT_NEAR(average[1], -0.2, 1e-6);
}

// A client that withdraws (its device declined the assignment, e.g. no longer eligible) after the
// key exchange is not waited for: the masked-input phase closes as soon as the others' inputs are
// in, with no time passing, and the sum is theirs.
TEST(SecureAggregationRoundTest, AWithdrawnClientIsNotWaitedFor) {
  SecureAggregationSettings settings;
  settings.variant = secagg::Variant::kSecAgg;
  SecAggInputEncoding encoding;
  encoding.fixed_point = *secagg::ChooseEncoding(32, 3, /*clip_norm=*/1.0, /*max_weight=*/100);
  const std::vector<std::string> ids = {"a", "b", "c"};
  auto round = SecureAggregationRound::Start(settings, encoding, /*vector_length=*/3, ids, kNow,
                                             absl::Hours(1));
  ASSERT_TRUE(round.ok()) << round.status();
  SecureAggregationRound& r = **round;
  std::vector<std::unique_ptr<secagg::SecAggClient>> clients;
  std::vector<SecAggAssignment> params;
  for (const std::string& id : ids) {
    auto p = SecAggParamsFromProto(*r.ParamsFor(id));
    ASSERT_TRUE(p.ok()) << p.status();
    params.push_back(*p);
    clients.push_back(*secagg::SecAggClient::Create(p->config, p->client_index));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::SecAggRequest advertise;
    *advertise.mutable_advertise_keys() = AdvertiseKeysToProto(*clients[i]->AdvertiseKeys());
    ASSERT_TRUE(r.Handle(ids[i], advertise, kNow).ok());
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    auto directory = r.Handle(ids[i], Poll(v1::SecAggPoll::KEY_DIRECTORY), kNow);
    ASSERT_TRUE(directory.ok() && directory->has_key_directory());
    v1::SecAggRequest share;
    *share.mutable_share_keys() = ShareKeysToProto(
        *clients[i]->ShareKeys(*KeyDirectoryFromProto(directory->key_directory())));
    ASSERT_TRUE(r.Handle(ids[i], share, kNow).ok());
  }
  for (size_t i = 0; i < 2; ++i) {  // a and b; c is training when its device is unplugged
    auto bundle = r.Handle(ids[i], Poll(v1::SecAggPoll::SHARE_BUNDLE), kNow);
    ASSERT_TRUE(bundle.ok() && bundle->has_share_bundle());
    const std::vector<float> delta = {0.1f * static_cast<float>(i + 1), -0.2f};
    auto encoded =
        secagg::EncodeWeightedUpdate(params[i].encoding, delta, 10 + static_cast<int64_t>(i), 5);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    auto masked = clients[i]->MaskInput(ShareBundleFromProto(bundle->share_bundle()), *encoded);
    ASSERT_TRUE(masked.ok()) << masked.status();
    ASSERT_TRUE(
        r.HandleMaskedInput(
             ids[i], PackMaskedValues(masked->masked_input, params[i].config.modulus_bits), 0.5)
            .ok());
  }
  r.Advance(kNow);
  EXPECT_EQ(r.phase_name(), "secagg-upload");  // without the withdrawal: until the deadline
  r.Withdraw("c");
  r.Withdraw("nobody");  // ignored
  r.Advance(kNow);
  EXPECT_EQ(r.phase_name(), "secagg-unmask");
  for (size_t i = 0; i < 2; ++i) {
    auto request = r.Handle(ids[i], Poll(v1::SecAggPoll::UNMASK_REQUEST), kNow);
    ASSERT_TRUE(request.ok() && request->has_unmask_request());
    v1::SecAggRequest unmask;
    *unmask.mutable_unmask() = UnmaskResponseToProto(
        *clients[i]->Unmask(UnmaskRequestFromProto(request->unmask_request())));
    ASSERT_TRUE(r.Handle(ids[i], unmask, kNow).ok());
  }
  EXPECT_EQ(r.Advance(kNow), SecureAggregationRound::State::kReadyToFinish);
  EXPECT_EQ(r.Finish(), SecureAggregationRound::State::kSucceeded);
  EXPECT_EQ(r.included_clients(), (std::vector<std::string>{"a", "b"}));
  auto decoded = secagg::DecodeSum(encoding.fixed_point, r.sum());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->total_weight, 10 + 11);
}

}  // namespace
}  // namespace fedkit::server
