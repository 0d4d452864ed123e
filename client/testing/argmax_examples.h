// Test data for the device-side tests (client/ and server/): small Gaussian examples whose label is
// the argmax of the first three of six features, learnable by the registry's logreg. Header-only,
// for tests; deterministic in `seed`.
#ifndef FEDKIT_CLIENT_TESTING_ARGMAX_EXAMPLES_H_
#define FEDKIT_CLIENT_TESTING_ARGMAX_EXAMPLES_H_

#include <cstdint>
#include <random>

#include "data/examples.h"

namespace fedkit::testdata {

// The shape of ArgmaxExamples: 6 features, 3 classes.
inline const data::DatasetInfo kArgmaxInfo{{6}, 3};

inline data::Examples ArgmaxExamples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  data::Examples ex;
  ex.feature_dim = 6;
  for (int i = 0; i < n; ++i) {
    float best = -1e9f;
    int64_t label = 0;
    for (int j = 0; j < 6; ++j) {
      const float v = normal(rng);
      ex.features.push_back(v);
      if (j < 3 && v > best) best = v, label = j;
    }
    ex.labels.push_back(label);
  }
  return ex;
}

}  // namespace fedkit::testdata

#endif  // FEDKIT_CLIENT_TESTING_ARGMAX_EXAMPLES_H_
