#include "client/artifact_policy.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedkit::client {
namespace {

// The trusted key whose fingerprint the artifact names, or nullptr.
const artifacts::PublicKey* SigningKey(const v1::ModelArtifact& artifact,
                                       const ArtifactTrust& trust) {
  for (const artifacts::PublicKey& key : trust.trusted_keys) {
    if (artifacts::Fingerprint(key) == artifact.key_fingerprint()) return &key;
  }
  return nullptr;
}

absl::Status CheckApproval(const v1::ModelArtifact& artifact, const ArtifactTrust& trust) {
  if (artifact.signature().empty() && artifact.key_fingerprint().empty()) {
    if (trust.allow_unsigned) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        ArtifactName(artifact),
        " is unsigned, and this device loads only artifacts signed by a key it trusts"));
  }
  if (SigningKey(artifact, trust) == nullptr) {
    std::vector<std::string> trusted;
    for (const auto& key : trust.trusted_keys) trusted.push_back(artifacts::Fingerprint(key));
    return absl::PermissionDeniedError(
        absl::StrCat(ArtifactName(artifact), " is signed by key ", artifact.key_fingerprint(),
                     ", which this device does not trust (",
                     trusted.empty() ? std::string("it trusts no key")
                                     : absl::StrCat("it trusts ", absl::StrJoin(trusted, ", ")),
                     ")"));
  }
  if (artifact.signature().size() != sizeof(artifacts::Signature)) {
    return absl::PermissionDeniedError(absl::StrCat(ArtifactName(artifact), "'s signature is ",
                                                    artifact.signature().size(),
                                                    " bytes, not an Ed25519 signature"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ArtifactName(const v1::ModelArtifact& artifact) {
  return absl::StrCat("artifact sha256:", artifact.sha256().substr(0, 12));
}

absl::Status CheckAssignedArtifact(const v1::RoundAssignment& assignment,
                                   const ArtifactTrust& trust, int64_t max_bytes) {
  const v1::ModelArtifact& artifact = assignment.artifact();
  if (!artifacts::ParseSha256Hex(artifact.sha256()).ok() ||
      artifact.sha256() != absl::AsciiStrToLower(artifact.sha256())) {
    return absl::FailedPreconditionError(
        "assigns an artifact whose sha256 is not 64 lowercase hex digits");
  }
  if (assignment.model_name() != absl::StrCat(kTorchScriptModelPrefix, artifact.sha256())) {
    return absl::FailedPreconditionError(absl::StrCat("assigns model '", assignment.model_name(),
                                                      "' with ", ArtifactName(artifact),
                                                      ": they must name the same file"));
  }
  if (!artifact.format().empty() && artifact.format() != "torchscript") {
    return absl::FailedPreconditionError(absl::StrCat(ArtifactName(artifact), " is in format '",
                                                      artifact.format(),
                                                      "'; this device loads TorchScript"));
  }
  if (artifact.size_bytes() <= 0 || artifact.size_bytes() > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(ArtifactName(artifact), " is ",
                                                     artifact.size_bytes(),
                                                     " bytes; this device takes 1 to ", max_bytes));
  }
  return CheckApproval(artifact, trust);
}

absl::Status VerifyArtifactBytes(const v1::ModelArtifact& artifact, absl::string_view bytes,
                                 const ArtifactTrust& trust) {
  absl::StatusOr<artifacts::Sha256Digest> digest = artifacts::ParseSha256Hex(artifact.sha256());
  if (!digest.ok()) return absl::FailedPreconditionError(digest.status().message());
  // Checked again here, so that these bytes are never accepted on a weaker policy than the
  // assignment was.
  if (absl::Status approved = CheckApproval(artifact, trust); !approved.ok()) return approved;
  const std::string name = ArtifactName(artifact);
  if (artifact.signature().empty()) {  // unsigned, and allowed
    if (artifacts::Sha256(bytes) != *digest) {
      return absl::DataLossError(
          absl::StrCat(name, ": the downloaded bytes' SHA-256 is ", artifacts::Sha256Hex(bytes)));
    }
    return absl::OkStatus();
  }
  artifacts::SignatureFile signature;
  signature.sha256 = *digest;
  signature.key_fingerprint = artifact.key_fingerprint();
  std::copy(artifact.signature().begin(), artifact.signature().end(),
            signature.signature.begin());  // 64 bytes: CheckApproval
  const absl::Status verified =
      artifacts::VerifySignatureFile(bytes, signature, *SigningKey(artifact, trust));
  if (!verified.ok()) {
    return absl::Status(verified.code(), absl::StrCat(name, ": ", verified.message()));
  }
  return absl::OkStatus();
}

}  // namespace fedkit::client
