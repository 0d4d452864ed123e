#include "server/artifact_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::server {

absl::StatusOr<std::unique_ptr<ModelArtifactStore>> ModelArtifactStore::Create(
    std::string bytes, std::optional<artifacts::SignatureFile> signature, std::string format) {
  if (bytes.empty()) return absl::InvalidArgumentError("the model artifact is empty");
  v1::ModelArtifact artifact;
  const artifacts::Sha256Digest digest = artifacts::Sha256(bytes);
  artifact.set_sha256(artifacts::ToHex(digest));
  artifact.set_size_bytes(static_cast<int64_t>(bytes.size()));
  artifact.set_format(std::move(format));
  if (signature.has_value()) {
    if (signature->sha256 != digest) {
      return absl::InvalidArgumentError(absl::StrCat("the signature is for SHA-256 ",
                                                     artifacts::ToHex(signature->sha256),
                                                     " but the artifact's is ", artifact.sha256()));
    }
    artifact.set_signature(std::string(signature->signature.begin(), signature->signature.end()));
    artifact.set_key_fingerprint(signature->key_fingerprint);
  }
  return std::unique_ptr<ModelArtifactStore>(
      new ModelArtifactStore(std::move(bytes), std::move(artifact)));
}

}  // namespace fedkit::server
