// Which model a device trains for an assignment: the app's own (FixedModelSource), or whatever the
// coordinator assigns (AssignedModelSource: a registry model by name, or a TorchScript artifact
// downloaded once, verified against its SHA-256 and its operator's Ed25519 signature, cached on
// disk). FederatedClient asks its source before every round; the source never talks to the
// network itself: FederatedClient downloads what Install() needs.
//
// Loading TorchScript runs code, so an artifact is loaded only after every check has passed, from
// the very bytes that were checked (never re-read from a path in between).
//
// Errors (absl/status/status.h meanings), shared by both sources; every one except NOT_FOUND is a
// refusal FederatedClient reports to the coordinator (fedkit.v1.DeclineRequest) before returning:
//   NOT_FOUND           ModelFor only: the assignment's artifact is not on this device; download
//                       assignment.artifact() and call Install() with its bytes.
//   FAILED_PRECONDITION the assignment names a model this device does not train or cannot build
//                       (another model than the fixed one, an unknown registry name, a path).
//   RESOURCE_EXHAUSTED  the artifact is larger than the device's limit (nothing was downloaded).
//   PERMISSION_DENIED   the artifact is not approved: unsigned while unsigned artifacts are not
//                       allowed, signed by a key the device does not trust, or a signature that
//                       does not verify (a tampered artifact). Checked before downloading where the
//                       assignment alone tells (unsigned, unknown key).
//   DATA_LOSS           the bytes do not hash to the assignment's SHA-256.
//   INVALID_ARGUMENT    the verified bytes are not a TorchScript model that fits this device's
//                       data (models/torchscript_model.h's checks).
//
// Ownership: a source owns its current model and hands out shared pointers to it (the same object
// across rounds while the assignment names the same model). Thread safety: thread-compatible; a
// FederatedClient calls its source from the thread running Run() only.
#ifndef FEDKIT_CLIENT_MODEL_SOURCE_H_
#define FEDKIT_CLIENT_MODEL_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/artifact_cache.h"
#include "client/artifact_policy.h"
#include "data/examples.h"
#include "fedkit/v1/coordinator.pb.h"
#include "models/model.h"

namespace fedkit::client {

class ModelSource {
 public:
  virtual ~ModelSource() = default;
  // Advertised at check-in in capabilities.model_names; empty = any model.
  virtual std::vector<std::string> advertised_models() const = 0;
  // The model to train for `assignment` (see the errors above).
  virtual absl::StatusOr<std::shared_ptr<models::Model>> ModelFor(
      const v1::RoundAssignment& assignment) = 0;
  // The downloaded bytes of assignment.artifact(): verified, cached, loaded.
  virtual absl::StatusOr<std::shared_ptr<models::Model>> Install(
      const v1::RoundAssignment& assignment, std::string bytes) = 0;
};

// The app's own model (a registry model, a TorchScript file, or its own models::Model subclass).
// With a non-empty `model_name` (models::ModelIdentity of it), an assignment naming another model
// is FAILED_PRECONDITION; with an empty one, any assignment whose layout fits is trained.
class FixedModelSource final : public ModelSource {
 public:
  FixedModelSource(std::shared_ptr<models::Model> model, std::string model_name);
  std::vector<std::string> advertised_models() const override;
  absl::StatusOr<std::shared_ptr<models::Model>> ModelFor(
      const v1::RoundAssignment& assignment) override;
  // FAILED_PRECONDITION: a fixed model takes no artifacts.
  absl::StatusOr<std::shared_ptr<models::Model>> Install(const v1::RoundAssignment& assignment,
                                                         std::string bytes) override;

 private:
  std::shared_ptr<models::Model> model_;
  std::string model_name_;
};

struct AssignedModelOptions {
  // The device's data: registry models are built for it and artifacts are checked against it.
  data::DatasetInfo dataset;
  ArtifactTrust trust;
  // Verified artifacts are kept here for later runs (client/artifact_cache.h); empty = in memory
  // only (the current model).
  std::string cache_dir;
  // Larger artifacts are refused before downloading.
  int64_t max_artifact_bytes = int64_t{256} << 20;
  // Receives a line per notable event (cache hits, cache write failures); may be empty.
  std::function<void(absl::string_view)> log;
};

// Trains whatever the coordinator assigns: a registry model (models::CreateModel) by its name, or
// a TorchScript artifact by its content hash, accepted by client/artifact_policy.h's checks. A
// registry name that looks like a path is refused (a server must not make the device load a local
// file).
class AssignedModelSource final : public ModelSource {
 public:
  explicit AssignedModelSource(AssignedModelOptions options);
  std::vector<std::string> advertised_models() const override { return {}; }
  absl::StatusOr<std::shared_ptr<models::Model>> ModelFor(
      const v1::RoundAssignment& assignment) override;
  absl::StatusOr<std::shared_ptr<models::Model>> Install(const v1::RoundAssignment& assignment,
                                                         std::string bytes) override;

 private:
  // Hash and signature of `bytes` (client/artifact_policy.h), then the load; on success the
  // current model.
  absl::StatusOr<std::shared_ptr<models::Model>> VerifyAndLoad(
      const v1::RoundAssignment& assignment, const std::string& bytes, bool from_cache);
  void Log(absl::string_view line) const;

  AssignedModelOptions options_;
  std::optional<ArtifactCache> cache_;
  std::string current_name_;  // model_name of current_
  std::shared_ptr<models::Model> current_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_MODEL_SOURCE_H_
