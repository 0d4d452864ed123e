#include "client/model_source.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/torchscript_model.h"

namespace fedkit::client {
namespace {

constexpr absl::string_view kTorchScriptPrefix = "torchscript:sha256:";

// "artifact sha256:0123456789ab…" for messages.
std::string ArtifactName(const v1::ModelArtifact& artifact) {
  return absl::StrCat("artifact sha256:", artifact.sha256().substr(0, 12));
}

}  // namespace

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

absl::Status AssignedModelSource::CheckArtifactBeforeDownload(
    const v1::RoundAssignment& assignment) const {
  const v1::ModelArtifact& artifact = assignment.artifact();
  if (!artifacts::ParseSha256Hex(artifact.sha256()).ok() ||
      artifact.sha256() != absl::AsciiStrToLower(artifact.sha256())) {
    return absl::FailedPreconditionError(
        "assigns an artifact whose sha256 is not 64 lowercase hex digits");
  }
  if (assignment.model_name() != absl::StrCat(kTorchScriptPrefix, artifact.sha256())) {
    return absl::FailedPreconditionError(absl::StrCat("assigns model '", assignment.model_name(),
                                                      "' with ", ArtifactName(artifact),
                                                      ": they must name the same file"));
  }
  if (!artifact.format().empty() && artifact.format() != "torchscript") {
    return absl::FailedPreconditionError(absl::StrCat(ArtifactName(artifact), " is in format '",
                                                      artifact.format(),
                                                      "'; this device loads TorchScript"));
  }
  if (artifact.size_bytes() <= 0 || artifact.size_bytes() > options_.max_artifact_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(ArtifactName(artifact), " is ", artifact.size_bytes(),
                     " bytes; this device takes 1 to ", options_.max_artifact_bytes));
  }
  if (artifact.signature().empty() && artifact.key_fingerprint().empty()) {
    if (options_.trust.allow_unsigned) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        ArtifactName(artifact),
        " is unsigned, and this device loads only artifacts signed by a key it trusts"));
  }
  const bool known =
      std::any_of(options_.trust.trusted_keys.begin(), options_.trust.trusted_keys.end(),
                  [&](const artifacts::PublicKey& key) {
                    return artifacts::Fingerprint(key) == artifact.key_fingerprint();
                  });
  if (!known) {
    std::vector<std::string> trusted;
    for (const auto& key : options_.trust.trusted_keys)
      trusted.push_back(artifacts::Fingerprint(key));
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

absl::StatusOr<std::shared_ptr<models::Model>> AssignedModelSource::ModelFor(
    const v1::RoundAssignment& assignment) {
  const std::string& name = assignment.model_name();
  if (!current_name_.empty() && name == current_name_) return current_;
  if (!assignment.has_artifact() && !absl::StartsWith(name, kTorchScriptPrefix)) {
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
  if (absl::Status status = CheckArtifactBeforeDownload(assignment); !status.ok()) return status;
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
  if (absl::Status status = CheckArtifactBeforeDownload(assignment); !status.ok()) return status;
  return VerifyAndLoad(assignment, bytes, /*from_cache=*/false);
}

absl::StatusOr<std::shared_ptr<models::Model>> AssignedModelSource::VerifyAndLoad(
    const v1::RoundAssignment& assignment, const std::string& bytes, bool from_cache) {
  const v1::ModelArtifact& artifact = assignment.artifact();
  absl::StatusOr<artifacts::Sha256Digest> digest = artifacts::ParseSha256Hex(artifact.sha256());
  if (!digest.ok()) return absl::FailedPreconditionError(digest.status().message());
  const std::string name = ArtifactName(artifact);
  if (artifact.signature().empty()) {  // allowed: CheckArtifactBeforeDownload passed
    if (artifacts::Sha256(bytes) != *digest) {
      return absl::DataLossError(
          absl::StrCat(name, ": the downloaded bytes' SHA-256 is ", artifacts::Sha256Hex(bytes)));
    }
  } else {
    artifacts::SignatureFile signature;
    signature.sha256 = *digest;
    signature.key_fingerprint = artifact.key_fingerprint();
    std::copy(artifact.signature().begin(), artifact.signature().end(),
              signature.signature.begin());
    absl::Status verified = absl::PermissionDeniedError("no trusted key");
    for (const artifacts::PublicKey& key : options_.trust.trusted_keys) {
      if (artifacts::Fingerprint(key) != artifact.key_fingerprint()) continue;
      verified = artifacts::VerifySignatureFile(bytes, signature, key);
      break;
    }
    if (!verified.ok()) {
      return absl::Status(verified.code(), absl::StrCat(name, ": ", verified.message()));
    }
  }
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
