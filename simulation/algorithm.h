// The federated optimization algorithm a simulation runs (fedkit-sim --algorithm): the vocabulary
// type and its names. What each one does is in simulation/round_algorithm.h.
//
//   fedavg    FedAvg (McMahan et al. 2017); with TrainingPlan::prox_mu > 0 it is FedProx.
//   scaffold  SCAFFOLD (Karimireddy et al. 2020), option II control variates.
//   fednova   FedNova (Wang et al. 2020): updates normalized by their local step counts.
//   fedbuff   FedBuff (Nguyen et al. 2022): buffered asynchronous aggregation, run by
//             simulation/fedbuff_simulator.h rather than Simulator.
//
// Adding an algorithm is one enumerator and one row of kAlgorithmNames (algorithm.cc).
//
// Thread safety: pure functions on values.
#ifndef FEDKIT_SIMULATION_ALGORITHM_H_
#define FEDKIT_SIMULATION_ALGORITHM_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::simulation {

enum class Algorithm { kFedAvg, kScaffold, kFedNova, kFedBuff };

struct AlgorithmOptions {
  Algorithm algorithm = Algorithm::kFedAvg;
  // SCAFFOLD: where the clients' control variates live. "" keeps them in memory (model dimension
  // x 4 bytes per client seen so far); a directory keeps them on disk, one file per client seen,
  // and memory does not grow with the clients at all. The directory is created if missing and
  // must hold no file at the start.
  std::string control_variates_dir;
};

// Parses an algorithm's name (as AlgorithmName prints it). INVALID_ARGUMENT quoting the text and
// listing the accepted names otherwise.
absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view text);
absl::string_view AlgorithmName(Algorithm algorithm);
// "fedavg | scaffold | fednova | fedbuff", for help texts.
std::string AlgorithmNames();

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_ALGORITHM_H_
