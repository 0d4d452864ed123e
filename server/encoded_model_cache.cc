#include "server/encoded_model_cache.h"

#include <utility>

namespace fedkit::server {

EncodedModelCache::Entry EncodedModelCache::Get(
    const std::shared_ptr<const std::vector<float>>& model) {
  if (encoding_ == compression::DownloadEncoding::kFloat32) return Entry();
  absl::MutexLock lock(&mu_);
  const bool same =
      !source_.owner_before(model) && !model.owner_before(source_) && !source_.expired();
  if (same) {
    Entry entry = entry_;
    entry.first = false;
    return entry;
  }
  Entry entry;
  entry.first = true;
  absl::StatusOr<std::string> encoded = compression::EncodeDownload(encoding_, *model);
  if (encoded.ok()) {
    entry.encoding = encoding_;
    entry.bytes = std::make_shared<const std::string>(*std::move(encoded));
  } else {
    entry.fallback = encoded.status();
  }
  source_ = model;
  entry_ = entry;
  return entry;
}

}  // namespace fedkit::server
