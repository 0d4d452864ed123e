// How buffered asynchronous aggregation (FedBuff, Nguyen et al., AISTATS 2022) discounts a stale
// update: a device that trained from global model version v and uploads after the server has
// committed version v + s is s versions stale, and its delta is multiplied by
//     w(s) = (1 + s)^(-exponent)
// before it is added to the buffer. The named weightings are
//     constant   exponent 0     (every update counts fully)
//     sqrt       exponent 0.5   (FedBuff's choice, 1/sqrt(1 + s); the default)
//     poly:A     exponent A >= 0
// Pure logic; the coordinator and the simulator share it, and FedBuffSettings, the one type that
// says how a run buffers (K, C and the weighting).
//
// Thread safety: value types and pure functions.
#ifndef FEDKIT_AGGREGATION_STALENESS_H_
#define FEDKIT_AGGREGATION_STALENESS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedkit::aggregation {

struct StalenessWeighting {
  double exponent = 0.5;  // finite, >= 0

  // w(s) for s >= 0 (a negative staleness counts as 0). In (0, 1]; 1 at s = 0.
  double Weight(int64_t staleness) const;

  friend bool operator==(const StalenessWeighting&, const StalenessWeighting&) = default;
};

// Multiplies `delta` by w(staleness) in place (nothing to do at w = 1): the delta that enters a
// FedBuff buffer. The product is rounded to float, identically in the coordinator and simulator.
void WeighByStaleness(const StalenessWeighting& weighting, int64_t staleness,
                      absl::Span<float> delta);

// FedBuff's settings: the server commits every `buffer_size` (K) updates, and at most
// `concurrency` (C) devices train at once, each update discounted by `staleness`.
struct FedBuffSettings {
  int64_t buffer_size = 10;  // K: updates per commit, >= 1
  int64_t concurrency = 20;  // C: devices training at once, >= 1
  StalenessWeighting staleness;
};

// K >= 1, C >= 1 and a finite exponent >= 0; INVALID_ARGUMENT naming `buffer_size`,
// `concurrency` or `staleness` otherwise.
absl::Status ValidateFedBuffSettings(const FedBuffSettings& settings);

// Parses "constant", "sqrt" or "poly:A" (A a plain decimal >= 0, e.g. "poly:1" or "poly:0.25").
// INVALID_ARGUMENT naming the accepted forms otherwise.
absl::StatusOr<StalenessWeighting> ParseStalenessWeighting(absl::string_view spec);

// The shortest spec that parses back to `weighting`: "constant", "sqrt" or "poly:A".
std::string FormatStalenessWeighting(const StalenessWeighting& weighting);

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_STALENESS_H_
