#include "privacy/secagg/crypto.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::secagg {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> FromHex(absl::string_view hex) {
  const std::string bytes = absl::HexStringToBytes(hex);
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

Key32 Key32FromHex(absl::string_view hex) {
  const std::vector<uint8_t> bytes = FromHex(hex);
  EXPECT_EQ(bytes.size(), kKeyBytes);
  Key32 key = {};
  std::copy_n(bytes.begin(), std::min(bytes.size(), kKeyBytes), key.begin());
  return key;
}

std::vector<uint8_t> Bytes(absl::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// RFC 7748 §6.1.
constexpr absl::string_view kAlicePrivate =
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
constexpr absl::string_view kAlicePublic =
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
constexpr absl::string_view kBobPrivate =
    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
constexpr absl::string_view kBobPublic =
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
constexpr absl::string_view kSharedSecret =
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

TEST(SecureRandomTest, FillsAndDiffers) {
  Key32 a = {};
  Key32 b = {};
  ASSERT_TRUE(SecureRandomBytes(absl::MakeSpan(a)).ok());
  ASSERT_TRUE(SecureRandomBytes(absl::MakeSpan(b)).ok());
  EXPECT_NE(a, b);  // fails with probability 2^-256
  EXPECT_NE(a, Key32{});
  EXPECT_TRUE(SecureRandomBytes(absl::Span<uint8_t>()).ok());

  absl::StatusOr<Key32> c = SecureRandomKey();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(*c, a);
}

TEST(X25519Test, Rfc7748PublicKeys) {
  absl::StatusOr<Key32> alice = X25519PublicKey(Key32FromHex(kAlicePrivate));
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(*alice, Key32FromHex(kAlicePublic));
  absl::StatusOr<Key32> bob = X25519PublicKey(Key32FromHex(kBobPrivate));
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(*bob, Key32FromHex(kBobPublic));
}

TEST(X25519Test, Rfc7748SharedSecret) {
  absl::StatusOr<Key32> alice =
      X25519SharedSecret(Key32FromHex(kAlicePrivate), Key32FromHex(kBobPublic));
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(*alice, Key32FromHex(kSharedSecret));
  absl::StatusOr<Key32> bob =
      X25519SharedSecret(Key32FromHex(kBobPrivate), Key32FromHex(kAlicePublic));
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(*bob, Key32FromHex(kSharedSecret));
}

TEST(X25519Test, GeneratedPairsAgree) {
  for (int trial = 0; trial < 8; ++trial) {
    absl::StatusOr<X25519KeyPair> a = GenerateX25519KeyPair();
    absl::StatusOr<X25519KeyPair> b = GenerateX25519KeyPair();
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_NE(a->private_key, b->private_key);
    absl::StatusOr<Key32> a_public = X25519PublicKey(a->private_key);
    ASSERT_TRUE(a_public.ok());
    EXPECT_EQ(*a_public, a->public_key);

    absl::StatusOr<Key32> ab = X25519SharedSecret(a->private_key, b->public_key);
    absl::StatusOr<Key32> ba = X25519SharedSecret(b->private_key, a->public_key);
    ASSERT_TRUE(ab.ok()) << ab.status();
    ASSERT_TRUE(ba.ok()) << ba.status();
    EXPECT_EQ(*ab, *ba);
  }
}

TEST(X25519Test, RejectsLowOrderPeerKeys) {
  // u = 0, u = 1 and a point of order 8 (from libsodium's blocklist): X25519 with any of them is
  // all-zero whatever the private key.
  const std::vector<absl::string_view> low_order = {
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  };
  for (absl::string_view peer : low_order) {
    absl::StatusOr<Key32> secret =
        X25519SharedSecret(Key32FromHex(kAlicePrivate), Key32FromHex(peer));
    EXPECT_EQ(secret.status().code(), absl::StatusCode::kInvalidArgument) << peer;
  }
  // The failure must not leave errors behind that a later call would report.
  absl::StatusOr<Key32> ok =
      X25519SharedSecret(Key32FromHex(kAlicePrivate), Key32FromHex(kBobPublic));
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST(HkdfTest, Rfc5869TestCase1) {
  const std::vector<uint8_t> ikm = FromHex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const std::vector<uint8_t> salt = FromHex("000102030405060708090a0b0c");
  const std::string info = absl::HexStringToBytes("f0f1f2f3f4f5f6f7f8f9");
  absl::StatusOr<Key32> okm = HkdfSha256(ikm, salt, info);
  ASSERT_TRUE(okm.ok()) << okm.status();
  // The RFC's OKM is 42 bytes; HKDF output is prefix-consistent, so ours is its first 32.
  EXPECT_EQ(*okm, Key32FromHex("3cb25f25faacd57a90434f64d0362f2a"
                               "2d2d0a90cf1a5a4c5db02d56ecc4c5bf"));
}

TEST(HkdfTest, Rfc5869TestCase3EmptySaltAndInfo) {
  // Test case 3: salt and info empty.
  const std::vector<uint8_t> ikm = FromHex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  absl::StatusOr<Key32> okm = HkdfSha256(ikm, {}, "");
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(*okm, Key32FromHex("8da4e775a563c18f715f802a063c5a31"
                               "b8a11f5c5ee1879ec3454e5f3c738d2d"));
}

TEST(HkdfTest, EmptyInputKeyMaterial) {
  // HMAC(HMAC(0^32, ""), 0x01), computed independently (Python hmac).
  absl::StatusOr<Key32> okm = HkdfSha256({}, {}, "");
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(*okm, Key32FromHex("eb70f01dede9afafa449eee1b1286504"
                               "e1f62388b3f7dd4f956697b0e828fe18"));
}

TEST(HkdfTest, InfoSeparatesOutputs) {
  const Key32 ikm = Key32FromHex(kSharedSecret);
  absl::StatusOr<Key32> a = HkdfSha256(ikm, {}, "fedkit secagg prg");
  absl::StatusOr<Key32> b = HkdfSha256(ikm, {}, "fedkit secagg aead");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

class AeadTest : public ::testing::Test {
 protected:
  const Key32 key_ = Key32FromHex(kSharedSecret);
  const std::vector<uint8_t> plaintext_ = Bytes("share of client 7 for client 12");
  const std::vector<uint8_t> ad_ = Bytes("round 3 | 7 -> 12");

  std::vector<uint8_t> Seal() {
    absl::StatusOr<std::vector<uint8_t>> sealed = AeadEncrypt(key_, plaintext_, ad_);
    EXPECT_TRUE(sealed.ok()) << sealed.status();
    return sealed.ok() ? *sealed : std::vector<uint8_t>();
  }

  void ExpectRejected(const std::vector<uint8_t>& sealed, const std::vector<uint8_t>& ad) {
    absl::StatusOr<std::vector<uint8_t>> opened = AeadDecrypt(key_, sealed, ad);
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(opened.status().message(), HasSubstr("authentication failed"));
  }
};

TEST_F(AeadTest, RoundTrip) {
  const std::vector<uint8_t> sealed = Seal();
  EXPECT_EQ(sealed.size(), plaintext_.size() + kAeadOverheadBytes);
  absl::StatusOr<std::vector<uint8_t>> opened = AeadDecrypt(key_, sealed, ad_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plaintext_);
}

TEST_F(AeadTest, EmptyPlaintextAndAssociatedData) {
  absl::StatusOr<std::vector<uint8_t>> sealed = AeadEncrypt(key_, {}, {});
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(sealed->size(), kAeadOverheadBytes);
  absl::StatusOr<std::vector<uint8_t>> opened = AeadDecrypt(key_, *sealed, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->empty());
  ExpectRejected(*sealed, ad_);
}

TEST_F(AeadTest, FreshNonceEachTime) {
  const std::vector<uint8_t> a = Seal();
  const std::vector<uint8_t> b = Seal();
  EXPECT_NE(a, b);
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + 12, b.begin()));
}

TEST_F(AeadTest, TamperedCiphertextRejected) {
  std::vector<uint8_t> sealed = Seal();
  sealed[12] ^= 0x01;
  ExpectRejected(sealed, ad_);
}

TEST_F(AeadTest, TamperedTagRejected) {
  std::vector<uint8_t> sealed = Seal();
  sealed.back() ^= 0x80;
  ExpectRejected(sealed, ad_);
}

TEST_F(AeadTest, TamperedNonceRejected) {
  std::vector<uint8_t> sealed = Seal();
  sealed[0] ^= 0x01;
  ExpectRejected(sealed, ad_);
}

TEST_F(AeadTest, WrongAssociatedDataRejected) {
  const std::vector<uint8_t> sealed = Seal();
  std::vector<uint8_t> ad = ad_;
  ad.back() ^= 0x01;
  ExpectRejected(sealed, ad);
  ExpectRejected(sealed, {});
}

TEST_F(AeadTest, WrongKeyRejected) {
  const std::vector<uint8_t> sealed = Seal();
  Key32 other = key_;
  other[0] ^= 0x01;
  absl::StatusOr<std::vector<uint8_t>> opened = AeadDecrypt(other, sealed, ad_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AeadTest, TruncatedInputRejected) {
  const std::vector<uint8_t> sealed = Seal();
  for (size_t len : {size_t{0}, size_t{1}, kAeadOverheadBytes - 1, sealed.size() - 1}) {
    ExpectRejected(std::vector<uint8_t>(sealed.begin(), sealed.begin() + len), ad_);
  }
}

}  // namespace
}  // namespace fedkit::secagg
