#include "client/artifact_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"

namespace fedkit::client {
namespace {

absl::Status CheckName(absl::string_view sha256_hex) {
  const bool ok = sha256_hex.size() == 64 &&
                  sha256_hex.find_first_not_of("0123456789abcdef") == absl::string_view::npos;
  if (!ok) {
    return absl::InvalidArgumentError(
        "an artifact's cache name must be its SHA-256 as 64 lowercase hex digits");
  }
  return absl::OkStatus();
}

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

std::string ArtifactCache::PathOf(absl::string_view sha256_hex) const {
  return (std::filesystem::path(dir_) / absl::StrCat(sha256_hex, ".pt")).string();
}

absl::StatusOr<std::string> ArtifactCache::Load(absl::string_view sha256_hex) const {
  if (absl::Status name = CheckName(sha256_hex); !name.ok()) return name;
  const std::string path = PathOf(sha256_hex);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no artifact ", sha256_hex, " in ", dir_));
  }
  absl::StatusOr<std::string> bytes = artifacts::ReadFileBytes(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == absl::StatusCode::kNotFound) return bytes.status();
    return absl::InternalError(bytes.status().message());
  }
  if (artifacts::Sha256Hex(*bytes) != sha256_hex) {
    std::filesystem::remove(path, ec);
    return absl::NotFoundError(
        absl::StrCat(path, " did not hash to its name and was removed from the cache"));
  }
  return bytes;
}

absl::Status ArtifactCache::Store(absl::string_view sha256_hex, absl::string_view bytes) {
  if (absl::Status name = CheckName(sha256_hex); !name.ok()) return name;
  if (artifacts::Sha256Hex(bytes) != sha256_hex) {
    return absl::InvalidArgumentError(
        absl::StrCat("the bytes to cache under ", sha256_hex, " have another SHA-256"));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir_, ": ", ec.message()));
  // A name no other writer (thread or process) picks, in the same directory as the target.
  std::random_device entropy;
  const std::string temporary =
      (std::filesystem::path(dir_) /
       absl::StrFormat(".%s.%d.%08x.tmp", sha256_hex.substr(0, 16), ::getpid(), entropy()))
          .string();
  if (absl::Status written = artifacts::WriteFileBytes(temporary, bytes, 0644, false);
      !written.ok()) {
    std::filesystem::remove(temporary, ec);
    return absl::InternalError(written.message());
  }
  const std::string path = PathOf(sha256_hex);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    std::filesystem::remove(temporary, ec);
    return absl::InternalError(absl::StrCat(path, ": rename: ", std::strerror(saved)));
  }
  return FsyncDirectory(dir_);
}

}  // namespace fedkit::client
