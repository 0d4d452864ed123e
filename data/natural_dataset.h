// An in-memory dataset with its own per-client split (LEAF users, a tensor file's client ids).
#ifndef FEDKIT_DATA_NATURAL_DATASET_H_
#define FEDKIT_DATA_NATURAL_DATASET_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/examples.h"
#include "data/federated_dataset.h"

namespace fedkit::data {

// Without a separate test set, each client's last floor(n / kHoldOutDenominator) examples (in file
// order) form the eval set: 10%, so a client with fewer than 10 examples keeps all of them.
inline constexpr int64_t kHoldOutDenominator = 10;

struct NaturalDatasetParts {
  std::string source;  // the file or directory, for messages
  DatasetInfo info;
  Examples examples;                              // every client's rows
  std::vector<std::vector<int64_t>> client_rows;  // rows of `examples` per client, in order
  std::optional<Examples> test;                   // the eval set, if the data has one
  // With `test`: rows of `test` per client, aligned with client_rows (LEAF's per-user test data),
  // or empty when the test set does not say whose rows are whose.
  std::vector<std::vector<int64_t>> test_client_rows;
};

// Builds the dataset: client i owns client_rows[i] (clients without training examples are
// skipped); `max_clients` > 0 keeps only the first max_clients clients. Without `test` the eval set
// is held out as described at kHoldOutDenominator. Each client's own test examples
// (ClientTestExamples) are its held-out rows, or its test_client_rows; with a `test` but no
// test_client_rows the dataset has none (has_client_test_examples() is false). INVALID_ARGUMENT
// naming the source if max_clients exceeds the clients there are, if the eval set would be empty,
// or if test_client_rows is neither empty nor one list per client of rows within `test`.
absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeNaturalDataset(NaturalDatasetParts parts,
                                                                     int64_t max_clients);

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_NATURAL_DATASET_H_
