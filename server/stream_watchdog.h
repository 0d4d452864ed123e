// Cancels streaming RPCs that stall or run too long. gRPC's synchronous server gives a handler no
// read timeout: a peer that opens an upload and then sends nothing would hold its thread (and its
// stream slot) forever. Each streaming handler registers here with a cancel action (the call's
// ServerContext::TryCancel) and touches its watch on every message; a background thread runs the
// action once a watch has been idle for `idle_timeout` or open for `max_duration`, which makes the
// handler's pending Read/Write fail so it returns.
//
// Thread safety: thread-safe. Cancel actions run on the watchdog's thread with its lock held: they
// must be quick and must not call back into the watchdog (TryCancel is both).
#ifndef FEDKIT_SERVER_STREAM_WATCHDOG_H_
#define FEDKIT_SERVER_STREAM_WATCHDOG_H_

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace fedkit::server {

class StreamWatchdog {
 public:
  // Durations must be positive; `check_every` is how often the thread looks.
  StreamWatchdog(absl::Duration idle_timeout, absl::Duration max_duration,
                 absl::Duration check_every = absl::Milliseconds(250));
  ~StreamWatchdog();  // stops the thread; every Watch must be gone by then
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  // Registered while alive; moving is allowed, copying is not.
  class Watch {
   public:
    Watch(Watch&& other) noexcept : dog_(std::exchange(other.dog_, nullptr)), id_(other.id_) {}
    Watch& operator=(Watch&&) = delete;
    ~Watch();
    // The stream made progress (a message in or out).
    void Touch();
    // Whether the watchdog cancelled this stream, and why ("idle" or "too long"; empty if not).
    const char* expired() const;

   private:
    friend class StreamWatchdog;
    Watch(StreamWatchdog* dog, uint64_t id) : dog_(dog), id_(id) {}
    StreamWatchdog* dog_;
    uint64_t id_;
  };
  Watch Start(std::function<void()> cancel);

  // Streams cancelled so far for idling, and for running too long.
  int64_t cancelled_idle() const;
  int64_t cancelled_too_long() const;

 private:
  struct Entry {
    std::function<void()> cancel;
    absl::Time started;
    absl::Time touched;
    const char* expired = nullptr;
  };
  void Loop();

  const absl::Duration idle_timeout_;
  const absl::Duration max_duration_;
  const absl::Duration check_every_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cancelled_idle_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cancelled_too_long_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_STREAM_WATCHDOG_H_
