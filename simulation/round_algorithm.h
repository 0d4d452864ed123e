// What SCAFFOLD and FedNova (simulation/algorithm.h) change in the simulator's plain FedAvg round,
// as three hooks the Simulator calls; FedAvg (and FedProx) has none (MakeRoundAlgorithm returns
// null). Everything else (sampling, training, the exact weighted mean of aggregation/aggregator.h,
// the server optimizer) is the FedAvg round's.
//
//   scaffold  Correction gives client i the gradient correction c - c_i for its local steps;
//             OnUpload derives delta_c_i from its upload and stores c_i + delta_c_i; EndRound moves
//             the server's c by sum_i delta_c_i / N (simulation/scaffold.h).
//   fednova   OnUpload divides the upload by ||a_i||_1 of its step count; EndRound multiplies the
//             round's example-weighted mean by tau_eff (aggregation/fednova.h).
//
// Errors (absl/status/status.h): ValidateAlgorithm returns INVALID_ARGUMENT naming the option
// fields in backquotes (`algorithm`, `control_variates_dir`, `secure_aggregation`, `mode` (DP),
// `plan.compression`, `aggregator`, `attack`, `prox_mu`) for a combination an algorithm cannot run
// with; the hooks' errors are their classes'.
//
// Thread safety: Correction may be called from several threads at once (for different clients);
// OnUpload and EndRound from one thread at a time (the round's ordered consumer).
#ifndef FEDKIT_SIMULATION_ROUND_ALGORITHM_H_
#define FEDKIT_SIMULATION_ROUND_ALGORITHM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/local_trainer.h"
#include "simulation/algorithm.h"

namespace fedkit::simulation {

struct SimulationOptions;  // simulation/simulator.h

class RoundAlgorithm {
 public:
  virtual ~RoundAlgorithm() = default;

  // The correction `client`'s local training adds to every gradient
  // (client::LocalTrainer::Train's gradient_correction); empty for none.
  virtual absl::StatusOr<std::vector<float>> Correction(int64_t client) const = 0;
  // An upload the round aggregates, before it is accumulated with weight `weight` (its example
  // count, capped): may rewrite update.delta. Returns the bytes the upload carries beyond the
  // model delta.
  virtual absl::StatusOr<int64_t> OnUpload(int64_t client, int64_t weight,
                                           client::ClientUpdate& update) = 0;
  // Ends the round: `average` is the weighted mean of the uploads as OnUpload left them (nullopt
  // when the round aggregated nothing), and may be rewritten before the server optimizer applies
  // it.
  virtual absl::Status EndRound(std::optional<std::vector<float>>& average) = 0;
};

// Whether `options` can run its algorithm in `processes` processes (see the top of the file).
absl::Status ValidateAlgorithm(const SimulationOptions& options, int processes);

// The hooks of options.algorithm for a model of `dimension` parameters and a population of
// `population` clients; null for fedavg. SCAFFOLD's store errors are ControlVariateStore's
// (simulation/control_variates.h), prefixed with `control_variates_dir`.
absl::StatusOr<std::unique_ptr<RoundAlgorithm>> MakeRoundAlgorithm(const SimulationOptions& options,
                                                                   int64_t dimension,
                                                                   int64_t population);

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_ROUND_ALGORITHM_H_
