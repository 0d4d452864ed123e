// SCAFFOLD's per-client control variates c_i (Karimireddy et al. 2020), kept for the clients seen
// so far only: a client never stored has c_i = 0 and costs nothing.
//
// Two modes, with the same results bit for bit:
//   InMemory  dimension x 4 bytes per client stored (plus a hash-map entry), nothing on disk.
//   OnDisk    one file per client stored in a directory, "client-<index>.f32": `dimension` raw
//             float32 values in this machine's byte order (a scratch file of one run, not a
//             portable format). Memory does not grow with the clients at all; disk grows by
//             dimension x 4 bytes per client stored. Each Add rewrites the client's file through
//             a temporary file and a rename, so a file is never half-written.
// A population of N clients of which M were ever sampled therefore needs M x dimension x 4
// bytes in one place or the other, never N x dimension.
//
// Errors (absl/status/status.h): INVALID_ARGUMENT for dimension < 1, a negative client or a
// vector of the wrong size; FAILED_PRECONDITION for a directory that holds any entry when the
// store opens it (a previous run's variates would silently be reused); INTERNAL for a file that
// cannot be read or written, DATA_LOSS for one of the wrong size. On error the client's c_i is
// unchanged.
//
// Ownership: the store owns its variates (and, on disk, the files it writes; it leaves them when
// destroyed, for inspection; remove the directory to reclaim the space). Thread safety: every
// method may be called from any thread; calls are serialized by an internal mutex.
#ifndef FEDKIT_SIMULATION_CONTROL_VARIATES_H_
#define FEDKIT_SIMULATION_CONTROL_VARIATES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace fedkit::simulation {

class ControlVariateStore {
 public:
  static absl::StatusOr<std::unique_ptr<ControlVariateStore>> InMemory(int64_t dimension);
  // Creates `directory` if missing.
  static absl::StatusOr<std::unique_ptr<ControlVariateStore>> OnDisk(const std::string& directory,
                                                                     int64_t dimension);

  // c_i of `client`: zeros when it was never stored.
  absl::StatusOr<std::vector<float>> Get(int64_t client) const;
  // c_i += delta, in float.
  absl::Status Add(int64_t client, absl::Span<const float> delta);

  int64_t dimension() const { return dimension_; }
  bool on_disk() const { return !directory_.empty(); }
  // Clients with a stored c_i.
  int64_t clients_stored() const;
  // Bytes of variates held in memory (0 on disk).
  int64_t bytes_in_memory() const;

 private:
  ControlVariateStore(std::string directory, int64_t dimension)
      : directory_(std::move(directory)), dimension_(dimension) {}
  std::string PathOf(int64_t client) const;
  absl::StatusOr<std::vector<float>> GetLocked(int64_t client) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::string directory_;  // "" = in memory
  const int64_t dimension_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<int64_t, std::vector<float>> in_memory_ ABSL_GUARDED_BY(mutex_);
  int64_t files_ ABSL_GUARDED_BY(mutex_) = 0;  // on disk: clients with a file
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_CONTROL_VARIATES_H_
