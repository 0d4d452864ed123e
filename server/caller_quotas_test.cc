// Per-identity check-in rate, client id cap and stream slots (server/caller_quotas.h).
#include "server/caller_quotas.h"

#include "core/retry_after.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(CallerQuotasTest, CheckInsBeyondTheRateAreRefusedWithAHint) {
  CallerQuotas quotas({.max_ids_per_identity = 0, .check_ins_per_second = 2, .check_in_burst = 3});
  const TokenAuthenticator::Token token = TokenAuthenticator::MakeToken("t", "phone-1");
  const Caller caller(std::nullopt, &token);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(quotas.AdmitCheckIn(caller, "phone-1", kStart, nullptr).ok());
  std::string reason;
  const absl::Status refused = quotas.AdmitCheckIn(caller, "phone-1", kStart, &reason);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(reason, "rate_limited");
  ASSERT_TRUE(RetryAfterOf(refused).has_value());
  EXPECT_EQ(*RetryAfterOf(refused), absl::Milliseconds(500));  // one token at 2 per second
  EXPECT_TRUE(
      quotas.AdmitCheckIn(caller, "phone-1", kStart + absl::Milliseconds(500), nullptr).ok());
  // Another identity has its own bucket.
  const Caller other("alice", nullptr);
  EXPECT_TRUE(quotas.AdmitCheckIn(other, "alice", kStart, nullptr).ok());
}

TEST(CallerQuotasTest, AnOpenEndedTokenUsesAtMostTheCapOfIdsUntilTheyExpire) {
  CallerQuotas quotas(
      {.max_ids_per_identity = 3, .check_ins_per_second = 0, .id_ttl = absl::Seconds(60)});
  const TokenAuthenticator::Token fleet = TokenAuthenticator::MakeToken("f", "fleet-*");
  const Caller caller(std::nullopt, &fleet);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(quotas.AdmitCheckIn(caller, "fleet-" + std::to_string(i), kStart, nullptr).ok());
  }
  std::string reason;
  const absl::Status refused = quotas.AdmitCheckIn(caller, "fleet-3", kStart, &reason);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(reason, "ids_per_identity");
  EXPECT_EQ(*RetryAfterOf(refused), absl::Seconds(60));
  // Ids already in use go on checking in; after the ttl the old ids free their places.
  EXPECT_TRUE(quotas.AdmitCheckIn(caller, "fleet-0", kStart + absl::Seconds(30), nullptr).ok());
  EXPECT_TRUE(quotas.AdmitCheckIn(caller, "fleet-3", kStart + absl::Seconds(61), nullptr).ok());
  EXPECT_TRUE(quotas.AdmitCheckIn(caller, "fleet-4", kStart + absl::Seconds(61), nullptr).ok());
  EXPECT_FALSE(quotas.AdmitCheckIn(caller, "fleet-5", kStart + absl::Seconds(61), nullptr).ok());
  // A token for one id, and anonymous callers, are not capped here.
  const TokenAuthenticator::Token one = TokenAuthenticator::MakeToken("o", "phone-1");
  EXPECT_TRUE(quotas.AdmitCheckIn(Caller(std::nullopt, &one), "phone-1", kStart, nullptr).ok());
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(quotas
                    .AdmitCheckIn(Caller(std::nullopt, nullptr), "any-" + std::to_string(i), kStart,
                                  nullptr)
                    .ok());
  }
}

TEST(CallerQuotasTest, StreamSlotsPerIdentityAreReleasedWhenDropped) {
  CallerQuotas quotas({.max_streams_per_identity = 2});
  const Caller alice("alice", nullptr);
  absl::StatusOr<CallerQuotas::StreamSlot> a = quotas.OpenStream(alice);
  absl::StatusOr<CallerQuotas::StreamSlot> b = quotas.OpenStream(alice);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(quotas.OpenStream(alice).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(quotas.OpenStream(Caller("bob", nullptr)).ok());
  a = absl::UnavailableError("dropped");  // releases the slot
  EXPECT_TRUE(quotas.OpenStream(alice).ok());
}

TEST(CallerQuotasTest, IdleIdentitiesAreForgotten) {
  CallerQuotas quotas({.id_ttl = absl::Seconds(10)});
  for (int i = 0; i < 100; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    ASSERT_TRUE(quotas.AdmitCheckIn(Caller(id, nullptr), id, kStart, nullptr).ok());
  }
  EXPECT_EQ(quotas.tracked_identities(), 100);
  ASSERT_TRUE(
      quotas.AdmitCheckIn(Caller("late", nullptr), "late", kStart + absl::Seconds(11), nullptr)
          .ok());
  EXPECT_EQ(quotas.tracked_identities(), 1);
}

}  // namespace
}  // namespace fedkit::server
