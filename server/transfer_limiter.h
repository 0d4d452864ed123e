// Bounds how many model-sized transfers (model downloads, update uploads) the coordinator serves
// at once. Each in-flight transfer holds about one model of buffers (the proto chunk and its
// serialized copy for a download; the assembled delta for an upload), so with 1,000 devices
// fetching the model at a round's start memory would grow with the fleet; with the limiter it
// grows with the limit. A transfer that cannot get a slot within its wait gets RESOURCE_EXHAUSTED
// (which devices treat as "retry later").
//
// Thread safety: thread-safe; Acquire blocks the calling (gRPC) thread.
#ifndef FEDKIT_SERVER_TRANSFER_LIMITER_H_
#define FEDKIT_SERVER_TRANSFER_LIMITER_H_

#include <cstdint>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedkit::server {

class TransferLimiter {
 public:
  // Held while a transfer runs; releases its slot when destroyed.
  class Slot {
   public:
    Slot(Slot&& other) noexcept : limiter_(other.limiter_) { other.limiter_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (limiter_ != nullptr) limiter_->Release();
    }

   private:
    friend class TransferLimiter;
    explicit Slot(TransferLimiter* limiter) : limiter_(limiter) {}
    TransferLimiter* limiter_;
  };

  // max_in_flight >= 1.
  explicit TransferLimiter(int64_t max_in_flight) : max_in_flight_(max_in_flight) {}

  // A slot, waiting until `deadline` at most; nullopt if none freed up by then.
  std::optional<Slot> Acquire(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t in_flight() const ABSL_LOCKS_EXCLUDED(mu_);
  // The most transfers that were ever in flight at once (for tests and metrics).
  int64_t peak_in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Release() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasFreeSlot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < max_in_flight_;
  }

  const int64_t max_in_flight_;
  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t peak_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_TRANSFER_LIMITER_H_
