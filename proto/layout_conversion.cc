#include "proto/layout_conversion.h"

#include <vector>

namespace fedkit {

v1::ParameterLayout LayoutToProto(const ParameterLayout& layout) {
  v1::ParameterLayout out;
  for (const auto& e : layout.entries) {
    auto* entry = out.add_entries();
    entry->set_name(e.name);
    for (int64_t d : e.shape) entry->add_shape(d);
  }
  return out;
}

ParameterLayout LayoutFromProto(const v1::ParameterLayout& layout) {
  ParameterLayout out;
  for (const auto& entry : layout.entries()) {
    out.Append(entry.name(), std::vector<int64_t>(entry.shape().begin(), entry.shape().end()));
  }
  return out;
}

}  // namespace fedkit
