// Per-caller limits the gRPC service applies before a request reaches the round engine, so one
// identity (a token, a certificate) cannot exhaust what all devices share:
// - client ids in use: an open-ended token (a prefix or '*', server/identity.h) may have at most
//   `max_ids_per_identity` distinct client ids seen within `id_ttl` (a flood of fresh ids from one
//   token fills neither the waiting pool nor memory);
// - check-in rate: a token bucket per identity (`check_ins_per_second`, `check_in_burst`);
// - streams: at most `max_streams_per_identity` upload/download streams open at once.
// Anonymous callers (no tokens, no client certificates: a closed network) are not limited here;
// the coordinator's global caps (waiting pool, streams, threads) still apply.
// Refusals are RESOURCE_EXHAUSTED with a retry hint (core/retry_after.h) and a reason for the
// refusal counters.
//
// Memory: one small entry per identity active within id_ttl, plus its ids; idle entries are swept.
// Thread safety: thread-safe (one internal mutex, held briefly; never calls out while holding it).
#ifndef FEDKIT_SERVER_CALLER_QUOTAS_H_
#define FEDKIT_SERVER_CALLER_QUOTAS_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/identity.h"

namespace fedkit::server {

struct CallerQuotaOptions {
  int64_t max_ids_per_identity = 1000;  // open-ended tokens only; 0 = unlimited
  double check_ins_per_second = 100;    // per identity; 0 = unlimited
  double check_in_burst = 200;
  int64_t max_streams_per_identity = 32;  // 0 = unlimited
  absl::Duration id_ttl = absl::Seconds(60);
};

class CallerQuotas {
 public:
  explicit CallerQuotas(CallerQuotaOptions options) : options_(options) {}

  // A check-in by `caller` as `client_id` at `now`: OK, or RESOURCE_EXHAUSTED with a retry hint;
  // `*reason` (may be null) is then "rate_limited" or "ids_per_identity".
  absl::Status AdmitCheckIn(const Caller& caller, const std::string& client_id, absl::Time now,
                            std::string* reason);

  // Holds one of the caller's stream slots until destroyed (or nothing, for anonymous callers).
  class StreamSlot {
   public:
    StreamSlot() = default;
    StreamSlot(StreamSlot&& other) noexcept
        : quotas_(std::exchange(other.quotas_, nullptr)), identity_(std::move(other.identity_)) {}
    StreamSlot& operator=(StreamSlot&&) = delete;
    ~StreamSlot();

   private:
    friend class CallerQuotas;
    StreamSlot(CallerQuotas* quotas, std::string identity)
        : quotas_(quotas), identity_(std::move(identity)) {}
    CallerQuotas* quotas_ = nullptr;
    std::string identity_;
  };
  // A stream slot, or RESOURCE_EXHAUSTED (reason "streams_per_identity") with a retry hint.
  absl::StatusOr<StreamSlot> OpenStream(const Caller& caller);

  // Identities tracked now (tests, metrics).
  int64_t tracked_identities() const;

 private:
  struct Entry {
    double tokens = 0;
    absl::Time refilled;
    absl::Time last_seen;
    int64_t streams = 0;
    absl::flat_hash_map<std::string, absl::Time> ids;  // open-ended callers only
  };
  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseStream(const std::string& identity);

  const CallerQuotaOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sweep_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_CALLER_QUOTAS_H_
