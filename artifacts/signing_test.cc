#include "artifacts/signing.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::artifacts {
namespace {

using ::testing::HasSubstr;

std::array<uint8_t, 32> Hex32(absl::string_view hex) {
  std::array<uint8_t, 32> out;
  EXPECT_TRUE(ParseHex(hex, absl::MakeSpan(out)).ok());
  return out;
}

// RFC 8032 section 7.1, TEST 1 (empty message).
TEST(Ed25519Test, Rfc8032TestVector1) {
  const PrivateKey key(Hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  absl::StatusOr<PublicKey> pub = PublicKeyOf(key);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(ToHex(pub->raw), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  absl::StatusOr<Signature> sig = Ed25519Sign({}, key);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(ToHex(*sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
            "39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(Ed25519Verify({}, *sig, *pub).ok());
}

TEST(SigningTest, Sha256KnownAnswer) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(SigningTest, RoundTripAndRefusals) {
  absl::StatusOr<KeyPair> pair = GenerateKeyPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  absl::StatusOr<KeyPair> other = GenerateKeyPair();
  ASSERT_TRUE(other.ok());
  const std::string artifact = "not really a TorchScript archive";
  absl::StatusOr<Signature> sig = SignArtifact(artifact, pair->private_key);
  ASSERT_TRUE(sig.ok()) << sig.status();
  const Sha256Digest digest = Sha256(artifact);
  EXPECT_TRUE(VerifyArtifact(artifact, digest, *sig, pair->public_key).ok());

  std::string tampered = artifact;
  tampered[3] ^= 1;
  absl::Status s = VerifyArtifact(tampered, digest, *sig, pair->public_key);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(ToHex(digest)));
  s = VerifyArtifact(tampered, Sha256(tampered), *sig, pair->public_key);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;

  s = VerifyArtifact(artifact, digest, *sig, other->public_key);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr(Fingerprint(other->public_key)));

  // A signature over the bare digest (another domain) does not verify as an artifact signature.
  absl::StatusOr<Signature> raw = Ed25519Sign(digest, pair->private_key);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(VerifyArtifact(artifact, digest, *raw, pair->public_key).code(),
            absl::StatusCode::kPermissionDenied);
  Signature garbage = {};
  EXPECT_EQ(VerifyArtifact(artifact, digest, garbage, pair->public_key).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SigningTest, PemRoundTripAndRefusals) {
  absl::StatusOr<KeyPair> pair = GenerateKeyPair();
  ASSERT_TRUE(pair.ok());
  absl::StatusOr<std::string> priv = PrivateKeyToPem(pair->private_key);
  absl::StatusOr<std::string> pub = PublicKeyToPem(pair->public_key);
  ASSERT_TRUE(priv.ok() && pub.ok());
  EXPECT_THAT(*priv, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  absl::StatusOr<PrivateKey> priv2 = PrivateKeyFromPem(*priv);
  absl::StatusOr<PublicKey> pub2 = PublicKeyFromPem(*pub);
  ASSERT_TRUE(priv2.ok()) << priv2.status();
  ASSERT_TRUE(pub2.ok()) << pub2.status();
  EXPECT_EQ(priv2->raw(), pair->private_key.raw());
  EXPECT_EQ(*pub2, pair->public_key);

  EXPECT_THAT(PublicKeyFromPem(*priv).status().message(), HasSubstr("private key"));
  EXPECT_THAT(PrivateKeyFromPem(*pub).status().message(), HasSubstr("public key"));
  EXPECT_EQ(PrivateKeyFromPem("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  std::string corrupted = *pub;
  corrupted[40] = '!';
  EXPECT_EQ(PublicKeyFromPem(corrupted).status().code(), absl::StatusCode::kInvalidArgument);
  // An X25519 public key (SubjectPublicKeyInfo) is not Ed25519.
  const std::string x25519 =
      "-----BEGIN PUBLIC KEY-----\n"
      "MCowBQYDK2VuAyEAhSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n"
      "-----END PUBLIC KEY-----\n";
  absl::Status s = PublicKeyFromPem(x25519).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("not Ed25519"));
}

TEST(SigningTest, SignatureFileRoundTripAndStrictParse) {
  absl::StatusOr<KeyPair> pair = GenerateKeyPair();
  ASSERT_TRUE(pair.ok());
  absl::StatusOr<SignatureFile> file = MakeSignatureFile("bytes", pair->private_key);
  ASSERT_TRUE(file.ok());
  const std::string text = FormatSignatureFile(*file);
  EXPECT_EQ(text.size(), 255u);
  absl::StatusOr<SignatureFile> parsed = ParseSignatureFile(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(VerifySignatureFile("bytes", *parsed, pair->public_key).ok());
  EXPECT_EQ(VerifySignatureFile("bytez", *parsed, pair->public_key).code(),
            absl::StatusCode::kDataLoss);
  absl::StatusOr<KeyPair> other = GenerateKeyPair();
  EXPECT_EQ(VerifySignatureFile("bytes", *parsed, other->public_key).code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_THAT(ParseSignatureFile("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(ParseSignatureFile(text.substr(0, 100)).status().message(), HasSubstr("newline"));
  EXPECT_THAT(ParseSignatureFile("hello\n").status().message(), HasSubstr("line 1"));
  std::string bad = text;
  bad[text.find("sha256 ") + 8] = 'G';
  EXPECT_THAT(ParseSignatureFile(bad).status().message(), HasSubstr("line 2"));
  EXPECT_THAT(ParseSignatureFile(text + "extra\n").status().message(), HasSubstr("4 lines"));
}

}  // namespace
}  // namespace fedkit::artifacts
