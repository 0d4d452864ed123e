#include "data/examples.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fedkit::data {

int64_t DatasetInfo::feature_dim() const {
  int64_t dim = 1;
  for (int64_t d : feature_shape) dim *= d;
  return dim;
}

Examples Examples::Select(const std::vector<int64_t>& rows) const {
  Examples out;
  out.feature_dim = feature_dim;
  out.target_dim = target_dim;
  if (is_regression())
    out.targets.reserve(rows.size() * static_cast<size_t>(target_dim));
  else
    out.labels.reserve(rows.size());
  out.features.resize(rows.size() * static_cast<size_t>(feature_dim));
  float* dst = out.features.data();
  for (int64_t row : rows) {
    const float* src = features.data() + row * feature_dim;
    std::copy(src, src + feature_dim, dst);
    dst += feature_dim;
    if (is_regression()) {
      const float* t = targets.data() + row * target_dim;
      out.targets.insert(out.targets.end(), t, t + target_dim);
    } else {
      out.labels.push_back(labels[static_cast<size_t>(row)]);
    }
  }
  return out;
}

}  // namespace fedkit::data
