#include "client/artifact_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fedkit::client {
namespace {

class ArtifactPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<artifacts::KeyPair> key = artifacts::GenerateKeyPair();
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *key;
    trust_.trusted_keys.push_back(key_.public_key);
    // A signed assignment of bytes_.
    v1::ModelArtifact& artifact = *assignment_.mutable_artifact();
    artifact.set_sha256(artifacts::Sha256Hex(bytes_));
    artifact.set_size_bytes(static_cast<int64_t>(bytes_.size()));
    artifact.set_format("torchscript");
    const artifacts::Signature signature = *artifacts::SignArtifact(bytes_, key_.private_key);
    artifact.set_signature(std::string(signature.begin(), signature.end()));
    artifact.set_key_fingerprint(artifacts::Fingerprint(key_.public_key));
    assignment_.set_model_name(std::string(kTorchScriptModelPrefix) + artifact.sha256());
  }

  const std::string bytes_ = "a model's bytes";
  artifacts::KeyPair key_;
  ArtifactTrust trust_;
  v1::RoundAssignment assignment_;
};

TEST_F(ArtifactPolicyTest, ASignedArtifactAndItsBytesPass) {
  EXPECT_TRUE(CheckAssignedArtifact(assignment_, trust_, 1024).ok());
  EXPECT_TRUE(VerifyArtifactBytes(assignment_.artifact(), bytes_, trust_).ok());
  EXPECT_EQ(VerifyArtifactBytes(assignment_.artifact(), "other bytes", trust_).code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(ArtifactPolicyTest, TheByteCheckStandsOnItsOwn) {
  // Unsigned, on a device that does not allow it: refused on the bytes too, not only before the
  // download.
  v1::ModelArtifact unsigned_artifact = assignment_.artifact();
  unsigned_artifact.clear_signature();
  unsigned_artifact.clear_key_fingerprint();
  EXPECT_EQ(VerifyArtifactBytes(unsigned_artifact, bytes_, trust_).code(),
            absl::StatusCode::kPermissionDenied);
  ArtifactTrust allow = trust_;
  allow.allow_unsigned = true;
  EXPECT_TRUE(VerifyArtifactBytes(unsigned_artifact, bytes_, allow).ok());
  // A trusted key's fingerprint with a short signature: refused, never copied past its end.
  v1::ModelArtifact short_signature = assignment_.artifact();
  short_signature.set_signature("abc");
  const absl::Status status = VerifyArtifactBytes(short_signature, bytes_, trust_);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("signature is 3 bytes"));
  // Signed by a key this device does not trust.
  EXPECT_EQ(VerifyArtifactBytes(assignment_.artifact(), bytes_, ArtifactTrust{}).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(ArtifactPolicyTest, AnInconsistentOrOversizedAssignmentIsRefusedBeforeTheDownload) {
  v1::RoundAssignment renamed = assignment_;
  renamed.set_model_name("torchscript:sha256:" + std::string(64, '0'));
  EXPECT_EQ(CheckAssignedArtifact(renamed, trust_, 1024).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckAssignedArtifact(assignment_, trust_, 4).code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace fedkit::client
