// Durable coordinator checkpoints: written atomically after each committed round, read back on
// start.
#ifndef FEDKIT_SERVER_CHECKPOINT_H_
#define FEDKIT_SERVER_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedkit/v1/checkpoint.pb.h"

namespace fedkit::server {

// Checkpoints live in one directory as "checkpoint-<rounds_completed, 8 digits>.pb". A file is
// written to a temporary name in the same directory, fsync'ed, renamed into place, and the
// directory fsync'ed, so a crash at any moment leaves either the previous set of checkpoints or the
// new one, never a torn file under a final name. Each file carries a CRC32C-style checksum of its
// payload (or a length + checksum framing) so that corruption is detected on read.
class CheckpointStore {
 public:
  // Creates the directory if missing. Errors name the directory.
  static absl::StatusOr<CheckpointStore> Open(const std::string& directory);

  // Writes `checkpoint` (keyed by its rounds_completed) atomically, then deletes all but the newest
  // `keep` complete checkpoints. Leftover temporary files from a crash are removed too.
  absl::Status Write(const v1::Checkpoint& checkpoint, int keep = 3);

  // The newest checkpoint that reads back completely and passes its checksum; older ones are tried
  // when the newest is damaged. nullopt when the directory holds none. Damaged files are skipped
  // (and reported through `skipped`, if given, as "file: reason" lines), never fatal.
  absl::StatusOr<std::optional<v1::Checkpoint>> LoadNewest(std::string* skipped = nullptr) const;

  const std::string& directory() const { return directory_; }

 private:
  explicit CheckpointStore(std::string directory) : directory_(std::move(directory)) {}
  std::string directory_;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_CHECKPOINT_H_
