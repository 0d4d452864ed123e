// Small federated datasets for the simulation tests (test-only, header-only).
#ifndef FEDKIT_SIMULATION_TEST_DATASETS_H_
#define FEDKIT_SIMULATION_TEST_DATASETS_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "data/federated_dataset.h"
#include "gtest/gtest.h"

namespace fedkit::simulation::test_data {

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

}  // namespace fedkit::simulation::test_data

#endif  // FEDKIT_SIMULATION_TEST_DATASETS_H_
