// A device's on-disk cache of verified model artifacts, content-addressed: the file
// `<dir>/<sha256 hex>.pt` holds the artifact whose SHA-256 is its name. A device that already holds
// an assignment's artifact downloads only the parameters.
//
// The cache is not trusted for approval: whoever reads an artifact from it verifies its signature
// again (client/model_source.h). It is trusted for nothing but being a copy, and Load() checks even
// that: a file whose bytes no longer hash to its name (a torn write by another tool, disk
// corruption) is removed and reported as absent.
//
// Writes are atomic (a temporary file in the same directory, fsync, rename, fsync of the
// directory), so a crash never leaves a partial artifact under its final name, and several
// processes may share one directory.
//
// Thread safety: thread-compatible (one thread at a time per object); several objects and
// processes may use the same directory concurrently.
#ifndef FEDKIT_CLIENT_ARTIFACT_CACHE_H_
#define FEDKIT_CLIENT_ARTIFACT_CACHE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::client {

class ArtifactCache {
 public:
  // `dir` is created (with parents) on the first Store().
  explicit ArtifactCache(std::string dir) : dir_(std::move(dir)) {}

  // The bytes stored under `sha256_hex` (64 lowercase hex digits). NOT_FOUND when absent or when
  // the stored file did not hash to its name (it is then removed); INVALID_ARGUMENT for a name
  // that is not 64 lowercase hex digits; INTERNAL naming the path for I/O errors.
  absl::StatusOr<std::string> Load(absl::string_view sha256_hex) const;

  // Stores `bytes` under `sha256_hex`, which must be their SHA-256 (INVALID_ARGUMENT otherwise).
  // INTERNAL naming the path when the directory or the file cannot be written.
  absl::Status Store(absl::string_view sha256_hex, absl::string_view bytes);

  // Where `sha256_hex` is (or would be) stored.
  std::string PathOf(absl::string_view sha256_hex) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_ARTIFACT_CACHE_H_
