// Secure aggregation against malicious clients (privacy/secagg/protocol.h): a wrong revealed share
// is detected by the owner's commitment and attributed, a bad share ciphertext excludes its sender
// instead of aborting its recipient, and in each case the sum is that of the clients included.
#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/secagg/client.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/server.h"

namespace fedkit::secagg {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Reason = SecAggCulprit::Reason;

constexpr int64_t kLength = 16;
constexpr int kBits = 32;

std::vector<uint64_t> Input(int32_t client) {
  std::mt19937_64 rng(7000 + client);
  std::vector<uint64_t> x(kLength);
  for (auto& v : x) v = rng() & ModulusMask(kBits);
  return x;
}

std::vector<uint64_t> SumOf(const std::vector<int32_t>& clients) {
  std::vector<uint64_t> sum(kLength, 0);
  for (int32_t u : clients) {
    const std::vector<uint64_t> x = Input(u);
    for (int64_t i = 0; i < kLength; ++i) sum[i] = (sum[i] + x[i]) & ModulusMask(kBits);
  }
  return sum;
}

ProtocolConfig Config(Variant variant, int n) {
  absl::StatusOr<ProtocolConfig> config = MakeProtocolConfig(variant, n, kLength, kBits, 0.3, 0.05);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// A round driven by hand, with a hook to alter any client's message before the server sees it.
struct Attacks {
  std::function<void(ShareKeysMessage&)> share_keys = [](ShareKeysMessage&) {};
  std::function<void(UnmaskResponse&)> unmask = [](UnmaskResponse&) {};
};

class Round {
 public:
  Round(const ProtocolConfig& config) : config_(config), attacks_(config.num_clients) {
    server_ = *SecAggServer::Create(config);
    for (int32_t i = 0; i < config.num_clients; ++i) {
      clients_.push_back(*SecAggClient::Create(config, i));
    }
  }
  SecAggServer& server() { return *server_; }
  Attacks& attacks(int32_t i) { return attacks_[i]; }

  // Advertise and share keys for everyone, then close the share-keys phase.
  void ShareKeys() {
    const int n = config_.num_clients;
    for (int32_t i = 0; i < n; ++i) {
      ASSERT_TRUE(server_->HandleAdvertiseKeys(*clients_[i]->AdvertiseKeys()).ok());
    }
    ASSERT_TRUE(server_->CloseAdvertiseKeys().ok());
    for (int32_t i = 0; i < n; ++i) {
      absl::StatusOr<ShareKeysMessage> m = clients_[i]->ShareKeys(*server_->KeyDirectoryFor(i));
      ASSERT_TRUE(m.ok()) << m.status();
      attacks_[i].share_keys(*m);
      ASSERT_TRUE(server_->HandleShareKeys(*m).ok());
    }
    ASSERT_TRUE(server_->CloseShareKeys().ok());
  }
  // Client i masks its input and sends it; returns the server's answer.
  absl::Status SendMaskedInput(int32_t i, std::vector<int32_t>* reported = nullptr) {
    absl::StatusOr<MaskedInputMessage> m =
        clients_[i]->MaskInput(*server_->ShareBundleFor(i), Input(i));
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return m.status();
    if (reported != nullptr) *reported = m->bad_share_senders;
    return server_->HandleMaskedInput(*m);
  }
  // Unmask requests and responses for every survivor, then Finish.
  absl::StatusOr<std::vector<uint64_t>> Unmask(const std::vector<int32_t>& silent = {}) {
    if (server_->phase() == SecAggServer::Phase::kMaskedInput) {
      absl::Status closed = server_->CloseMaskedInput();
      if (!closed.ok()) return closed;
    }
    for (int32_t i : server_->masked_input_senders()) {
      if (std::find(silent.begin(), silent.end(), i) != silent.end()) continue;
      absl::StatusOr<UnmaskResponse> r = clients_[i]->Unmask(*server_->UnmaskRequestFor(i));
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return r.status();
      attacks_[i].unmask(*r);
      absl::Status handled = server_->HandleUnmaskResponse(*r);
      EXPECT_TRUE(handled.ok()) << handled;
    }
    return server_->Finish();
  }

 private:
  ProtocolConfig config_;
  std::unique_ptr<SecAggServer> server_;
  std::vector<std::unique_ptr<SecAggClient>> clients_;
  std::vector<Attacks> attacks_;
};

// Shifts the revealed shares of `owners` (of either kind) off their polynomial by `shift`.
std::function<void(UnmaskResponse&)> LieAbout(std::vector<int32_t> owners, uint64_t shift = 12345) {
  return [owners, shift](UnmaskResponse& response) {
    for (RevealedShare& revealed : response.shares) {
      if (std::find(owners.begin(), owners.end(), revealed.owner) == owners.end()) continue;
      revealed.share.y[0] = (revealed.share.y[0] + shift) % kShamirPrime;
    }
  };
}

// Flips a byte of the ciphertexts addressed to `recipients`.
std::function<void(ShareKeysMessage&)> CorruptFor(std::vector<int32_t> recipients) {
  return [recipients](ShareKeysMessage& message) {
    for (EncryptedShare& share : message.shares) {
      if (std::find(recipients.begin(), recipients.end(), share.recipient) != recipients.end()) {
        share.ciphertext[30] ^= 0x40;
      }
    }
  };
}

std::vector<int32_t> Range(int n) {
  std::vector<int32_t> all(n);
  for (int i = 0; i < n; ++i) all[i] = i;
  return all;
}

// ---- A wrong share revealed at unmasking ----

TEST(MaliciousShareTest, WrongSelfMaskSeedShareIsDetectedAttributedAndTheSumIsRight) {
  // Client 0 holds the lowest x, so its share is among the first t tried for every owner.
  Round round(Config(Variant::kSecAgg, 6));
  round.attacks(0).unmask = LieAbout({3});
  round.ShareKeys();
  for (int32_t i = 0; i < 6; ++i) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf(Range(6)));
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 1u);
  EXPECT_EQ(culprits[0].client, 0);
  EXPECT_EQ(culprits[0].reason, Reason::kBadRevealedShare);
  EXPECT_THAT(culprits[0].others, ElementsAre(3));
}

TEST(MaliciousShareTest, ALiarAboutEveryOwnerIsNamedForEachAndOutsideTheFirstTToo) {
  // n = 9, t = 5. Client 1 lies about everyone; client 7 (beyond the first t holders) about
  // owner 2, whose 9 shares then have 2 off the polynomial and 7 >= t + 2 on it.
  Round round(Config(Variant::kSecAgg, 9));
  round.attacks(1).unmask = LieAbout(Range(9));
  round.attacks(7).unmask = LieAbout({2}, 777);
  round.ShareKeys();
  for (int32_t i = 0; i < 9; ++i) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf(Range(9)));
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 2u);
  EXPECT_EQ(culprits[0].client, 1);
  EXPECT_THAT(culprits[0].others, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_EQ(culprits[1].client, 7);
  EXPECT_THAT(culprits[1].others, ElementsAre(2));
}

TEST(MaliciousShareTest, WrongMaskingKeyShareOfADroppedClientIsCaughtByItsPublicKey) {
  Round round(Config(Variant::kSecAgg, 7));
  round.attacks(0).unmask = LieAbout({4});
  round.ShareKeys();
  for (int32_t i : {0, 1, 2, 3, 5, 6}) ASSERT_TRUE(round.SendMaskedInput(i).ok());  // 4 dropped
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf({0, 1, 2, 3, 5, 6}));
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 1u);
  EXPECT_EQ(culprits[0].client, 0);
  EXPECT_THAT(culprits[0].others, ElementsAre(4));
}

TEST(MaliciousShareTest, SecAggPlusGraphToo) {
  const ProtocolConfig config = Config(Variant::kSecAggPlus, 40);
  ASSERT_LT(config.degree, 39);  // a sparse graph
  Round round(config);
  round.attacks(7).unmask = LieAbout(Range(40));
  round.ShareKeys();
  for (int32_t i = 0; i < 40; ++i) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf(Range(40)));
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 1u);
  EXPECT_EQ(culprits[0].client, 7);
  EXPECT_EQ(culprits[0].reason, Reason::kBadRevealedShare);
}

TEST(MaliciousShareTest, FewerThanTGoodSharesAbortsNamingTheCulpritsCaught) {
  // n = 9, t = 5. Clients 7 and 8 stay silent in unmasking, so each owner has 7 shares. Clients
  // 0, 1 and 2 lie about owner 2 (4 good shares < t); client 0 also lies about owner 3 (6 good).
  Round round(Config(Variant::kSecAgg, 9));
  round.attacks(0).unmask = LieAbout({2, 3});
  round.attacks(1).unmask = LieAbout({2}, 777);
  round.attacks(2).unmask = LieAbout({2}, 99);
  round.ShareKeys();
  for (int32_t i = 0; i < 9; ++i) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask(/*silent=*/{7, 8});
  EXPECT_TRUE(absl::IsAborted(sum.status())) << sum.status();
  EXPECT_THAT(sum.status().message(), HasSubstr("client 2's self-mask seed match its commitment"));
  EXPECT_THAT(sum.status().message(), HasSubstr("culprits: client 0"));
  EXPECT_EQ(round.server().phase(), SecAggServer::Phase::kAborted);
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 1u);
  EXPECT_EQ(culprits[0].client, 0);
  EXPECT_THAT(culprits[0].others, ElementsAre(3));
}

TEST(MaliciousShareTest, LiarsWhoOutnumberTheShareTheyPushOffFrameNobody) {
  // Holders 0 and 1 (x = 1, 2) shift owner 2's shares by the same amount: with holders 3 and 4
  // (x = 4, 5) that is a polynomial through the right secret (q(x) = c x (x - 4)(x - 5) has
  // q(1) = q(2)), so the commitment matches and honest holder 2 (x = 3) is off it. Two shares
  // off the polynomial against four on it (fewer than t + 2): nobody is named for owner 2, and
  // the sum, whose secret is right, stands.
  Round round(Config(Variant::kSecAgg, 7));
  round.attacks(0).unmask = LieAbout({2});
  round.attacks(1).unmask = LieAbout({2});
  round.ShareKeys();
  for (int32_t i = 0; i < 7; ++i) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask(/*silent=*/{5, 6});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf(Range(7)));
  for (const SecAggCulprit& c : round.server().culprits()) EXPECT_NE(c.client, 2);
}

// ---- A bad share ciphertext ----

TEST(MaliciousCiphertextTest, SenderNotYetSummedIsExcludedAndTheRoundGoesOn) {
  Round round(Config(Variant::kSecAgg, 5));
  round.attacks(4).share_keys = CorruptFor({0});
  round.ShareKeys();
  std::vector<int32_t> reported;
  ASSERT_TRUE(round.SendMaskedInput(0, &reported).ok());  // does not abort: reports client 4
  EXPECT_THAT(reported, ElementsAre(4));
  EXPECT_TRUE(round.server().excluded(4));
  for (int32_t i : {1, 2, 3}) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::Status refused = round.SendMaskedInput(4);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("excluded"));
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf({0, 1, 2, 3}));
  const std::vector<SecAggCulprit> culprits = round.server().culprits();
  ASSERT_EQ(culprits.size(), 1u);
  EXPECT_EQ(culprits[0].client, 4);
  EXPECT_EQ(culprits[0].reason, Reason::kBadShareCiphertext);
  EXPECT_THAT(culprits[0].others, ElementsAre(0));
}

TEST(MaliciousCiphertextTest, SenderAlreadySummedStaysAndItsSeedComesFromOtherHolders) {
  Round round(Config(Variant::kSecAgg, 5));
  round.attacks(4).share_keys = CorruptFor({0});
  round.ShareKeys();
  ASSERT_TRUE(round.SendMaskedInput(4).ok());
  for (int32_t i : {0, 1, 2, 3}) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  EXPECT_FALSE(round.server().excluded(4));
  ASSERT_TRUE(round.server().CloseMaskedInput().ok());
  // Client 0 is not asked for a share of client 4 it never got.
  const UnmaskRequest request = *round.server().UnmaskRequestFor(0);
  EXPECT_THAT(request.survivors, ElementsAre(0, 1, 2, 3));
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf(Range(5)));
  ASSERT_EQ(round.server().culprits().size(), 1u);
  EXPECT_EQ(round.server().culprits()[0].client, 4);
}

TEST(MaliciousCiphertextTest, BadCiphertextsToSeveralExcludeTheSender) {
  // n = 7, t = 4: client 2's ciphertexts to 0 and 1 are bad; 3, 4, 5, 6 hold good shares of its
  // masking key, enough to take its pairwise masks out of the others' inputs.
  Round round(Config(Variant::kSecAgg, 7));
  round.attacks(2).share_keys = CorruptFor({0, 1});
  round.ShareKeys();
  for (int32_t i : {0, 1, 3, 4, 5, 6}) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  EXPECT_FALSE(round.SendMaskedInput(2).ok());
  absl::StatusOr<std::vector<uint64_t>> sum = round.Unmask();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, SumOf({0, 1, 3, 4, 5, 6}));
  ASSERT_EQ(round.server().culprits().size(), 1u);
  EXPECT_THAT(round.server().culprits()[0].others, ElementsAre(0, 1));
}

TEST(MaliciousCiphertextTest, AnExcludedSenderWithTooFewGoodHoldersAbortsNamingIt) {
  // Its pairwise masks are in the reporters' inputs and only its masking key takes them out.
  Round round(Config(Variant::kSecAgg, 5));
  round.attacks(2).share_keys = CorruptFor(Range(5));
  round.ShareKeys();
  for (int32_t i : {0, 1, 3, 4}) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::Status closed = round.server().CloseMaskedInput();
  EXPECT_TRUE(absl::IsAborted(closed)) << closed;
  EXPECT_THAT(closed.message(), HasSubstr("excluded client 2 has 0 surviving share holders"));
  EXPECT_THAT(closed.message(), HasSubstr("its share ciphertexts to clients 0, 1, 3, 4"));
}

TEST(MaliciousCiphertextTest, ASummedSenderWithTooFewGoodHoldersAbortsNamingIt) {
  // Client 2 uploads first, then everyone reports it: its seed has 1 good holder (itself) < t.
  Round round(Config(Variant::kSecAgg, 5));
  round.attacks(2).share_keys = CorruptFor(Range(5));
  round.ShareKeys();
  ASSERT_TRUE(round.SendMaskedInput(2).ok());
  for (int32_t i : {0, 1, 3, 4}) ASSERT_TRUE(round.SendMaskedInput(i).ok());
  absl::Status closed = round.server().CloseMaskedInput();
  EXPECT_TRUE(absl::IsAborted(closed)) << closed;
  EXPECT_THAT(closed.message(), HasSubstr("client 2 has 1 remaining share holders"));
  EXPECT_THAT(closed.message(), HasSubstr("its share ciphertexts to clients 0, 1, 3, 4"));
}

TEST(MaliciousCiphertextTest, ServerRefusesReportsNamingStrangersOrUnsorted) {
  Round round(Config(Variant::kSecAgg, 4));
  round.ShareKeys();
  MaskedInputMessage m{0, Input(0), {7}};
  EXPECT_TRUE(absl::IsInvalidArgument(round.server().HandleMaskedInput(m)));
  m.bad_share_senders = {0};  // itself
  EXPECT_TRUE(absl::IsInvalidArgument(round.server().HandleMaskedInput(m)));
  m.bad_share_senders = {2, 1};
  EXPECT_TRUE(absl::IsInvalidArgument(round.server().HandleMaskedInput(m)));
  // None of these counted or excluded anyone.
  EXPECT_TRUE(round.server().masked_input_senders().empty());
  EXPECT_TRUE(round.server().culprits().empty());
  for (int32_t i = 0; i < 4; ++i) EXPECT_FALSE(round.server().excluded(i));
}

TEST(SelfMaskSeedCommitmentTest, BindsSeedSessionAndOwner) {
  Key32 b = {};
  b[0] = 1;
  Key32 session = {};
  session[5] = 9;
  const Key32 c = *SelfMaskSeedCommitment(b, session, 3);
  EXPECT_EQ(c, *SelfMaskSeedCommitment(b, session, 3));
  Key32 other_b = b;
  other_b[31] ^= 1;
  EXPECT_NE(c, *SelfMaskSeedCommitment(other_b, session, 3));
  Key32 other_session = session;
  other_session[0] ^= 1;
  EXPECT_NE(c, *SelfMaskSeedCommitment(b, other_session, 3));
  EXPECT_NE(c, *SelfMaskSeedCommitment(b, session, 4));
}

}  // namespace
}  // namespace fedkit::secagg
