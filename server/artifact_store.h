// The model file a coordinator ships to devices that do not hold it (a TorchScript archive):
// its bytes, content address and the operator's signature, as announced in every assignment
// (fedkit.v1.ModelArtifact) and streamed by the GetArtifact RPC.
//
// The coordinator does not need the operator's public key and does not verify the signature: the
// device does, before loading anything (client/model_source.h). What Create() checks is that the
// signature it is given is for these bytes, so that an honest operator who signed another version
// of the file learns it at startup rather than from every device refusing it.
//
// Ownership: the store owns a copy of the bytes. Thread safety: immutable after Create(); every
// method may be called from any thread.
#ifndef FEDKIT_SERVER_ARTIFACT_STORE_H_
#define FEDKIT_SERVER_ARTIFACT_STORE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "artifacts/signing.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::server {

class ModelArtifactStore {
 public:
  // `bytes` is the artifact; `signature`, if any, the operator's (from a .sig file or signed now
  // with artifacts::MakeSignatureFile). INVALID_ARGUMENT "the signature is for SHA-256 X but the
  // artifact's is Y" when they do not belong together; INVALID_ARGUMENT for an empty artifact.
  static absl::StatusOr<std::unique_ptr<ModelArtifactStore>> Create(
      std::string bytes, std::optional<artifacts::SignatureFile> signature,
      std::string format = "torchscript");

  // What assignments announce: sha256, size_bytes, format, and the signature if signed.
  const v1::ModelArtifact& artifact() const { return artifact_; }
  bool is_signed() const { return !artifact_.signature().empty(); }
  absl::string_view bytes() const { return bytes_; }

 private:
  ModelArtifactStore(std::string bytes, v1::ModelArtifact artifact)
      : bytes_(std::move(bytes)), artifact_(std::move(artifact)) {}

  const std::string bytes_;
  const v1::ModelArtifact artifact_;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_ARTIFACT_STORE_H_
