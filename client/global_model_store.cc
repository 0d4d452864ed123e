#include "client/global_model_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "fedkit/v1/checkpoint.pb.h"
#include "proto/layout_conversion.h"

namespace fedkit::client {
namespace {

constexpr absl::string_view kHeader = "fedkit-device-global-model-v1\n";
constexpr size_t kHexLength = 64;

// The atomic replace (temporary file, fsync, rename, directory fsync) is written by hand, as in
// client/artifact_cache.cc and server/checkpoint.cc: none of the libraries FedKit links offers it.
// This copy of the directory fsync could move to a shared helper with theirs.
absl::Status FsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat(dir, ": ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat(dir, ": fsync: ", std::strerror(saved)));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGlobalModelSnapshot(const GlobalModelSnapshot& snapshot) {
  if (snapshot.parameters == nullptr) return absl::InvalidArgumentError("no parameters");
  for (const ParameterLayout::Entry& entry : snapshot.layout.entries) {
    for (int64_t d : entry.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("layout entry ", entry.name, " has a negative dimension"));
      }
    }
  }
  if (static_cast<int64_t>(snapshot.parameters->size()) != snapshot.layout.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        snapshot.parameters->size(), " parameters for a layout of ", snapshot.layout.size()));
  }
  for (float v : *snapshot.parameters) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("a parameter is not finite");
  }
  return absl::OkStatus();
}

GlobalModelStore::GlobalModelStore(std::string dir)
    : dir_(std::move(dir)), path_((std::filesystem::path(dir_) / "global_model.bin").string()) {}

absl::Status GlobalModelStore::Save(const GlobalModelSnapshot& snapshot) {
  if (absl::Status valid = ValidateGlobalModelSnapshot(snapshot); !valid.ok()) return valid;
  v1::DeviceGlobalModel message;
  message.set_model_name(snapshot.model_name);
  message.set_round(snapshot.round);
  *message.mutable_layout() = LayoutToProto(snapshot.layout);
  message.mutable_parameters()->Add(snapshot.parameters->begin(), snapshot.parameters->end());
  std::string payload;
  if (!message.SerializeToString(&payload)) {
    return absl::InternalError("could not serialize the global model");
  }
  const std::string contents = absl::StrCat(kHeader, artifacts::Sha256Hex(payload), "\n", payload);

  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir_, ": ", ec.message()));
  // A name no other writer (thread or process) picks, in the same directory as the target.
  std::random_device entropy;
  const std::string temporary =
      (std::filesystem::path(dir_) /
       absl::StrFormat(".global_model.%d.%08x.tmp", ::getpid(), entropy()))
          .string();
  // WriteFileBytes fsyncs the file before returning.
  if (absl::Status written = artifacts::WriteFileBytes(temporary, contents, 0600, false);
      !written.ok()) {
    std::filesystem::remove(temporary, ec);
    return absl::InternalError(written.message());
  }
  if (::rename(temporary.c_str(), path_.c_str()) != 0) {
    const int saved = errno;
    std::filesystem::remove(temporary, ec);
    return absl::InternalError(absl::StrCat(path_, ": rename: ", std::strerror(saved)));
  }
  return FsyncDirectory(dir_);
}

absl::StatusOr<GlobalModelSnapshot> GlobalModelStore::Load() const {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) {
    return absl::NotFoundError(absl::StrCat("no stored global model at ", path_));
  }
  absl::StatusOr<std::string> contents = artifacts::ReadFileBytes(path_);
  if (!contents.ok()) {
    if (contents.status().code() == absl::StatusCode::kNotFound) return contents.status();
    return absl::InternalError(contents.status().message());
  }
  const absl::string_view all = *contents;
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(path_, ": not a complete stored global model: ", why));
  };
  if (!absl::StartsWith(all, kHeader)) return corrupt("unknown header");
  absl::string_view rest = all.substr(kHeader.size());
  if (rest.size() < kHexLength + 1 || rest[kHexLength] != '\n') return corrupt("no checksum");
  const absl::string_view hex = rest.substr(0, kHexLength);
  const absl::string_view payload = rest.substr(kHexLength + 1);
  if (artifacts::Sha256Hex(payload) != hex) return corrupt("SHA-256 mismatch");
  v1::DeviceGlobalModel message;
  if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return corrupt("the payload does not parse");
  }
  GlobalModelSnapshot snapshot;
  snapshot.model_name = message.model_name();
  snapshot.round = message.round();
  // Each entry's size bounded by the values stored before LayoutFromProto multiplies the
  // dimensions: no overflow from an edited file.
  const int64_t stored = message.parameters_size();
  for (const auto& entry : message.layout().entries()) {
    int64_t numel = 1;
    for (int64_t d : entry.shape()) {
      if (d < 0) return corrupt("a layout dimension is negative");
      if (d > 0 && numel > stored / d) return corrupt("the layout is larger than the values");
      numel *= d;
    }
  }
  snapshot.layout = LayoutFromProto(message.layout());
  snapshot.parameters = std::make_shared<const std::vector<float>>(message.parameters().begin(),
                                                                   message.parameters().end());
  if (absl::Status valid = ValidateGlobalModelSnapshot(snapshot); !valid.ok()) {
    return corrupt(valid.message());
  }
  return snapshot;
}

}  // namespace fedkit::client
