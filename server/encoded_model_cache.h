// The coordinator's encoded model downloads (compression/download_codec.h: float16, 8-bit): one
// encoding per global model, computed by the first download of that model and shared by every
// later one, so a round's downloads cost one O(model) pass in all rather than one each. Encoding
// happens under this cache's own mutex, never the coordinator's.
//
// When a model cannot be encoded (float16 and a parameter beyond 65504), that model is served in
// float32, which every device decodes, and the entry says why, so the coordinator can log it once.
//
// Thread-safe: Get may be called from any thread. Holds a strong reference only to the encoded
// bytes of the latest model (not to the model).
#ifndef FEDKIT_SERVER_ENCODED_MODEL_CACHE_H_
#define FEDKIT_SERVER_ENCODED_MODEL_CACHE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "compression/download_codec.h"

namespace fedkit::server {

class EncodedModelCache {
 public:
  struct Entry {
    // What the download carries: the cache's encoding, or kFloat32 when the model could not be
    // encoded (or the cache's encoding is kFloat32).
    compression::DownloadEncoding encoding = compression::DownloadEncoding::kFloat32;
    // compression::EncodeDownload(encoding, model); null for kFloat32 (the model's own values).
    std::shared_ptr<const std::string> bytes;
    // Why the model is served in float32 although the cache's encoding is another; OK otherwise.
    absl::Status fallback;
    // True for exactly one Get per model: the one that encoded it.
    bool first = false;
  };

  explicit EncodedModelCache(compression::DownloadEncoding encoding) : encoding_(encoding) {}

  compression::DownloadEncoding encoding() const { return encoding_; }

  // The encoding of `model` (non-null). A model is recognised by its shared_ptr's ownership, not
  // its address, so a new model allocated where an old one was is encoded afresh.
  Entry Get(const std::shared_ptr<const std::vector<float>>& model) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const compression::DownloadEncoding encoding_;
  absl::Mutex mu_;
  std::weak_ptr<const std::vector<float>> source_ ABSL_GUARDED_BY(mu_);
  Entry entry_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_ENCODED_MODEL_CACHE_H_
