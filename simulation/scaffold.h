// SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled
// Averaging for Federated Learning", ICML 2020), option II, as the simulator's round hooks
// (simulation/round_algorithm.h).
//
// The server keeps a control variate c, each client i its own c_i (both start at 0). Client i
// runs K local steps from the global model x with y <- y - lr (grad(y) + c - c_i) (Correction
// gives it c - c_i; with client momentum the correction is applied after the momentum step, as
// client::LocalTrainer::Train says), uploads delta_y = y - x, and would compute
//     c_i+ = c_i - c + (x - y) / (K lr),   delta_c = c_i+ - c_i = -c - delta_y / (K lr).
// OnUpload does that client-side step for the virtual client, from the upload's delta and steps
// (so a clipped upload gives the clipped delta's variate) and the plan's learning rate, and stores
// c_i+. The server's model step is the FedAvg round's (the example-weighted mean of delta_y, then
// the server optimizer: x <- x + lr_g mean(delta_y) with --server-lr lr_g), as NIID-Bench does;
// the paper's mean is unweighted. EndRound moves c <- c + (|S| / N) mean_S(delta_c) =
// c + sum_S(delta_c) / N, N the population. c and the round's sum of delta_c are kept in double
// and summed in upload order (the simulator's consumer runs in sampled order, so the result does
// not depend on the thread count).
//
// Memory: c and the round's sum, 2 x dimension doubles; c_i per client seen, in the store
// (simulation/control_variates.h: in memory or on disk).
//
// Errors (absl/status/status.h): Create: INVALID_ARGUMENT for dimension or population < 1, a
// learning rate not > 0, or no store; OnUpload: INVALID_ARGUMENT for an update of the wrong size
// or with no steps, and the store's errors; nothing changes on error.
//
// Thread safety: as RoundAlgorithm says (Correction concurrently; OnUpload and EndRound on one
// thread, never concurrently with a Correction of the same client).
#ifndef FEDKIT_SIMULATION_SCAFFOLD_H_
#define FEDKIT_SIMULATION_SCAFFOLD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/local_trainer.h"
#include "simulation/control_variates.h"
#include "simulation/round_algorithm.h"

namespace fedkit::simulation {

class Scaffold final : public RoundAlgorithm {
 public:
  // Takes ownership of `store` (of the model's dimension).
  static absl::StatusOr<std::unique_ptr<Scaffold>> Create(
      int64_t dimension, int64_t population, double learning_rate,
      std::unique_ptr<ControlVariateStore> store);

  // c - c_i.
  absl::StatusOr<std::vector<float>> Correction(int64_t client) const override;
  // c_i <- c_i + delta_c; returns delta_c's float32 bytes (the second upload).
  absl::StatusOr<int64_t> OnUpload(int64_t client, int64_t weight,
                                   client::ClientUpdate& update) override;
  // c <- c + sum of the round's delta_c / N (also when `average` is nullopt).
  absl::Status EndRound(std::optional<std::vector<float>>& average) override;

  const std::vector<double>& server_control() const { return c_; }
  const ControlVariateStore& store() const { return *store_; }

 private:
  Scaffold(int64_t population, double learning_rate, std::unique_ptr<ControlVariateStore> store);

  const int64_t population_;
  const double learning_rate_;
  std::unique_ptr<ControlVariateStore> store_;
  std::vector<double> c_;
  std::vector<double> round_sum_;  // of delta_c over the round's uploads so far
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_SCAFFOLD_H_
