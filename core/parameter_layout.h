// The layout of a model's parameters inside one flat float vector: what travels and what is
// aggregated.
#ifndef FEDKIT_CORE_PARAMETER_LAYOUT_H_
#define FEDKIT_CORE_PARAMETER_LAYOUT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace fedkit {

// Parameter tensors laid end to end, in the model's registration order, each row-major.
// Two models can exchange flat vectors exactly when their layouts compare equal.
struct ParameterLayout {
  struct Entry {
    std::string name;            // e.g. "fc1.weight"
    std::vector<int64_t> shape;  // e.g. {200, 784}
    int64_t offset = 0;          // index of the first value in the flat vector
    int64_t numel = 0;           // product of shape

    bool operator==(const Entry&) const = default;
  };

  std::vector<Entry> entries;

  // Total number of values (sum of numel).
  int64_t size() const {
    return entries.empty() ? 0 : entries.back().offset + entries.back().numel;
  }

  // Appends an entry after the current last one.
  void Append(std::string name, std::vector<int64_t> shape);

  // Human-readable, one entry per line: "fc1.weight [200, 784] @0".
  std::string DebugString() const;

  bool operator==(const ParameterLayout&) const = default;
};

}  // namespace fedkit

#endif  // FEDKIT_CORE_PARAMETER_LAYOUT_H_
