// Federated datasets stored as tensors written by Python's torch.save (`--dataset tensors:PATH`).
#ifndef FEDKIT_MODELS_TENSOR_FILE_H_
#define FEDKIT_MODELS_TENSOR_FILE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "data/federated_dataset.h"
#include "data/natural_dataset.h"

namespace fedkit::models {

// Reads `torch.save({"x": X, "y": Y, "client": C}, path)`: X floating-point [N, ...] (feature_shape
// is X's shape without N), Y integer class labels [N] (num_classes = the largest label + 1) or float
// regression targets [N] or [N, k] (DatasetInfo::target_dim = 1 or k, num_classes = 0), C
// integer client ids [N] >= 0. Clients are the distinct ids in ascending order, each with its rows
// in file order. Optional "test_x"/"test_y" ([M, ...] and [M]) are the eval set; without them
// MakeNaturalDataset holds out the last 10% of each client's rows. INVALID_ARGUMENT naming the
// file for an unreadable, corrupt or truncated file, a missing or unknown key, counts that differ
// ("x has 100 rows but y has 99"), non-integer or negative labels, or negative client ids. No
// exception escapes.
absl::StatusOr<data::NaturalDatasetParts> ReadTensorFile(const std::string& path);

// MakeFederatedDataset for every kind, with kTensors (which fedkit::data cannot read without
// LibTorch) read by ReadTensorFile: natural partition only, options.num_clients > 0 keeps the first
// that many clients, 0 all of them.
absl::StatusOr<std::unique_ptr<data::FederatedDataset>> MakeFederatedDatasetWithTensors(
    const data::FederatedDatasetOptions& options);

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_TENSOR_FILE_H_
