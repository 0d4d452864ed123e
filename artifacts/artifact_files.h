// File helpers for signed artifacts: the only part of fedkit::artifacts that touches the file
// system (artifacts/signing.h works on bytes). Errors name the path. Thread-compatible.
#ifndef FEDKIT_ARTIFACTS_ARTIFACT_FILES_H_
#define FEDKIT_ARTIFACTS_ARTIFACT_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::artifacts {

// The whole file. NOT_FOUND / PERMISSION_DENIED / INTERNAL "PATH: reason".
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);
// Writes `contents` (then fsync) to `path` with permission bits `mode` (e.g. 0600 for a private
// key), set with fchmod so an existing file replaced under overwrite == true is narrowed too. With
// overwrite == false an existing file is ALREADY_EXISTS "PATH already exists" and left untouched.
absl::Status WriteFileBytes(const std::string& path, absl::string_view contents, unsigned mode,
                            bool overwrite);

}  // namespace fedkit::artifacts

#endif  // FEDKIT_ARTIFACTS_ARTIFACT_FILES_H_
