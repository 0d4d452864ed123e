// Fuzz target: the device's checks on an assigned model artifact (client/artifact_policy.h), before
// the download (CheckAssignedArtifact on the RoundAssignment) and on the downloaded bytes
// (VerifyArtifactBytes), which is all a device does with those bytes before LibTorch loads them.
// The assignment is the fuzzer's bytes parsed as a RoundAssignment, or a valid one for an artifact
// of the fuzzer's bytes (signed by the trusted operator key, by another key, or unsigned) with its
// wire bytes edited or one field replaced; the device's policy (trusted key or none, unsigned
// allowed or not, size limit) and the downloaded bytes (the artifact's, or edited) are the
// fuzzer's too.
// Checked beyond the sanitizers: an assignment that passes names the file it describes and is
// within the limit; bytes that pass hash to the assignment's sha256 and are either signed by the
// trusted key (the signature verifies independently) or unsigned on a device that allows that; an
// honest assignment with its own bytes always passes.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "artifacts/signing.h"
#include "client/artifact_policy.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"

namespace fedkit::client {
namespace {

artifacts::PrivateKey Key(uint8_t first) {
  std::array<uint8_t, 32> bytes;
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(first + i);
  return artifacts::PrivateKey(bytes);
}
const artifacts::PrivateKey& OperatorKey() {
  static const artifacts::PrivateKey key = Key(1);
  return key;
}
const artifacts::PrivateKey& OtherKey() {
  static const artifacts::PrivateKey key = Key(101);
  return key;
}

// An honest assignment of `bytes`: signed by `key` (nullptr: unsigned).
v1::RoundAssignment Honest(const std::string& bytes, const artifacts::PrivateKey* key) {
  v1::RoundAssignment assignment;
  v1::ModelArtifact& artifact = *assignment.mutable_artifact();
  artifact.set_sha256(artifacts::Sha256Hex(bytes));
  artifact.set_format("torchscript");
  artifact.set_size_bytes(static_cast<int64_t>(bytes.size()));
  if (key != nullptr) {
    absl::StatusOr<artifacts::Signature> signature = artifacts::SignArtifact(bytes, *key);
    if (!signature.ok()) std::abort();
    artifact.set_signature(std::string(signature->begin(), signature->end()));
    artifact.set_key_fingerprint(artifacts::Fingerprint(*artifacts::PublicKeyOf(*key)));
  }
  assignment.set_model_name(std::string(kTorchScriptModelPrefix) + artifact.sha256());
  return assignment;
}

void Run(fuzz::FuzzInput& in) {
  static const artifacts::PublicKey trusted = *artifacts::PublicKeyOf(OperatorKey());
  ArtifactTrust trust;
  if (in.Bool()) trust.trusted_keys.push_back(trusted);
  trust.allow_unsigned = in.Bool();
  const int64_t max_bytes = in.Int(0, 1024);
  std::string bytes = in.Bytes(512);

  v1::RoundAssignment assignment;
  bool honest = false;
  const int64_t how = in.Int(0, 3);
  if (how == 0) {
    if (!assignment.ParseFromString(in.Rest())) return;
  } else {
    const int64_t signer = in.Int(0, 2);
    const artifacts::PrivateKey* key = signer == 0   ? &OperatorKey()
                                       : signer == 1 ? &OtherKey()
                                                     : nullptr;
    assignment = Honest(bytes, key);
    if (how == 2) {
      in.EditMessage(assignment);
    } else {
      v1::ModelArtifact& artifact = *assignment.mutable_artifact();
      const std::string value = in.Bytes(160);
      switch (in.Int(0, 6)) {
        case 0:
          artifact.set_sha256(value);
          break;
        case 1:
          artifact.set_signature(value);
          break;
        case 2:
          artifact.set_key_fingerprint(value);
          break;
        case 3:
          artifact.set_format(value);
          break;
        case 4:
          artifact.set_size_bytes(static_cast<int64_t>(in.Bits(8)));
          break;
        case 5:
          assignment.set_model_name(value);
          break;
        default:
          bytes = in.Edit(bytes);  // the download, not the assignment
          break;
      }
    }
    // Still exactly what an honest coordinator sends for these bytes, and what this device's
    // policy approves.
    const bool approved = signer == 0   ? !trust.trusted_keys.empty()
                          : signer == 2 ? trust.allow_unsigned
                                        : false;
    honest = approved && !bytes.empty() && static_cast<int64_t>(bytes.size()) <= max_bytes &&
             assignment.SerializeAsString() == Honest(bytes, key).SerializeAsString();
  }
  const v1::ModelArtifact& artifact = assignment.artifact();

  const absl::Status checked = CheckAssignedArtifact(assignment, trust, max_bytes);
  if (honest && !checked.ok()) std::abort();
  if (checked.ok()) {
    if (assignment.model_name() != std::string(kTorchScriptModelPrefix) + artifact.sha256()) {
      std::abort();
    }
    if (artifact.size_bytes() < 1 || artifact.size_bytes() > max_bytes) std::abort();
  }
  // The bytes are verified whatever the first check said (the cache path and the download path
  // both call it), so it must stand on its own.
  const absl::Status verified = VerifyArtifactBytes(artifact, bytes, trust);
  if (honest && !verified.ok()) std::abort();
  if (verified.ok()) {
    // (ParseSha256Hex takes upper case too; only CheckAssignedArtifact insists on lower case.)
    if (artifacts::Sha256Hex(bytes) != absl::AsciiStrToLower(artifact.sha256())) std::abort();
    if (artifact.signature().empty()) {
      if (!trust.allow_unsigned) std::abort();
    } else {
      absl::StatusOr<artifacts::Sha256Digest> digest = artifacts::ParseSha256Hex(artifact.sha256());
      if (!digest.ok() || artifact.signature().size() != sizeof(artifacts::Signature)) std::abort();
      artifacts::Signature signature;
      std::copy(artifact.signature().begin(), artifact.signature().end(), signature.begin());
      if (trust.trusted_keys.empty() ||
          !artifacts::VerifyArtifact(bytes, *digest, signature, trusted).ok()) {
        std::abort();  // accepted without the trusted key's signature
      }
    }
  }
}

}  // namespace
}  // namespace fedkit::client

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::client::Run(in);
  return 0;
}
