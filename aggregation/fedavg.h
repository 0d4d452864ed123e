// Weighted federated averaging of model deltas (McMahan et al. 2017).
#ifndef FEDKIT_AGGREGATION_FEDAVG_H_
#define FEDKIT_AGGREGATION_FEDAVG_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::aggregation {

// Accumulates sum_u w_u * delta_u and sum_u w_u, with w_u = the client's example count, optionally
// capped at `max_weight` (so no single client dominates). Accumulation is in double and in the
// order Add() is called, so a caller that adds in a fixed order gets bit-identical results
// regardless of how many threads produced the deltas. Not thread-safe: one accumulator per round,
// fed by one thread.
class WeightedFedAvg {
 public:
  // dimension: length of every delta. max_weight: cap on a client's weight; nullopt = uncapped.
  explicit WeightedFedAvg(int64_t dimension, std::optional<double> max_weight = std::nullopt);

  // INVALID_ARGUMENT if delta.size() != dimension, num_examples <= 0, or any value is not finite.
  // On error the accumulator is unchanged.
  absl::Status Add(absl::Span<const float> delta, int64_t num_examples);

  int64_t dimension() const { return static_cast<int64_t>(sum_.size()); }
  int64_t num_contributions() const { return num_contributions_; }
  double total_weight() const { return total_weight_; }

  // The weighted mean delta: sum_u w_u delta_u / sum_u w_u.
  // FAILED_PRECONDITION if nothing was added.
  absl::StatusOr<std::vector<float>> Average() const;

 private:
  std::optional<double> max_weight_;
  std::vector<double> sum_;
  double total_weight_ = 0.0;
  int64_t num_contributions_ = 0;
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_FEDAVG_H_
