#include "core/parameter_layout.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedkit {

void ParameterLayout::Append(std::string name, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t offset = size();
  entries.push_back(Entry{std::move(name), std::move(shape), offset, numel});
}

std::string ParameterLayout::DebugString() const {
  std::string out;
  for (const Entry& e : entries) {
    absl::StrAppend(&out, e.name, " [", absl::StrJoin(e.shape, ", "), "] @", e.offset, "\n");
  }
  return out;
}

}  // namespace fedkit
