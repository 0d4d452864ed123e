// FedNova's normalization of a round's updates (Wang, Liu, Liang, Joshi, Poor, "Tackling the
// Objective Inconsistency Problem in Heterogeneous Federated Optimization", NeurIPS 2020).
//
// Client i runs tau_i local SGD steps from the global model x and uploads delta_i = y_i - x. With
// client momentum rho, its update is delta_i = -lr * G_i a_i for the vector a_i of the weights
// its steps' gradients enter with, whose L1 norm is
//     ||a_i||_1 = tau_i                                                    (rho = 0)
//     ||a_i||_1 = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)    (0 < rho < 1).
// The server averages the normalized updates and rescales by the effective step count:
//     d = sum_i p_i delta_i / ||a_i||_1,   tau_eff = sum_i p_i ||a_i||_1,   update = tau_eff * d,
// with p_i = n_i / sum_j n_j (n_i the client's example count). FedAvg's update is sum_i p_i
// delta_i: the two differ only when the ||a_i||_1 differ, i.e. when clients run different
// numbers of steps (unequal data sizes with a fixed number of epochs, or a step budget some
// clients do not reach). With equal tau_i the result is FedAvg's up to float rounding (exactly
// when tau is a power of two).
//
// FedNovaNormalization is the server's part around any example-weighted mean of the round (the
// exact WeightedFedAvgAggregator of aggregation/aggregator.h): Normalize each upload in place
// before it is accumulated with weight n_i, then Apply tau_eff to the released average. Since
// ||a_i||_1 >= 1, a normalized update stays within the bounds its original satisfied. tau_eff is
// summed in a canonical order, so the result does not depend on the order of the uploads.
//
// Errors (absl/status/status.h): INVALID_ARGUMENT for momentum outside [0, 1), steps < 1,
// num_examples < 1, a non-finite average value; FAILED_PRECONDITION for Apply or EffectiveSteps
// before any Normalize. On error nothing changes.
//
// Thread safety: thread-compatible (one thread at a time); FedNovaNormalizer is a pure function.
#ifndef FEDKIT_AGGREGATION_FEDNOVA_H_
#define FEDKIT_AGGREGATION_FEDNOVA_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::aggregation {

// ||a||_1 for `steps` local steps with client momentum `momentum` (formula above).
absl::StatusOr<double> FedNovaNormalizer(int64_t steps, double momentum);

class FedNovaNormalization {
 public:
  // INVALID_ARGUMENT unless 0 <= momentum < 1.
  static absl::StatusOr<FedNovaNormalization> Create(double momentum);

  // Divides `delta` by ||a||_1 of `steps` and records (num_examples, ||a||_1) for tau_eff.
  absl::Status Normalize(absl::Span<float> delta, int64_t num_examples, int64_t steps);
  // tau_eff = sum_i n_i ||a_i||_1 / sum_i n_i over the updates normalized so far.
  absl::StatusOr<double> EffectiveSteps() const;
  // Multiplies the example-weighted mean of the normalized updates by tau_eff, in place: the
  // FedNova update the server optimizer applies.
  absl::Status Apply(absl::Span<float> average) const;
  // Forgets the updates recorded (for the next round).
  void Reset() { records_.clear(); }
  int64_t num_inputs() const { return static_cast<int64_t>(records_.size()); }

 private:
  explicit FedNovaNormalization(double momentum) : momentum_(momentum) {}

  double momentum_;
  std::vector<std::pair<int64_t, double>> records_;  // (n_i, ||a_i||_1) per update
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_FEDNOVA_H_
