#include "client/model_source.h"

#include <filesystem>
#include <string>

#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/flat_params.h"
#include "models/torchscript_model.h"

namespace fedkit::client {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const data::DatasetInfo kInfo{{6}, 3};

std::string Fixture(const std::string& name) {
  return std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/" + name;
}

std::string ReadFixture(const std::string& name) {
  absl::StatusOr<std::string> bytes = artifacts::ReadFileBytes(Fixture(name));
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

artifacts::KeyPair NewKey() {
  absl::StatusOr<artifacts::KeyPair> key = artifacts::GenerateKeyPair();
  EXPECT_TRUE(key.ok()) << key.status();
  return *key;
}

// An assignment naming `announced_sha` (the digest the signature covers, when signed).
v1::RoundAssignment ArtifactAssignment(const std::string& announced_bytes,
                                       const artifacts::KeyPair* signer) {
  v1::RoundAssignment a;
  a.set_round(1);
  a.set_assignment_id("a1");
  const std::string sha = artifacts::Sha256Hex(announced_bytes);
  a.set_model_name("torchscript:sha256:" + sha);
  v1::ModelArtifact* artifact = a.mutable_artifact();
  artifact->set_sha256(sha);
  artifact->set_size_bytes(static_cast<int64_t>(announced_bytes.size()));
  artifact->set_format("torchscript");
  if (signer != nullptr) {
    absl::StatusOr<artifacts::Signature> signature =
        artifacts::SignArtifact(announced_bytes, signer->private_key);
    EXPECT_TRUE(signature.ok());
    artifact->set_signature(std::string(signature->begin(), signature->end()));
    artifact->set_key_fingerprint(artifacts::Fingerprint(signer->public_key));
  }
  return a;
}

AssignedModelOptions Trusting(const artifacts::KeyPair& key, std::string cache_dir = "") {
  AssignedModelOptions o;
  o.dataset = kInfo;
  o.trust.trusted_keys = {key.public_key};
  o.cache_dir = std::move(cache_dir);
  return o;
}

std::string FreshDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("fedkit_model_source_" + name);
  fs::remove_all(dir);
  return dir.string();
}

TEST(AssignedModelSourceTest, SignedArtifactIsDownloadedVerifiedAndLoaded) {
  const artifacts::KeyPair key = NewKey();
  const std::string bytes = ReadFixture("tiny_2nn.pt");
  const v1::RoundAssignment a = ArtifactAssignment(bytes, &key);
  AssignedModelSource source(Trusting(key));
  EXPECT_TRUE(source.advertised_models().empty());
  absl::StatusOr<std::shared_ptr<models::Model>> model = source.ModelFor(a);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kNotFound) << model.status();
  model = source.Install(a, bytes);
  ASSERT_TRUE(model.ok()) << model.status();
  // The very model in the file: same layout and initial parameters.
  auto reference = models::TorchScriptModel::Load(Fixture("tiny_2nn.pt"), kInfo);
  ASSERT_TRUE(reference.ok());
  EXPECT_EQ(models::FlattenParameters(**model), models::FlattenParameters(**reference));
  // The next round with the same artifact trains the same object, without another download.
  absl::StatusOr<std::shared_ptr<models::Model>> again = source.ModelFor(a);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), model->get());
}

TEST(AssignedModelSourceTest, ACachedArtifactIsNotDownloadedAgain) {
  const artifacts::KeyPair key = NewKey();
  const std::string bytes = ReadFixture("tiny_2nn.pt");
  const v1::RoundAssignment a = ArtifactAssignment(bytes, &key);
  const std::string dir = FreshDir("cache");
  {
    AssignedModelSource first(Trusting(key, dir));
    ASSERT_TRUE(first.Install(a, bytes).ok());
  }
  AssignedModelSource later(Trusting(key, dir));  // a restarted device
  absl::StatusOr<std::shared_ptr<models::Model>> model = later.ModelFor(a);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(
      models::LayoutOf(**model).size(),
      models::LayoutOf(**models::TorchScriptModel::Load(Fixture("tiny_2nn.pt"), kInfo)).size());
  // The cache is not a way around the signature: a device that trusts another key refuses the
  // cached copy too.
  AssignedModelSource other_key(Trusting(NewKey(), dir));
  EXPECT_EQ(other_key.ModelFor(a).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(AssignedModelSourceTest, TamperedArtifactIsRefusedAndNotCached) {
  const artifacts::KeyPair key = NewKey();
  const std::string original = ReadFixture("tiny_2nn.pt");
  std::string tampered = original;
  tampered[tampered.size() / 2] ^= 0x01;
  // The attacker announces the tampered bytes' hash but can only reuse the original signature.
  v1::RoundAssignment a = ArtifactAssignment(original, &key);
  const v1::RoundAssignment tampered_assignment = ArtifactAssignment(tampered, nullptr);
  a.set_model_name(tampered_assignment.model_name());
  a.mutable_artifact()->set_sha256(tampered_assignment.artifact().sha256());
  const std::string dir = FreshDir("tampered");
  AssignedModelSource source(Trusting(key, dir));
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kNotFound);
  const absl::Status status = source.Install(a, tampered).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(), HasSubstr("signature does not verify"));
  EXPECT_FALSE(fs::exists(dir));
}

TEST(AssignedModelSourceTest, BytesOtherThanAnnouncedAreDataLoss) {
  const artifacts::KeyPair key = NewKey();
  const std::string bytes = ReadFixture("tiny_2nn.pt");
  const v1::RoundAssignment a = ArtifactAssignment(bytes, &key);
  AssignedModelSource source(Trusting(key));
  const absl::Status status = source.Install(a, ReadFixture("tiny_bn.pt")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

TEST(AssignedModelSourceTest, AnUntrustedKeyIsRefusedBeforeDownloading) {
  const artifacts::KeyPair operator_key = NewKey();
  const artifacts::KeyPair device_key = NewKey();
  const v1::RoundAssignment a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &operator_key);
  AssignedModelSource source(Trusting(device_key));
  const absl::Status status = source.ModelFor(a).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("signed by key " + artifacts::Fingerprint(operator_key.public_key) +
                        ", which this device does not trust (it trusts " +
                        artifacts::Fingerprint(device_key.public_key)));
}

TEST(AssignedModelSourceTest, UnsignedArtifactsOnlyWhenAllowed) {
  const std::string bytes = ReadFixture("tiny_2nn.pt");
  const v1::RoundAssignment a = ArtifactAssignment(bytes, nullptr);
  AssignedModelOptions strict;
  strict.dataset = kInfo;
  AssignedModelSource refusing(strict);
  const absl::Status refused = refusing.ModelFor(a).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("unsigned"));
  EXPECT_EQ(refusing.Install(a, bytes).status().code(), absl::StatusCode::kPermissionDenied);

  AssignedModelOptions lenient = strict;
  lenient.trust.allow_unsigned = true;
  AssignedModelSource accepting(lenient);
  EXPECT_EQ(accepting.ModelFor(a).status().code(), absl::StatusCode::kNotFound);
  // The hash is still checked.
  EXPECT_EQ(accepting.Install(a, ReadFixture("tiny_bn.pt")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(accepting.Install(a, bytes).ok());
}

TEST(AssignedModelSourceTest, SignedGarbageIsInvalidArgumentNotLoaded) {
  const artifacts::KeyPair key = NewKey();
  const std::string garbage = "definitely not a zip archive";
  const v1::RoundAssignment a = ArtifactAssignment(garbage, &key);
  AssignedModelSource source(Trusting(key));
  const absl::Status status = source.Install(a, garbage).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("not a TorchScript file"));
}

TEST(AssignedModelSourceTest, AModelThatDoesNotFitTheDataIsInvalidArgument) {
  const artifacts::KeyPair key = NewKey();
  const std::string bytes = ReadFixture("fmnist_small_2nn.pt");  // [1, 28, 28] -> 10
  const v1::RoundAssignment a = ArtifactAssignment(bytes, &key);
  AssignedModelSource source(Trusting(key));
  EXPECT_EQ(source.Install(a, bytes).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AssignedModelSourceTest, OversizedArtifactIsRefusedBeforeDownloading) {
  const artifacts::KeyPair key = NewKey();
  const v1::RoundAssignment a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &key);
  AssignedModelOptions o = Trusting(key);
  o.max_artifact_bytes = a.artifact().size_bytes() - 1;
  AssignedModelSource source(o);
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(AssignedModelSourceTest, InconsistentOrMalformedAssignmentsAreRefused) {
  const artifacts::KeyPair key = NewKey();
  AssignedModelSource source(Trusting(key));
  v1::RoundAssignment a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &key);
  a.set_model_name("torchscript:sha256:" + std::string(64, '0'));
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kFailedPrecondition);
  a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &key);
  a.mutable_artifact()->set_sha256("../../etc/passwd");
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kFailedPrecondition);
  a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &key);
  a.mutable_artifact()->set_format("onnx");
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kFailedPrecondition);
  a = ArtifactAssignment(ReadFixture("tiny_2nn.pt"), &key);
  a.mutable_artifact()->set_signature("short");
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(AssignedModelSourceTest, RegistryModelsAreBuiltButPathsAreNeverLoaded) {
  AssignedModelOptions o;
  o.dataset = kInfo;
  AssignedModelSource source(o);
  v1::RoundAssignment a;
  a.set_round(1);
  a.set_model_name("logreg");
  absl::StatusOr<std::shared_ptr<models::Model>> model = source.ModelFor(a);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(models::LayoutOf(**model).size(), 6 * 3 + 3);
  a.set_model_name(Fixture("tiny_2nn.pt"));  // a server naming a file on the device
  const absl::Status status = source.ModelFor(a).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("does not have"));
  a.set_model_name("resnet152");
  EXPECT_EQ(source.ModelFor(a).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FixedModelSourceTest, RefusesOtherModelsAndArtifacts) {
  auto model = *models::CreateModel("logreg", kInfo, 0);
  FixedModelSource source(model, "logreg");
  EXPECT_THAT(source.advertised_models(), ::testing::ElementsAre("logreg"));
  v1::RoundAssignment a;
  a.set_model_name("logreg");
  EXPECT_EQ(*source.ModelFor(a), model);
  a.set_model_name("mlp");
  const absl::Status status = source.ModelFor(a).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("assigns model 'mlp' but this client trains 'logreg'"));
  EXPECT_EQ(source.Install(a, "bytes").status().code(), absl::StatusCode::kFailedPrecondition);
  FixedModelSource unnamed(model, "");
  EXPECT_TRUE(unnamed.advertised_models().empty());
  EXPECT_TRUE(unnamed.ModelFor(a).ok());
}

}  // namespace
}  // namespace fedkit::client
