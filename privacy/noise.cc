#include "privacy/noise.h"

#include <openssl/rand.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::privacy {
namespace {

// A pair of independent N(0, 1) samples (Marsaglia polar method): no trigonometry, only sqrt
// (correctly rounded by IEEE 754) and log (from libm: a seeded stream is reproducible for a given
// libm; another libm may differ in the last bit of some samples).
std::pair<double, double> GaussianPair(RandomSource& random) {
  while (true) {
    const double u = 2.0 * UniformDouble(random) - 1.0;
    const double v = 2.0 * UniformDouble(random) - 1.0;
    const double s = u * u + v * v;
    if (s >= 1.0 || s == 0.0) continue;  // outside the unit disc (or log(0)): ~21% of draws
    const double factor = std::sqrt(-2.0 * std::log(s) / s);
    return {u * factor, v * factor};
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SecureRandomSource>> SecureRandomSource::Create() {
  std::unique_ptr<SecureRandomSource> source(new SecureRandomSource());
  if (!source->Refill()) {
    return absl::InternalError("RAND_bytes failed: OpenSSL's CSPRNG produced no bytes");
  }
  return source;
}

bool SecureRandomSource::Refill() {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(buffer_.data()),
                 static_cast<int>(sizeof(buffer_))) != 1) {
    return false;
  }
  next_ = 0;
  return true;
}

uint64_t SecureRandomSource::NextUint64() {
  if (next_ == kBufferWords && !Refill()) std::abort();  // see the header: no randomness, no noise
  const uint64_t word = buffer_[next_];
  buffer_[next_++] = 0;  // served words are not kept around
  return word;
}

double UniformDouble(RandomSource& random) {
  return static_cast<double>(random.NextUint64() >> 11) * 0x1.0p-53;
}

uint64_t UniformBelow(RandomSource& random, uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t mask = ~uint64_t{0} >> std::countl_zero(n - 1);
  while (true) {
    const uint64_t x = random.NextUint64() & mask;
    if (x < n) return x;  // accepted with probability n / (mask + 1) > 1/2
  }
}

double StandardGaussian(RandomSource& random) { return GaussianPair(random).first; }

void FillStandardGaussian(RandomSource& random, absl::Span<double> out) {
  size_t i = 0;
  for (; i + 1 < out.size(); i += 2) std::tie(out[i], out[i + 1]) = GaussianPair(random);
  if (i < out.size()) out[i] = GaussianPair(random).first;
}

void AddGaussianNoise(absl::Span<double> values, double stddev, RandomSource& random) {
  if (stddev == 0.0) return;
  size_t i = 0;
  for (; i + 1 < values.size(); i += 2) {
    const auto [a, b] = GaussianPair(random);
    values[i] += stddev * a;
    values[i + 1] += stddev * b;
  }
  if (i < values.size()) values[i] += stddev * GaussianPair(random).first;
}

absl::StatusOr<std::vector<float>> CentralDpAverage(absl::Span<const double> clipped_sum,
                                                    double noise_stddev, double fixed_denominator,
                                                    RandomSource& random) {
  if (!(noise_stddev >= 0.0 && std::isfinite(noise_stddev))) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise stddev must be finite and >= 0, got ", noise_stddev));
  }
  if (!(fixed_denominator > 0.0 && std::isfinite(fixed_denominator))) {
    return absl::InvalidArgumentError(
        absl::StrCat("fixed denominator must be finite and > 0, got ", fixed_denominator));
  }
  std::vector<double> noised(clipped_sum.begin(), clipped_sum.end());
  for (size_t i = 0; i < noised.size(); ++i) {
    if (!std::isfinite(noised[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("clipped sum has a non-finite value at coordinate ", i));
    }
  }
  AddGaussianNoise(absl::MakeSpan(noised), noise_stddev, random);
  std::vector<float> average(noised.size());
  for (size_t i = 0; i < noised.size(); ++i) {
    average[i] = static_cast<float>(noised[i] / fixed_denominator);
  }
  return average;
}

}  // namespace fedkit::privacy
