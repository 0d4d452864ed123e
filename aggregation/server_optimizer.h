// Server optimizers that apply the round's averaged client delta to the global model, treating the
// delta as a pseudo-gradient step (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Alg.
// 2).
#ifndef FEDKIT_AGGREGATION_SERVER_OPTIMIZER_H_
#define FEDKIT_AGGREGATION_SERVER_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::aggregation {

struct ServerOptimizerOptions {
  enum class Kind { kSgd, kAdam, kYogi, kAdagrad };
  Kind kind = Kind::kSgd;
  double learning_rate = 1.0;
  double momentum = 0.0;  // kSgd only
  double beta1 = 0.9;     // adaptive kinds
  double beta2 = 0.99;    // kAdam, kYogi
  double tau = 1e-3;      // adaptivity (epsilon) of the adaptive kinds; v starts at tau^2
};

// Parses "sgd", "adam", "yogi" or "adagrad". INVALID_ARGUMENT quoting the text otherwise.
absl::StatusOr<ServerOptimizerOptions::Kind> ParseServerOptimizerKind(std::string_view text);
std::string_view ServerOptimizerKindName(ServerOptimizerOptions::Kind kind);

// Update rules, with Delta the averaged client delta (client model minus global model), all
// element-wise, t counting rounds from 0:
//   sgd:     m = momentum * m + Delta;                  x += lr * m      (lr 1, momentum 0 =
//   FedAvg) adagrad: m = b1 m + (1 - b1) Delta; v = v + Delta^2;                 x += lr * m /
//   (sqrt(v) + tau) adam:    m = b1 m + (1 - b1) Delta; v = b2 v + (1 - b2) Delta^2;     x += lr *
//   m / (sqrt(v) + tau) yogi:    m = b1 m + (1 - b1) Delta; v = v - (1 - b2) Delta^2 sign(v -
//   Delta^2);
//                                                                        x += lr * m / (sqrt(v) +
//                                                                        tau)
// with m starting at 0 and v at tau^2, as in the paper (no bias correction).
// State is kept in double. Not thread-safe.
class ServerOptimizer {
 public:
  virtual ~ServerOptimizer() = default;

  // Applies one round's averaged delta to `model` in place.
  // INVALID_ARGUMENT if sizes differ from the dimension the optimizer was made for.
  virtual absl::Status Apply(absl::Span<const float> averaged_delta, absl::Span<float> model) = 0;

  // The optimizer's state as a flat vector (for checkpoints), and its restoration.
  virtual std::vector<double> SaveState() const = 0;
  virtual absl::Status RestoreState(absl::Span<const double> state) = 0;
};

// INVALID_ARGUMENT for a non-positive learning rate or tau, momentum/betas outside [0, 1),
// or dimension < 1.
absl::StatusOr<std::unique_ptr<ServerOptimizer>> MakeServerOptimizer(
    const ServerOptimizerOptions& options, int64_t dimension);

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_SERVER_OPTIMIZER_H_
