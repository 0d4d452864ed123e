#include "server/stream_watchdog.h"

#include <utility>

namespace fedkit::server {

StreamWatchdog::StreamWatchdog(absl::Duration idle_timeout, absl::Duration max_duration,
                               absl::Duration check_every)
    : idle_timeout_(idle_timeout), max_duration_(max_duration), check_every_(check_every) {
  thread_ = std::thread([this] { Loop(); });
}

StreamWatchdog::~StreamWatchdog() {
  stop_.Notify();
  thread_.join();
}

StreamWatchdog::Watch StreamWatchdog::Start(std::function<void()> cancel) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  const uint64_t id = next_id_++;
  entries_[id] = Entry{.cancel = std::move(cancel), .started = now, .touched = now};
  return Watch(this, id);
}

StreamWatchdog::Watch::~Watch() {
  if (dog_ == nullptr) return;
  absl::MutexLock lock(&dog_->mu_);
  dog_->entries_.erase(id_);
}

void StreamWatchdog::Watch::Touch() {
  absl::MutexLock lock(&dog_->mu_);
  auto it = dog_->entries_.find(id_);
  if (it != dog_->entries_.end()) it->second.touched = absl::Now();
}

const char* StreamWatchdog::Watch::expired() const {
  absl::MutexLock lock(&dog_->mu_);
  auto it = dog_->entries_.find(id_);
  return it == dog_->entries_.end() || it->second.expired == nullptr ? "" : it->second.expired;
}

void StreamWatchdog::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(check_every_)) {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    for (auto& [id, entry] : entries_) {
      if (entry.expired != nullptr) continue;
      if (now - entry.started > max_duration_) {
        entry.expired = "too long";
        ++cancelled_too_long_;
      } else if (now - entry.touched > idle_timeout_) {
        entry.expired = "idle";
        ++cancelled_idle_;
      } else {
        continue;
      }
      entry.cancel();
    }
  }
}

int64_t StreamWatchdog::cancelled_idle() const {
  absl::MutexLock lock(&mu_);
  return cancelled_idle_;
}

int64_t StreamWatchdog::cancelled_too_long() const {
  absl::MutexLock lock(&mu_);
  return cancelled_too_long_;
}

}  // namespace fedkit::server
