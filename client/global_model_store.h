// A device's last good global model on disk: the parameters of the last verified download (with
// the model's name, the round and the layout), so that an app restarted without a network still
// has a model to run (FederatedClient::LatestModel, client/federated_client.h).
//
// One file, `<dir>/global_model.bin`: a header line, the SHA-256 (OpenSSL, artifacts/signing.h)
// of the payload as 64 hex digits and a newline, then the payload, a fedkit.v1.DeviceGlobalModel
// (proto/fedkit/v1/checkpoint.proto). Load() checks the hash before parsing and then the payload's
// consistency (layout against the number of values, finite values): a torn, truncated or edited
// file is refused, never trusted. Writes are atomic: a temporary file in the same directory,
// fsync, rename, fsync of the directory, so a crash leaves either the old file or the new one.
//
// No LibTorch. Thread safety: thread-compatible (one thread at a time per object); Save and Load
// do file I/O and hashing: do not call them under a lock other threads wait on.
#ifndef FEDKIT_CLIENT_GLOBAL_MODEL_STORE_H_
#define FEDKIT_CLIENT_GLOBAL_MODEL_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/parameter_layout.h"

namespace fedkit::client {

// A global model as the coordinator sent it. The parameters are immutable and shared: a snapshot
// is cheap to copy and stays valid whatever the device does next.
struct GlobalModelSnapshot {
  std::string model_name;  // as in the assignment (a registry name or "torchscript:sha256:<hex>")
  int64_t round = 0;       // the round whose download it was
  ParameterLayout layout;
  std::shared_ptr<const std::vector<float>> parameters;  // layout.size() values, all finite
};

// INVALID_ARGUMENT naming what is wrong when `snapshot` has no parameters, a count other than its
// layout's size, a non-finite value, or a layout entry with a negative dimension.
absl::Status ValidateGlobalModelSnapshot(const GlobalModelSnapshot& snapshot);

class GlobalModelStore {
 public:
  // `dir` is created (with parents) on the first Save().
  explicit GlobalModelStore(std::string dir);

  // Replaces the stored model with `snapshot` atomically. INVALID_ARGUMENT as
  // ValidateGlobalModelSnapshot (nothing written); INTERNAL naming the path for I/O errors (the
  // previous file, if any, is left as it was).
  absl::Status Save(const GlobalModelSnapshot& snapshot);

  // The stored model. NOT_FOUND when there is none; DATA_LOSS naming the path when the file is not
  // one Save() wrote completely (header, hash, payload or its consistency); INTERNAL naming the
  // path for other I/O errors. A refused file is left in place (the next Save replaces it).
  absl::StatusOr<GlobalModelSnapshot> Load() const;

  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_GLOBAL_MODEL_STORE_H_
