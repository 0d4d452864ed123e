#include "server/transfer_limiter.h"

#include <algorithm>

namespace fedkit::server {

std::optional<TransferLimiter::Slot> TransferLimiter::Acquire(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(this, &TransferLimiter::HasFreeSlot), deadline)) {
    return std::nullopt;
  }
  ++in_flight_;
  peak_ = std::max(peak_, in_flight_);
  return Slot(this);
}

void TransferLimiter::Release() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

int64_t TransferLimiter::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

int64_t TransferLimiter::peak_in_flight() const {
  absl::MutexLock lock(&mu_);
  return peak_;
}

}  // namespace fedkit::server
