// Correctness of SecAgg and SecAgg+ end to end (in memory) under dropouts, and the protocol's
// refusals: below-threshold aborts, an honest client's unmasking rules, tampered, malformed,
// replayed and out-of-phase messages.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/in_memory_round.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/server.h"

namespace fedkit::secagg {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kLength = 24;
constexpr int kBits = 32;

// Client i's input: deterministic pseudo-random values in Z_2^bits.
std::vector<uint64_t> TestInput(int32_t client, int64_t length, int bits) {
  std::mt19937_64 rng(1000 + client);
  std::vector<uint64_t> x(length);
  for (auto& v : x) v = rng() & ModulusMask(bits);
  return x;
}

std::vector<uint64_t> ExpectedSum(const std::vector<int32_t>& included, int64_t length, int bits) {
  std::vector<uint64_t> sum(length, 0);
  for (int32_t u : included) {
    const std::vector<uint64_t> x = TestInput(u, length, bits);
    for (int64_t i = 0; i < length; ++i) sum[i] = (sum[i] + x[i]) & ModulusMask(bits);
  }
  return sum;
}

// round(rate * n) distinct clients, chosen with a fixed seed.
std::vector<int32_t> PickDropouts(int n, double rate, uint64_t seed) {
  std::vector<int32_t> all(n);
  for (int i = 0; i < n; ++i) all[i] = i;
  std::mt19937_64 rng(seed);
  for (int i = n - 1; i > 0; --i) std::swap(all[i], all[rng() % (i + 1)]);
  all.resize(static_cast<size_t>(std::lround(rate * n)));
  std::sort(all.begin(), all.end());
  return all;
}

ProtocolConfig MakeConfig(Variant variant, int n, int64_t length = kLength, int bits = kBits) {
  absl::StatusOr<ProtocolConfig> config =
      MakeProtocolConfig(variant, n, length, bits, /*dropout_rate=*/0.3, /*corrupt_fraction=*/0.05);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// ---- The grid: n x dropout rate x phase x variant ----

using GridParam = std::tuple<Variant, int, double, ClientPhase>;

class SecAggGridTest : public ::testing::TestWithParam<GridParam> {};

TEST_P(SecAggGridTest, UnmaskedSumEqualsSumOfSurvivorsInputs) {
  const auto [variant, n, rate, phase] = GetParam();
  const ProtocolConfig config = MakeConfig(variant, n);
  const std::vector<int32_t> dropped = PickDropouts(n, rate, /*seed=*/n * 31 + 7);
  std::vector<std::optional<ClientPhase>> drop_at(n);
  for (int32_t u : dropped) drop_at[u] = phase;

  absl::StatusOr<InMemoryRoundResult> result = RunInMemoryRound(
      config,
      [&](int, int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
        return TestInput(i, config.vector_length, config.modulus_bits);
      },
      drop_at);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->status.ok()) << result->status << " (n=" << n << " k=" << config.degree
                                   << " t=" << config.threshold << ")";

  // Clients that dropped before uploading are not in the sum; those that dropped while unmasking
  // uploaded, so they are.
  std::vector<int32_t> expected_included;
  for (int32_t u = 0; u < n; ++u) {
    const bool uploaded =
        !drop_at[u].has_value() ||
        static_cast<int>(*drop_at[u]) > static_cast<int>(ClientPhase::kMaskedInput);
    if (uploaded) expected_included.push_back(u);
  }
  EXPECT_EQ(result->included, expected_included);
  EXPECT_EQ(result->sum, ExpectedSum(expected_included, config.vector_length, config.modulus_bits));
}

std::string GridName(const ::testing::TestParamInfo<GridParam>& info) {
  const auto [variant, n, rate, phase] = info.param;
  return absl::StrCat(variant == Variant::kSecAgg ? "SecAgg" : "SecAggPlus", "_n", n, "_drop",
                      std::lround(rate * 100), "_", ClientPhaseName(phase));
}

std::vector<GridParam> GridCases(std::vector<int> sizes) {
  std::vector<GridParam> cases;
  for (Variant variant : {Variant::kSecAgg, Variant::kSecAggPlus}) {
    for (int n : sizes) {
      cases.emplace_back(variant, n, 0.0, ClientPhase::kAdvertiseKeys);  // no dropout
      for (double rate : {0.1, 0.3}) {
        for (int p = 0; p < kNumClientPhases; ++p) {
          cases.emplace_back(variant, n, rate, static_cast<ClientPhase>(p));
        }
      }
    }
  }
  return cases;
}

// n = 1000 with the complete graph costs ~2 million X25519 agreements per round (one to four
// minutes a case on this project's 2-core machines), so the quick suite runs SecAgg+ at n = 1000
// and SecAgg up to n = 100; the SecAgg n = 1000 grid is the same file built with
// FEDKIT_SECAGG_LONG_GRID (ctest label "long").
#ifndef FEDKIT_SECAGG_LONG_GRID
INSTANTIATE_TEST_SUITE_P(Small, SecAggGridTest, ::testing::ValuesIn(GridCases({3, 10, 100})),
                         GridName);
std::vector<GridParam> QuickThousandCases() {
  std::vector<GridParam> cases;
  for (const GridParam& c : GridCases({1000})) {
    if (std::get<0>(c) == Variant::kSecAggPlus) cases.push_back(c);
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(Thousand, SecAggGridTest, ::testing::ValuesIn(QuickThousandCases()),
                         GridName);
#else
std::vector<GridParam> LongThousandCases() {
  std::vector<GridParam> cases;
  for (const GridParam& c : GridCases({1000})) {
    if (std::get<0>(c) == Variant::kSecAgg) cases.push_back(c);
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(ThousandLong, SecAggGridTest, ::testing::ValuesIn(LongThousandCases()),
                         GridName);
#endif

#ifndef FEDKIT_SECAGG_LONG_GRID
TEST(SecAggPlusTest, ThousandClientsUseASparseGraph) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAggPlus, 1000);
  EXPECT_LT(config.degree, 200);  // logarithmic-ish, far below n - 1 = 999
  EXPECT_GE(config.degree, 2);
  EXPECT_LE(config.threshold, config.degree + 1);
}

TEST(SecAggTest, SixtyFourBitModulusAndLongVectors) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAggPlus, 20, /*length=*/10007, 64);
  std::vector<std::optional<ClientPhase>> drop_at(20);
  drop_at[3] = ClientPhase::kMaskedInput;
  absl::StatusOr<InMemoryRoundResult> result = RunInMemoryRound(
      config,
      [&](int, int32_t i) -> absl::StatusOr<std::vector<uint64_t>> {
        return TestInput(i, config.vector_length, 64);
      },
      drop_at);
  ASSERT_TRUE(result.ok() && result->status.ok());
  EXPECT_EQ(result->sum, ExpectedSum(result->included, config.vector_length, 64));
}

// ---- Below threshold: abort, nothing revealed ----

// Drives a round by hand so tests can interfere between phases.
class Round {
 public:
  explicit Round(const ProtocolConfig& config) : config_(config) {
    server_ = *SecAggServer::Create(config);
    for (int32_t i = 0; i < config.num_clients; ++i) {
      clients_.push_back(*SecAggClient::Create(config, i));
    }
  }
  SecAggServer& server() { return *server_; }
  SecAggClient& client(int32_t i) { return *clients_[i]; }
  const ProtocolConfig& config() const { return config_; }

  // Runs phases up to and including `last`, skipping `silent` clients in phases >= silent_from.
  absl::Status RunThrough(ClientPhase last, const std::vector<int32_t>& silent = {},
                          ClientPhase silent_from = ClientPhase::kAdvertiseKeys) {
    auto speaks = [&](int32_t i, ClientPhase p) {
      return static_cast<int>(p) < static_cast<int>(silent_from) ||
             std::find(silent.begin(), silent.end(), i) == silent.end();
    };
    const int n = config_.num_clients;
    for (int32_t i = 0; i < n; ++i) {
      if (!speaks(i, ClientPhase::kAdvertiseKeys)) continue;
      FEDKIT_RETURN_IF_ERROR(server_->HandleAdvertiseKeys(*clients_[i]->AdvertiseKeys()));
    }
    FEDKIT_RETURN_IF_ERROR(server_->CloseAdvertiseKeys());
    if (last == ClientPhase::kAdvertiseKeys) return absl::OkStatus();
    for (int32_t i = 0; i < n; ++i) {
      if (!speaks(i, ClientPhase::kShareKeys) ||
          clients_[i]->phase() != SecAggClient::Phase::kShareKeys)
        continue;
      FEDKIT_RETURN_IF_ERROR(
          server_->HandleShareKeys(*clients_[i]->ShareKeys(*server_->KeyDirectoryFor(i))));
    }
    FEDKIT_RETURN_IF_ERROR(server_->CloseShareKeys());
    if (last == ClientPhase::kShareKeys) return absl::OkStatus();
    for (int32_t i = 0; i < n; ++i) {
      if (!speaks(i, ClientPhase::kMaskedInput) ||
          clients_[i]->phase() != SecAggClient::Phase::kMaskInput)
        continue;
      FEDKIT_RETURN_IF_ERROR(server_->HandleMaskedInput(*clients_[i]->MaskInput(
          *server_->ShareBundleFor(i), TestInput(i, config_.vector_length, config_.modulus_bits))));
    }
    FEDKIT_RETURN_IF_ERROR(server_->CloseMaskedInput());
    if (last == ClientPhase::kMaskedInput) return absl::OkStatus();
    for (int32_t i = 0; i < n; ++i) {
      if (!speaks(i, ClientPhase::kUnmask) || clients_[i]->phase() != SecAggClient::Phase::kUnmask)
        continue;
      FEDKIT_RETURN_IF_ERROR(
          server_->HandleUnmaskResponse(*clients_[i]->Unmask(*server_->UnmaskRequestFor(i))));
    }
    return absl::OkStatus();
  }

 private:
  ProtocolConfig config_;
  std::unique_ptr<SecAggServer> server_;
  std::vector<std::unique_ptr<SecAggClient>> clients_;
};

class BelowThresholdTest : public ::testing::TestWithParam<ClientPhase> {};

// n = 10 with SecAgg: t = 6, so 5 silent clients leave too few at whichever phase they stop.
TEST_P(BelowThresholdTest, AbortsAndHoldsOnlyMaskedVectors) {
  const ClientPhase phase = GetParam();
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 10);
  ASSERT_EQ(config.threshold, 6);
  Round round(config);
  const std::vector<int32_t> silent = {0, 2, 4, 6, 8};
  absl::Status status = round.RunThrough(ClientPhase::kUnmask, silent, phase);
  if (phase == ClientPhase::kUnmask) {
    ASSERT_TRUE(status.ok()) << status;
    status = round.server().Finish().status();
  }
  EXPECT_TRUE(absl::IsAborted(status)) << status;
  EXPECT_EQ(round.server().phase(), SecAggServer::Phase::kAborted);
  EXPECT_THAT(round.server().abort_status().message(), HasSubstr("threshold"));
  // No secret can be rebuilt: fewer than t shares of anything were ever revealed, and after the
  // abort the server dropped even those.
  for (int32_t u = 0; u < 10; ++u) {
    EXPECT_EQ(round.server().RevealedShareCount(u, ShareKind::kSelfMaskSeed), 0);
    EXPECT_EQ(round.server().RevealedShareCount(u, ShareKind::kMaskingKey), 0);
  }
  // Nothing but a masked sum, which differs from the true sum almost everywhere.
  if (static_cast<int>(phase) >= static_cast<int>(ClientPhase::kUnmask)) {
    const std::vector<uint64_t>& masked = round.server().masked_sum();
    const std::vector<uint64_t> truth =
        ExpectedSum({1, 3, 5, 7, 9, 0, 2, 4, 6, 8}, config.vector_length, config.modulus_bits);
    int equal = 0;
    for (int64_t i = 0; i < config.vector_length; ++i) equal += masked[i] == truth[i] ? 1 : 0;
    EXPECT_LE(equal, 1);
  }
  EXPECT_FALSE(round.server().Finish().ok());
}

INSTANTIATE_TEST_SUITE_P(EachPhase, BelowThresholdTest,
                         ::testing::Values(ClientPhase::kAdvertiseKeys, ClientPhase::kShareKeys,
                                           ClientPhase::kMaskedInput, ClientPhase::kUnmask),
                         [](const auto& info) { return std::string(ClientPhaseName(info.param)); });

TEST(SecAggServerTest, UnmaskingWithFewerThanThresholdResponsesRevealsLessThanThreshold) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 10);
  Round round(config);
  ASSERT_TRUE(round.RunThrough(ClientPhase::kMaskedInput).ok());
  for (int32_t i = 0; i < config.threshold - 1; ++i) {
    ASSERT_TRUE(
        round.server()
            .HandleUnmaskResponse(*round.client(i).Unmask(*round.server().UnmaskRequestFor(i)))
            .ok());
  }
  for (int32_t u = 0; u < 10; ++u) {
    EXPECT_LT(round.server().RevealedShareCount(u, ShareKind::kSelfMaskSeed), config.threshold);
  }
  EXPECT_TRUE(absl::IsAborted(round.server().Finish().status()));
}

// ---- An honest client's unmasking rules ----

class HonestClientTest : public ::testing::Test {
 protected:
  HonestClientTest() : round_(MakeConfig(Variant::kSecAgg, 5)) {
    EXPECT_TRUE(round_.RunThrough(ClientPhase::kMaskedInput).ok());
  }
  Round round_;
};

TEST_F(HonestClientTest, RefusesToRevealBothSharesOfOnePeer) {
  UnmaskRequest request = *round_.server().UnmaskRequestFor(0);
  ASSERT_THAT(request.survivors, ::testing::Contains(1));
  request.dropped.push_back(1);  // 1 is also listed as a survivor
  absl::StatusOr<UnmaskResponse> response = round_.client(0).Unmask(request);
  EXPECT_TRUE(absl::IsInvalidArgument(response.status())) << response.status();
  EXPECT_THAT(response.status().message(), HasSubstr("both"));
  EXPECT_EQ(round_.client(0).phase(), SecAggClient::Phase::kAborted);
  // Aborted: it answers nothing afterwards, not even a valid request.
  EXPECT_FALSE(round_.client(0).Unmask(*round_.server().UnmaskRequestFor(0)).ok());
}

TEST_F(HonestClientTest, AnswersOnlyOneUnmaskingRequest) {
  UnmaskRequest first = *round_.server().UnmaskRequestFor(0);
  ASSERT_TRUE(round_.client(0).Unmask(first).ok());
  // A second request claiming peer 1 dropped would reveal its masking key after its mask seed.
  UnmaskRequest second = first;
  second.survivors.erase(std::find(second.survivors.begin(), second.survivors.end(), 1));
  second.dropped.push_back(1);
  absl::StatusOr<UnmaskResponse> response = round_.client(0).Unmask(second);
  EXPECT_TRUE(absl::IsFailedPrecondition(response.status())) << response.status();
  EXPECT_THAT(response.status().message(), HasSubstr("already answered"));
}

TEST_F(HonestClientTest, RefusesWhenTooFewSurvive) {
  // A server claiming everyone else dropped would get every other key and this client's seed.
  UnmaskRequest request;
  request.survivors = {0};
  request.dropped = {1, 2, 3, 4};
  absl::StatusOr<UnmaskResponse> response = round_.client(0).Unmask(request);
  EXPECT_TRUE(absl::IsFailedPrecondition(response.status())) << response.status();
  EXPECT_THAT(response.status().message(), HasSubstr("threshold"));
}

TEST_F(HonestClientTest, RefusesWhenListedAsDropped) {
  UnmaskRequest request = *round_.server().UnmaskRequestFor(1);
  request.survivors.erase(std::find(request.survivors.begin(), request.survivors.end(), 1));
  request.dropped.push_back(1);
  EXPECT_FALSE(round_.client(1).Unmask(request).ok());
}

// ---- Tampered, malformed, replayed and out-of-phase messages ----

struct SharedRound {
  explicit SharedRound(int n) : round(MakeConfig(Variant::kSecAgg, n)) {
    EXPECT_TRUE(round.RunThrough(ClientPhase::kShareKeys).ok());
  }
  Round round;
};

// A bad ciphertext is its sender's doing (the server relays): the recipient reports the sender
// and goes on (malicious_client_test.cc has the rest of the round).
TEST(SecAggTamperingTest, TamperedShareCiphertextIsReportedNotOpened) {
  SharedRound shared(4);
  ShareBundle bundle = *shared.round.server().ShareBundleFor(0);
  ASSERT_FALSE(bundle.shares.empty());
  bundle.shares[0].ciphertext[20] ^= 0x01;
  absl::StatusOr<MaskedInputMessage> masked =
      shared.round.client(0).MaskInput(bundle, TestInput(0, kLength, kBits));
  ASSERT_TRUE(masked.ok()) << masked.status();
  EXPECT_EQ(masked->bad_share_senders, std::vector<int32_t>{bundle.shares[0].sender});
  EXPECT_EQ(shared.round.client(0).phase(), SecAggClient::Phase::kUnmask);
}

TEST(SecAggTamperingTest, ShareRedirectedToAnotherRecipientIsReported) {
  SharedRound shared(4);
  ShareBundle bundle = *shared.round.server().ShareBundleFor(0);
  ShareBundle for_one = *shared.round.server().ShareBundleFor(1);
  // Client 1's share from client 2, relabelled as addressed to client 0.
  for (EncryptedShare& share : for_one.shares) {
    if (share.sender != 2) continue;
    for (EncryptedShare& mine : bundle.shares) {
      if (mine.sender == 2) mine.ciphertext = share.ciphertext;
    }
  }
  absl::StatusOr<MaskedInputMessage> masked =
      shared.round.client(0).MaskInput(bundle, TestInput(0, kLength, kBits));
  ASSERT_TRUE(masked.ok()) << masked.status();
  EXPECT_EQ(masked->bad_share_senders, std::vector<int32_t>{2});
}

TEST(SecAggTamperingTest, CiphertextFromAnotherRoundIsReported) {
  // Same clients' state would be fresh every round; a ciphertext recorded from round A and
  // replayed in round B does not authenticate under B's session id and keys.
  SharedRound round_a(3);
  ShareBundle old_bundle = *round_a.round.server().ShareBundleFor(0);
  SharedRound round_b(3);
  absl::StatusOr<MaskedInputMessage> masked =
      round_b.round.client(0).MaskInput(old_bundle, TestInput(0, kLength, kBits));
  ASSERT_TRUE(masked.ok()) << masked.status();
  EXPECT_EQ(masked->bad_share_senders, (std::vector<int32_t>{1, 2}));
}

TEST(SecAggTamperingTest, BundleOnlyTheServerCouldGetWrongAborts) {
  SharedRound shared(4);
  ShareBundle bundle = *shared.round.server().ShareBundleFor(0);
  ASSERT_GE(bundle.shares.size(), 2u);
  bundle.shares[1].sender = bundle.shares[0].sender;  // two from one sender
  EXPECT_FALSE(shared.round.client(0).MaskInput(bundle, TestInput(0, kLength, kBits)).ok());
  EXPECT_EQ(shared.round.client(0).phase(), SecAggClient::Phase::kAborted);
}

TEST(SecAggTamperingTest, ServerRejectsWrongLengthAndOutOfRangeVectors) {
  SharedRound shared(4);
  SecAggServer& server = shared.round.server();
  MaskedInputMessage too_long{0, std::vector<uint64_t>(kLength + 1, 0)};
  absl::Status status = server.HandleMaskedInput(too_long);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("expected 24"));
  MaskedInputMessage too_short{0, std::vector<uint64_t>(kLength - 1, 0)};
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleMaskedInput(too_short)));
  MaskedInputMessage out_of_range{0, std::vector<uint64_t>(kLength, 0)};
  out_of_range.masked_input[3] = uint64_t{1} << kBits;
  status = server.HandleMaskedInput(out_of_range);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("outside"));
  // None of these counted: client 0 can still send its real input.
  EXPECT_TRUE(server
                  .HandleMaskedInput(*shared.round.client(0).MaskInput(
                      *server.ShareBundleFor(0), TestInput(0, kLength, kBits)))
                  .ok());
}

TEST(SecAggTamperingTest, ClientRejectsWrongLengthInput) {
  SharedRound shared(3);
  absl::StatusOr<MaskedInputMessage> masked = shared.round.client(0).MaskInput(
      *shared.round.server().ShareBundleFor(0), std::vector<uint64_t>(kLength + 2, 0));
  EXPECT_TRUE(absl::IsInvalidArgument(masked.status()));
}

TEST(SecAggReplayTest, ReplayedMessagesAreRejectedAndChangeNothing) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 4);
  Round round(config);
  SecAggServer& server = round.server();
  std::vector<AdvertiseKeysMessage> adverts;
  for (int32_t i = 0; i < 4; ++i) adverts.push_back(*round.client(i).AdvertiseKeys());
  for (const auto& m : adverts) ASSERT_TRUE(server.HandleAdvertiseKeys(m).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(server.HandleAdvertiseKeys(adverts[1])));
  // Another client reusing client 1's keys.
  AdvertiseKeysMessage copied = adverts[1];
  copied.sender = 3;
  EXPECT_FALSE(server.HandleAdvertiseKeys(copied).ok());
  ASSERT_TRUE(server.CloseAdvertiseKeys().ok());
  // Out of phase: keys after the phase closed.
  absl::Status status = server.HandleAdvertiseKeys(adverts[0]);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("phase"));

  std::vector<ShareKeysMessage> shares;
  for (int32_t i = 0; i < 4; ++i) {
    shares.push_back(*round.client(i).ShareKeys(*server.KeyDirectoryFor(i)));
  }
  // Client side: a second directory is out of phase.
  EXPECT_TRUE(
      absl::IsFailedPrecondition(round.client(0).ShareKeys(*server.KeyDirectoryFor(0)).status()));
  // Masked input before share collection closed.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      server.HandleMaskedInput(MaskedInputMessage{0, std::vector<uint64_t>(kLength, 0)})));
  for (const auto& m : shares) ASSERT_TRUE(server.HandleShareKeys(m).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(server.HandleShareKeys(shares[2])));
  ASSERT_TRUE(server.CloseShareKeys().ok());

  std::vector<MaskedInputMessage> masked;
  for (int32_t i = 0; i < 4; ++i) {
    masked.push_back(
        *round.client(i).MaskInput(*server.ShareBundleFor(i), TestInput(i, kLength, kBits)));
    ASSERT_TRUE(server.HandleMaskedInput(masked.back()).ok());
  }
  EXPECT_TRUE(absl::IsAlreadyExists(server.HandleMaskedInput(masked[0])));
  ASSERT_TRUE(server.CloseMaskedInput().ok());
  std::vector<UnmaskResponse> responses;
  for (int32_t i = 0; i < 4; ++i) {
    responses.push_back(*round.client(i).Unmask(*server.UnmaskRequestFor(i)));
    ASSERT_TRUE(server.HandleUnmaskResponse(responses.back()).ok());
  }
  EXPECT_TRUE(absl::IsAlreadyExists(server.HandleUnmaskResponse(responses[3])));
  absl::StatusOr<std::vector<uint64_t>> sum = server.Finish();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, ExpectedSum({0, 1, 2, 3}, kLength, kBits));  // the replays counted nothing
  EXPECT_TRUE(absl::IsFailedPrecondition(server.HandleUnmaskResponse(responses[0])));
}

TEST(SecAggServerTest, RejectsMalformedShareMessages) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 4);
  Round round(config);
  ASSERT_TRUE(round.RunThrough(ClientPhase::kAdvertiseKeys).ok());
  SecAggServer& server = round.server();
  const ShareKeysMessage good = *round.client(0).ShareKeys(*server.KeyDirectoryFor(0));

  ShareKeysMessage missing = good;
  missing.shares.pop_back();
  EXPECT_THAT(server.HandleShareKeys(missing).message(), HasSubstr("expected 3"));
  ShareKeysMessage duplicated = good;
  duplicated.shares[1] = duplicated.shares[0];
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleShareKeys(duplicated)));
  ShareKeysMessage forged = good;
  forged.shares[0].sender = 2;
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleShareKeys(forged)));
  ShareKeysMessage truncated = good;
  truncated.shares[0].ciphertext.pop_back();
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleShareKeys(truncated)));
  ShareKeysMessage stranger = good;
  stranger.sender = 9;
  EXPECT_TRUE(absl::IsFailedPrecondition(server.HandleShareKeys(stranger)));
  EXPECT_TRUE(server.HandleShareKeys(good).ok());  // none of the bad ones counted
}

TEST(SecAggServerTest, RejectsUnmaskResponsesThatDoNotAnswerTheRequest) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 5);
  Round round(config);
  std::vector<int32_t> silent = {4};
  ASSERT_TRUE(round.RunThrough(ClientPhase::kMaskedInput, silent, ClientPhase::kMaskedInput).ok());
  SecAggServer& server = round.server();
  const UnmaskResponse good = *round.client(0).Unmask(*server.UnmaskRequestFor(0));
  UnmaskResponse wrong_kind = good;
  for (auto& share : wrong_kind.shares) {
    if (share.owner == 4) share.kind = ShareKind::kSelfMaskSeed;  // 4 dropped: key share expected
  }
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleUnmaskResponse(wrong_kind)));
  UnmaskResponse wrong_point = good;
  wrong_point.shares[0].share.x += 1;
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleUnmaskResponse(wrong_point)));
  UnmaskResponse short_one = good;
  short_one.shares.pop_back();
  EXPECT_TRUE(absl::IsInvalidArgument(server.HandleUnmaskResponse(short_one)));
  EXPECT_TRUE(absl::IsFailedPrecondition(
      server.HandleUnmaskResponse(UnmaskResponse{4, good.shares})));  // 4 never uploaded
  EXPECT_TRUE(server.HandleUnmaskResponse(good).ok());
}

TEST(SecAggClientTest, RejectsADirectoryWithSubstitutedOwnKeysOrStrangers) {
  const ProtocolConfig config = MakeConfig(Variant::kSecAgg, 4);
  {
    Round round(config);
    ASSERT_TRUE(round.RunThrough(ClientPhase::kAdvertiseKeys).ok());
    KeyDirectory directory = *round.server().KeyDirectoryFor(0);
    directory.peers[0].masking_public_key[0] ^= 1;  // entry 0 is client 0 itself
    EXPECT_THAT(round.client(0).ShareKeys(directory).status().message(),
                HasSubstr("differ from those advertised"));
  }
  {
    Round round(config);
    ASSERT_TRUE(round.RunThrough(ClientPhase::kAdvertiseKeys).ok());
    KeyDirectory directory = *round.server().KeyDirectoryFor(0);
    directory.peers[1].masking_public_key = directory.peers[2].masking_public_key;
    EXPECT_THAT(round.client(0).ShareKeys(directory).status().message(), HasSubstr("not distinct"));
  }
  {
    Round round(config);
    ASSERT_TRUE(round.RunThrough(ClientPhase::kAdvertiseKeys).ok());
    KeyDirectory directory = *round.server().KeyDirectoryFor(0);
    directory.peers.resize(1);  // only itself: 1 holder < t = 3
    EXPECT_THAT(round.client(0).ShareKeys(directory).status().message(), HasSubstr("threshold"));
  }
}

TEST(SecAggConfigTest, ValidatesThresholdAgainstN) {
  ProtocolConfig config = MakeConfig(Variant::kSecAgg, 10);
  config.threshold = 5;  // not > n/2
  EXPECT_THAT(ValidateProtocolConfig(config).message(), HasSubstr("exceed n/2"));
  config.threshold = 11;
  EXPECT_FALSE(ValidateProtocolConfig(config).ok());
  config = MakeConfig(Variant::kSecAgg, 10);
  config.degree = 4;
  EXPECT_FALSE(ValidateProtocolConfig(config).ok());
  EXPECT_FALSE(MakeProtocolConfig(Variant::kSecAgg, 1, 10, 32, 0.1, 0.0).ok());
  EXPECT_FALSE(ParseVariant("secagg++").ok());
}

#endif  // FEDKIT_SECAGG_LONG_GRID

}  // namespace
}  // namespace fedkit::secagg
