#include "client/model_source.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/torchscript_model.h"

namespace fedkit::client {

FixedModelSource::FixedModelSource(std::shared_ptr<models::Model> model, std::string model_name)
    : model_(std::move(model)), model_name_(std::move(model_name)) {}

std::vector<std::string> FixedModelSource::advertised_models() const {
  if (model_name_.empty()) return {};
  return {model_name_};
}

absl::StatusOr<std::shared_ptr<models::Model>> FixedModelSource::ModelFor(
    const v1::RoundAssignment& assignment) {
  if (!model_name_.empty() && assignment.model_name() != model_name_) {
    return absl::FailedPreconditionError(absl::StrCat("assigns model '", assignment.model_name(),
                                                      "' but this client trains '", model_name_,
                                                      "'"));
  }
  return model_;
}

absl::StatusOr<std::shared_ptr<models::Model>> FixedModelSource::Install(
    const v1::RoundAssignment& assignment, std::string bytes) {
  return absl::FailedPreconditionError(
      absl::StrCat("this client trains its own model and takes no artifacts (assigned ",
                   ArtifactName(assignment.artifact()), ")"));
}

AssignedModelSource::AssignedModelSource(AssignedModelOptions options)
    : options_(std::move(options)) {
  if (!options_.cache_dir.empty()) cache_.emplace(options_.cache_dir);
}

void AssignedModelSource::Log(absl::string_view line) const {
  if (options_.log) options_.log(line);
}

absl::StatusOr<std::shared_ptr<models::Model>> AssignedModelSource::ModelFor(
    const v1::RoundAssignment& assignment) {
  const std::string& name = assignment.model_name();
  if (!current_name_.empty() && name == current_name_) return current_;
  if (!assignment.has_artifact() && !absl::StartsWith(name, kTorchScriptModelPrefix)) {
    // A registry model, built here. Never a path: the server must not make the device load (and
    // run) a local file it names.
    const std::vector<std::string> registry = models::ModelNames();
    if (std::find(registry.begin(), registry.end(), name) == registry.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("assigns model '", name, "', which this device does not have (registry: ",
                       absl::StrJoin(registry, ", "), "; or an artifact)"));
    }
    absl::StatusOr<std::shared_ptr<models::Model>> model =
        models::CreateModel(name, options_.dataset, 0);
    if (!model.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "assigns model '", name, "', which cannot be built here: ", model.status().message()));
    }
    current_name_ = name;
    current_ = *std::move(model);
    return current_;
  }
  if (!assignment.has_artifact()) {
    return absl::FailedPreconditionError(
        absl::StrCat("assigns model '", name, "' without the artifact to download it from"));
  }
  if (absl::Status status =
          CheckAssignedArtifact(assignment, options_.trust, options_.max_artifact_bytes);
      !status.ok()) {
    return status;
  }
  const v1::ModelArtifact& artifact = assignment.artifact();
  if (cache_.has_value()) {
    absl::StatusOr<std::string> cached = cache_->Load(artifact.sha256());
    if (cached.ok()) return VerifyAndLoad(assignment, *cached, /*from_cache=*/true);
    if (cached.status().code() != absl::StatusCode::kNotFound ||
        !absl::StrContains(cached.status().message(), "no artifact")) {
      Log(absl::StrCat("artifact cache: ", cached.status().message()));
    }
  }
  return absl::NotFoundError(
      absl::StrCat(ArtifactName(artifact), " is not on this device; download it"));
}

absl::StatusOr<std::shared_ptr<models::Model>> AssignedModelSource::Install(
    const v1::RoundAssignment& assignment, std::string bytes) {
  if (absl::Status status =
          CheckAssignedArtifact(assignment, options_.trust, options_.max_artifact_bytes);
      !status.ok()) {
    return status;
  }
  return VerifyAndLoad(assignment, bytes, /*from_cache=*/false);
}

absl::StatusOr<std::shared_ptr<models::Model>> AssignedModelSource::VerifyAndLoad(
    const v1::RoundAssignment& assignment, const std::string& bytes, bool from_cache) {
  const v1::ModelArtifact& artifact = assignment.artifact();
  if (absl::Status verified = VerifyArtifactBytes(artifact, bytes, options_.trust);
      !verified.ok()) {
    return verified;
  }
  const std::string name = ArtifactName(artifact);
  absl::StatusOr<std::shared_ptr<models::TorchScriptModel>> model =
      models::TorchScriptModel::LoadFromBytes(bytes, name, options_.dataset);
  if (!model.ok()) return absl::InvalidArgumentError(model.status().message());
  if (cache_.has_value() && !from_cache) {
    if (absl::Status stored = cache_->Store(artifact.sha256(), bytes); !stored.ok()) {
      Log(absl::StrCat("could not cache ", name, ": ", stored.message()));
    }
  }
  if (from_cache) Log(absl::StrCat(name, " loaded from the cache in ", cache_->dir()));
  current_name_ = assignment.model_name();
  current_ = *std::move(model);
  return current_;
}

}  // namespace fedkit::client
