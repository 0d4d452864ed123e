#include "privacy/clipping.h"

#include <cmath>

namespace fedkit::privacy {

double L2Norm(absl::Span<const float> values) {
  double sum_sq = 0.0;
  for (float v : values) sum_sq += static_cast<double>(v) * v;
  return std::sqrt(sum_sq);
}

double ClipL2InPlace(absl::Span<float> delta, double clip_norm) {
  const double norm = L2Norm(delta);
  if (clip_norm > 0.0 && norm > clip_norm) {
    const double scale = clip_norm / norm;
    for (float& v : delta) v = static_cast<float>(v * scale);
  }
  return norm;
}

}  // namespace fedkit::privacy
