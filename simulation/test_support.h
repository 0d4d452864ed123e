// What the simulation tests share (test-only, header-only): a small federated dataset, and running
// a simulator's rounds.
#ifndef FEDKIT_SIMULATION_TEST_SUPPORT_H_
#define FEDKIT_SIMULATION_TEST_SUPPORT_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "data/federated_dataset.h"
#include "gtest/gtest.h"
#include "simulation/simulator.h"

namespace fedkit::simulation::test_support {

// Synthetic(0.5, 0.5) with its natural per-device partition over `clients` devices (seed 3), and
// an eval set from `eval_clients` devices' test splits. Fails the calling test if it cannot be
// made.
inline std::unique_ptr<data::FederatedDataset> SmallSynthetic(int64_t clients,
                                                              int64_t eval_clients = 50) {
  data::FederatedDatasetOptions options;
  options.dataset = *data::ParseDatasetSpec("synthetic:0.5,0.5");
  options.num_clients = clients;
  options.partition = *data::ParsePartitionSpec("natural");
  options.seed = 3;
  options.synthetic_eval_clients = eval_clients;
  auto dataset = data::MakeFederatedDataset(options);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  return dataset.ok() ? std::move(*dataset) : nullptr;
}

// Runs `rounds` rounds of `runner` and returns the results of those that succeeded (a failed round
// fails the calling test).
inline std::vector<RoundResult> RunAll(RoundRunner& runner, int rounds) {
  std::vector<RoundResult> results;
  for (int r = 0; r < rounds; ++r) {
    absl::StatusOr<RoundResult> result = runner.RunRound();
    EXPECT_TRUE(result.ok()) << result.status();
    if (result.ok()) results.push_back(*std::move(result));
  }
  return results;
}

}  // namespace fedkit::simulation::test_support

#endif  // FEDKIT_SIMULATION_TEST_SUPPORT_H_
