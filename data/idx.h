// Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed, and the Fashion-MNIST
// loader.
#ifndef FEDKIT_DATA_IDX_H_
#define FEDKIT_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/examples.h"

namespace fedkit::data {

// The content of one IDX file holding unsigned bytes (type code 0x08), the only type
// (Fashion-)MNIST uses.
struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;  // product(dims) bytes, row-major
};

// Reads an IDX file. Gzip is detected from the magic bytes, so "x.gz" and "x" both work.
// Errors (NOT_FOUND for a missing file, DATA_LOSS for a corrupt/truncated one, INVALID_ARGUMENT for
// an unsupported type code) name the file. Never crashes on corrupt input; refuses absurd
// dimensions before allocating.
absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path);

enum class Split { kTrain, kTest };

// Loads Fashion-MNIST from `dir` (files train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
// t10k-...). Pixels are scaled to [0, 1]. Checks that images and labels agree in count and that
// labels are in [0, 10). `info` (if not null) receives {feature_shape = {1, 28, 28}, num_classes =
// 10}.
absl::StatusOr<Examples> LoadFashionMnist(const std::string& dir, Split split,
                                          DatasetInfo* info = nullptr);

// The Debian package dataset-fashion-mnist installs the files here.
inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_IDX_H_
