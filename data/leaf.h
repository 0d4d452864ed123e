// Reader of LEAF's JSON federated datasets (Caldas et al., "LEAF: A Benchmark for Federated
// Settings"): FEMNIST, Shakespeare-style preprocessed numeric data, Synthetic of the FedProx paper.
#ifndef FEDKIT_DATA_LEAF_H_
#define FEDKIT_DATA_LEAF_H_

#include <string>

#include "absl/status/statusor.h"
#include "data/natural_dataset.h"

namespace fedkit::data {

// Reads LEAF JSON: {"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y":
// [...]}}}. `path` is a .json file, a directory of .json files (read in file name order), or a
// directory with train/ and test/ subdirectories of them (LEAF's split). One client per user, in
// the order of "users" (files in name order); with train/ and test/ the clients come from train/
// and the eval set is every user's test data (test_client_rows: each training user's own test rows,
// empty for a user without any); otherwise `test` is unset (MakeNaturalDataset holds
// out the last 10% of each user's examples). Rows of x may be numbers or nested lists (a 28x28
// image gives feature_shape {28, 28}); every row must have the same shape. y must be integer class
// labels; num_classes is the largest label + 1. INVALID_ARGUMENT naming the file (and user) for
// unreadable or invalid JSON (with the parser's position), a missing "users" or "user_data",
// "users"/"num_samples"/"user_data" that disagree, x and y of different lengths, ragged rows,
// non-integer or negative labels.
absl::StatusOr<NaturalDatasetParts> ReadLeaf(const std::string& path);

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_LEAF_H_
