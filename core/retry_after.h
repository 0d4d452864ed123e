// A retry hint carried on an absl::Status: "try again after this long". The coordinator attaches
// one to RESOURCE_EXHAUSTED refusals (a full waiting pool, a caller over its quota, too many
// streams); the gRPC service sends it as the "fedkit-retry-after-ms" trailing metadata, and the
// device library waits at least that long before retrying (client/federated_client.cc).
//
// Header-only; thread-compatible (pure functions).
#ifndef FEDKIT_CORE_RETRY_AFTER_H_
#define FEDKIT_CORE_RETRY_AFTER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace fedkit {

// The status payload's type URL and the gRPC metadata key of the hint (milliseconds, decimal).
inline constexpr char kRetryAfterPayload[] = "fedkit.dev/retry-after-ms";
inline constexpr char kRetryAfterMetadata[] = "fedkit-retry-after-ms";

// `status` with a retry hint of `after` (rounded up to whole milliseconds, at least 1).
inline absl::Status WithRetryAfter(absl::Status status, absl::Duration after) {
  const int64_t ms =
      std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(after, absl::Milliseconds(1))));
  status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(ms)));
  return status;
}

// The hint `status` carries, if any (a malformed or non-positive one counts as none).
inline std::optional<absl::Duration> RetryAfterOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterPayload);
  if (!payload.has_value()) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &ms) || ms <= 0) return std::nullopt;
  return absl::Milliseconds(ms);
}

// A RESOURCE_EXHAUSTED refusal whose message ends with the hint in words.
inline absl::Status ResourceExhaustedRetryAfter(absl::string_view message, absl::Duration after) {
  return WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                            message, "; retry after ",
                            absl::FormatDuration(absl::Ceil(after, absl::Milliseconds(1))))),
                        after);
}

}  // namespace fedkit

#endif  // FEDKIT_CORE_RETRY_AFTER_H_
