#include "compression/hadamard.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "compression/random.h"

namespace fedkit::compression {
namespace {

// The unnormalized fast Walsh-Hadamard transform of x (size a power of two), in place.
// Hand-written: no Debian package provides one.
void Fwht(double* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const double a = x[j];
        const double b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

// The signs of D: coordinate i is negated iff bit (i % 64) of the generator's output i / 64 is set.
class Signs {
 public:
  explicit Signs(uint64_t seed) : rng_(seed) {}
  // Call with i = 0, 1, 2, ... in order.
  bool Negate(int64_t i) {
    if (i % 64 == 0) word_ = rng_.Next();
    return ((word_ >> (i % 64)) & 1) != 0;
  }

 private:
  Xoshiro256 rng_;
  uint64_t word_ = 0;
};

template <typename T>
void Rotate(absl::Span<T> values, uint64_t seed, bool inverse) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<double> block;
  block.reserve(static_cast<size_t>(std::min(n, kMaxRotationBlock)));
  Signs signs(seed);
  int64_t start = 0;
  for (int64_t size : RotationBlockSizes(n)) {
    block.assign(values.begin() + start, values.begin() + start + size);
    if (!inverse) {
      for (int64_t j = 0; j < size; ++j) {
        if (signs.Negate(start + j)) block[j] = -block[j];
      }
    }
    Fwht(block.data(), size);
    const double scale = 1.0 / std::sqrt(static_cast<double>(size));
    for (int64_t j = 0; j < size; ++j) {
      double v = block[j] * scale;
      if (inverse && signs.Negate(start + j)) v = -v;
      values[start + j] = static_cast<T>(v);
    }
    start += size;
  }
}

}  // namespace

std::vector<int64_t> RotationBlockSizes(int64_t dimension) {
  std::vector<int64_t> sizes;
  if (dimension < 1) return sizes;
  for (int64_t i = 0; i < dimension / kMaxRotationBlock; ++i) sizes.push_back(kMaxRotationBlock);
  const int64_t rest = dimension % kMaxRotationBlock;
  for (int64_t bit = kMaxRotationBlock / 2; bit >= 1; bit /= 2) {
    if ((rest & bit) != 0) sizes.push_back(bit);
  }
  return sizes;
}

void RotateInPlace(absl::Span<float> values, uint64_t seed) { Rotate(values, seed, false); }
void InverseRotateInPlace(absl::Span<float> values, uint64_t seed) { Rotate(values, seed, true); }
void RotateInPlace(absl::Span<double> values, uint64_t seed) { Rotate(values, seed, false); }
void InverseRotateInPlace(absl::Span<double> values, uint64_t seed) { Rotate(values, seed, true); }

}  // namespace fedkit::compression
