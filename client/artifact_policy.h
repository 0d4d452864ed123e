// Which model artifacts a device accepts: the checks a device makes on what the coordinator says
// of an artifact (fedkit.v1.RoundAssignment's model_name and artifact), before downloading it and
// then on the downloaded bytes, before anything hands them to LibTorch. Everything here reads bytes
// from the network, so it is kept free of LibTorch (fuzz/assigned_artifact_fuzz.cc fuzzes it) and
// AssignedModelSource (client/model_source.h) calls it.
//
// Errors (absl/status/status.h meanings):
//   FAILED_PRECONDITION the assignment is malformed or inconsistent: a sha256 that is not 64
//                       lowercase hex digits, a model_name other than
//                       "torchscript:sha256:<sha256>", a format other than "torchscript" (or
//                       empty).
//   RESOURCE_EXHAUSTED  size_bytes is not in [1, max_bytes] (nothing should be downloaded).
//   PERMISSION_DENIED   not approved: unsigned while unsigned artifacts are not allowed, signed by
//                       a key the device does not trust (the message names the key and the trusted
//                       ones), a signature that is not 64 bytes, or one that does not verify.
//   DATA_LOSS           the bytes do not hash to the assignment's sha256.
//
// Ownership: plain values. Thread safety: every function is safe to call concurrently.
#ifndef FEDKIT_CLIENT_ARTIFACT_POLICY_H_
#define FEDKIT_CLIENT_ARTIFACT_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "artifacts/signing.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::client {

// An artifact's model name is this prefix followed by its sha256.
inline constexpr absl::string_view kTorchScriptModelPrefix = "torchscript:sha256:";

// "artifact sha256:0123456789ab" (the first 12 hex digits), for messages.
std::string ArtifactName(const v1::ModelArtifact& artifact);

// Which artifacts a device loads.
struct ArtifactTrust {
  // Artifacts signed by any of these keys are loaded (after their signature verifies).
  std::vector<artifacts::PublicKey> trusted_keys;
  // Also load unsigned artifacts (their SHA-256 is still checked). Off by default: loading
  // TorchScript runs its code.
  bool allow_unsigned = false;
};

// What can be checked before downloading: the assignment's artifact is well-formed, its model_name
// names the same file, it is within `max_bytes`, and it is signed by a key in `trust` (or unsigned
// and allowed). OK, or one of the errors above (never DATA_LOSS).
absl::Status CheckAssignedArtifact(const v1::RoundAssignment& assignment,
                                   const ArtifactTrust& trust, int64_t max_bytes);

// The downloaded (or cached) `bytes` of assignment.artifact(), once CheckAssignedArtifact passed:
// OK only if they hash to its sha256 and, when signed, its signature verifies with the trusted key
// it names (artifacts/signing.h's domain-separated artifact signature). Otherwise DATA_LOSS or
// PERMISSION_DENIED (FAILED_PRECONDITION if the sha256 is malformed).
absl::Status VerifyArtifactBytes(const v1::ModelArtifact& artifact, absl::string_view bytes,
                                 const ArtifactTrust& trust);

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_ARTIFACT_POLICY_H_
