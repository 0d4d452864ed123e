#include "server/caller_quotas.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/retry_after.h"

namespace fedkit::server {

absl::Status CallerQuotas::AdmitCheckIn(const Caller& caller, const std::string& client_id,
                                        absl::Time now, std::string* reason) {
  const std::string identity = caller.identity();
  if (identity == "anonymous") return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  SweepLocked(now);
  auto [it, inserted] = entries_.try_emplace(identity);
  Entry& entry = it->second;
  if (inserted) {
    entry.tokens = options_.check_in_burst;
    entry.refilled = now;
  }
  entry.last_seen = now;
  if (options_.check_ins_per_second > 0) {
    const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - entry.refilled));
    entry.tokens =
        std::min(options_.check_in_burst, entry.tokens + elapsed * options_.check_ins_per_second);
    entry.refilled = now;
    if (entry.tokens < 1) {
      if (reason != nullptr) *reason = "rate_limited";
      return ResourceExhaustedRetryAfter(
          absl::StrCat("too many check-ins from ", identity, " (at most ",
                       options_.check_ins_per_second, " per second)"),
          absl::Seconds((1 - entry.tokens) / options_.check_ins_per_second));
    }
    entry.tokens -= 1;
  }
  if (caller.many_ids() && options_.max_ids_per_identity > 0) {
    auto seen = entry.ids.find(client_id);
    if (seen != entry.ids.end()) {
      seen->second = now;
      return absl::OkStatus();
    }
    if (static_cast<int64_t>(entry.ids.size()) >= options_.max_ids_per_identity) {
      absl::erase_if(entry.ids, [&](const auto& id) { return now - id.second > options_.id_ttl; });
    }
    if (static_cast<int64_t>(entry.ids.size()) >= options_.max_ids_per_identity) {
      absl::Time oldest = now;
      for (const auto& [id, last] : entry.ids) oldest = std::min(oldest, last);
      if (reason != nullptr) *reason = "ids_per_identity";
      return ResourceExhaustedRetryAfter(
          absl::StrCat(identity, " already uses ", entry.ids.size(),
                       " client ids (the most one identity may use)"),
          oldest + options_.id_ttl - now);
    }
    entry.ids.emplace(client_id, now);
  }
  return absl::OkStatus();
}

absl::StatusOr<CallerQuotas::StreamSlot> CallerQuotas::OpenStream(const Caller& caller) {
  const std::string identity = caller.identity();
  if (identity == "anonymous") return StreamSlot();
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[identity];
  if (options_.max_streams_per_identity > 0 && entry.streams >= options_.max_streams_per_identity) {
    return ResourceExhaustedRetryAfter(absl::StrCat(identity, " already has ", entry.streams,
                                                    " transfers open (the most one identity may)"),
                                       absl::Seconds(5));
  }
  ++entry.streams;
  return StreamSlot(this, identity);
}

CallerQuotas::StreamSlot::~StreamSlot() {
  if (quotas_ != nullptr) quotas_->CloseStream(identity_);
}

void CallerQuotas::CloseStream(const std::string& identity) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(identity);
  if (it != entries_.end() && it->second.streams > 0) --it->second.streams;
}

void CallerQuotas::SweepLocked(absl::Time now) {
  // At most twice per id_ttl: the cost is amortized over the check-ins in between.
  if (now - last_sweep_ < options_.id_ttl / 2) return;
  last_sweep_ = now;
  absl::erase_if(entries_, [&](auto& item) {
    Entry& entry = item.second;
    absl::erase_if(entry.ids, [&](const auto& id) { return now - id.second > options_.id_ttl; });
    return entry.streams == 0 && now - entry.last_seen > options_.id_ttl;
  });
}

int64_t CallerQuotas::tracked_identities() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(entries_.size());
}

}  // namespace fedkit::server
