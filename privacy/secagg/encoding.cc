#include "privacy/secagg/encoding.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/seeds.h"

namespace fedkit::secagg {
namespace {

constexpr double kNormTolerance = 1e-5;
// 1/scale may be at most clip_norm / kMinStepsPerClip.
constexpr double kMinStepsPerClip = 1024.0;
constexpr double kTwoPow63 = 9223372036854775808.0;

// 2^(bits-1) - 1: the largest magnitude a sum may reach without wrapping.
uint64_t MaxMagnitude(int bits) { return (uint64_t{1} << (bits - 1)) - 1; }

uint64_t Mask(int bits) { return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// The bound on one client's |w * x_i * scale|. Encoding clamps to it (coordinates may exceed
// clip_norm by the norm tolerance), so ceil(PerClientBound) bounds every encoded coordinate. One
// expression shared by ChooseEncoding and EncodeWeightedUpdate so both round it identically.
double PerClientBound(const FixedPointEncoding& e) {
  return static_cast<double>(e.max_weight) * e.clip_norm * e.scale;
}

// Whether max_clients encoded vectors sum without wrapping: max_clients * ceil(bound) and
// max_clients * max_weight both <= 2^(bits-1) - 1, checked in exact integer arithmetic.
bool FitsWithoutWrapping(const FixedPointEncoding& e) {
  const uint64_t per_client_budget = MaxMagnitude(e.modulus_bits) / e.max_clients;
  if (static_cast<uint64_t>(e.max_weight) > per_client_budget) return false;
  const double bound = std::ceil(PerClientBound(e));
  return bound >= 0.0 && bound < kTwoPow63 && static_cast<uint64_t>(bound) <= per_client_budget;
}

absl::Status ValidateArguments(int modulus_bits, int64_t max_clients, double clip_norm,
                               int64_t max_weight) {
  if (modulus_bits < 8 || modulus_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("modulus_bits must be in [8, 64], got ", modulus_bits));
  }
  if (!(clip_norm > 0.0) || !std::isfinite(clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_norm must be positive and finite, got ", clip_norm));
  }
  if (max_weight < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_weight must be >= 1, got ", max_weight));
  }
  if (max_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_clients must be >= 1, got ", max_clients));
  }
  return absl::OkStatus();
}

// An encoding from ChooseEncoding, or one built by hand that is as safe.
absl::Status ValidateEncoding(const FixedPointEncoding& e) {
  absl::Status status = ValidateArguments(e.modulus_bits, e.max_clients, e.clip_norm, e.max_weight);
  if (!status.ok()) return status;
  if (!(e.scale > 0.0) || !std::isfinite(e.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("scale must be positive, got ", e.scale));
  }
  if (!FitsWithoutWrapping(e)) {
    return absl::InvalidArgumentError(absl::StrCat("scale ", e.scale, " lets ", e.max_clients,
                                                   " clients wrap a ", e.modulus_bits,
                                                   "-bit modulus; use ChooseEncoding"));
  }
  return absl::OkStatus();
}

// Uniform in [0, 1) from the top 53 bits, so it is the same on every platform
// (std::uniform_real_distribution's output is implementation-defined).
double UniformUnit(std::mt19937_64& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

}  // namespace

absl::StatusOr<FixedPointEncoding> ChooseEncoding(int modulus_bits, int64_t max_clients,
                                                  double clip_norm, int64_t max_weight) {
  absl::Status status = ValidateArguments(modulus_bits, max_clients, clip_norm, max_weight);
  if (!status.ok()) return status;
  const uint64_t max_magnitude = MaxMagnitude(modulus_bits);
  const int value_bits = modulus_bits - 1;
  // The weight coordinate sums to at most max_clients * max_weight.
  if (static_cast<uint64_t>(max_clients) > max_magnitude ||
      static_cast<uint64_t>(max_weight) > max_magnitude / max_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_clients * max_weight = ", max_clients, " * ", max_weight, " does not fit in ",
        value_bits, " bits; increase modulus_bits or reduce max_clients or max_weight"));
  }
  // Per client: max_weight * clip_norm * scale + 1 <= max_magnitude / max_clients.
  const double per_client = static_cast<double>(max_magnitude) / static_cast<double>(max_clients);
  FixedPointEncoding encoding;
  encoding.modulus_bits = modulus_bits;
  encoding.clip_norm = clip_norm;
  encoding.max_weight = max_weight;
  encoding.max_clients = max_clients;
  encoding.scale = (per_client - 1.0) / (static_cast<double>(max_weight) * clip_norm);
  // The real-valued solution can miss by an ulp once rounded; step down to the largest double
  // that provably fits. A handful of steps at most.
  for (int i = 0; i < 64 && encoding.scale > 0.0 && !FitsWithoutWrapping(encoding); ++i) {
    encoding.scale = std::nextafter(encoding.scale, 0.0);
  }
  // Steps per clip_norm for a weight-1 client; checks the coarseness and a scale of 0 alike.
  const double steps_per_clip = encoding.scale * clip_norm;
  if (!FitsWithoutWrapping(encoding) || !(steps_per_clip >= kMinStepsPerClip)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantization step 1/scale = ", 1.0 / encoding.scale, " is coarser than clip_norm / ",
        kMinStepsPerClip, " = ", clip_norm / kMinStepsPerClip, " with ", max_clients,
        " clients of weight up to ", max_weight, " in ", modulus_bits,
        " bits; increase modulus_bits or reduce max_clients or max_weight"));
  }
  return encoding;
}

absl::StatusOr<int> SmallestModulusBits(int min_bits, int64_t max_clients, double clip_norm,
                                        int64_t max_weight) {
  for (int bits = std::max(min_bits, 8); bits < 64; ++bits) {
    if (ChooseEncoding(bits, max_clients, clip_norm, max_weight).ok()) return bits;
  }
  absl::StatusOr<FixedPointEncoding> widest =
      ChooseEncoding(64, max_clients, clip_norm, max_weight);
  if (!widest.ok()) return widest.status();
  return 64;
}

absl::StatusOr<std::vector<uint64_t>> EncodeWeightedUpdate(const FixedPointEncoding& encoding,
                                                           absl::Span<const float> delta,
                                                           int64_t weight, uint64_t rounding_seed) {
  absl::Status status = ValidateEncoding(encoding);
  if (!status.ok()) return status;
  if (weight < 0 || weight > encoding.max_weight) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight must be in [0, ", encoding.max_weight, "], got ", weight));
  }
  double sum_sq = 0.0;
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("delta[", i, "] is not finite (", delta[i], ")"));
    }
    sum_sq += static_cast<double>(delta[i]) * delta[i];
  }
  const double norm = std::sqrt(sum_sq);
  if (norm > encoding.clip_norm * (1.0 + kNormTolerance)) {
    return absl::InvalidArgumentError(absl::StrCat("delta norm ", norm, " exceeds clip_norm ",
                                                   encoding.clip_norm, "; clip it first"));
  }

  const double bound = PerClientBound(encoding);
  const double w_scale = static_cast<double>(weight) * encoding.scale;
  const uint64_t mask = Mask(encoding.modulus_bits);
  std::mt19937_64 gen(Mix64(rounding_seed));
  std::vector<uint64_t> encoded;
  encoded.reserve(delta.size() + 1);
  for (float x : delta) {
    // The tolerance above lets a coordinate exceed clip_norm slightly; clamping keeps the
    // headroom ChooseEncoding computed (and biases only such over-norm inputs, negligibly).
    const double v = std::clamp(w_scale * x, -bound, bound);
    const double floor_v = std::floor(v);
    // Draw for every coordinate, so the stream never depends on the data.
    const bool round_up = UniformUnit(gen) < v - floor_v;
    // |floor_v| <= ceil(bound) < 2^63, so the conversion is exact.
    const int64_t q = static_cast<int64_t>(floor_v) + (round_up ? 1 : 0);
    encoded.push_back(static_cast<uint64_t>(q) & mask);
  }
  encoded.push_back(static_cast<uint64_t>(weight));
  return encoded;
}

std::vector<float> DecodedSum::Average() const {
  if (total_weight == 0) return {};
  std::vector<float> average(weighted_sum.size());
  const double w = static_cast<double>(total_weight);
  for (size_t i = 0; i < weighted_sum.size(); ++i) {
    average[i] = static_cast<float>(weighted_sum[i] / w);
  }
  return average;
}

absl::StatusOr<DecodedSum> DecodeSum(const FixedPointEncoding& encoding,
                                     absl::Span<const uint64_t> sum) {
  absl::Status status = ValidateEncoding(encoding);
  if (!status.ok()) return status;
  if (sum.empty()) {
    return absl::InvalidArgumentError("encoded sum is empty; it needs at least the weight entry");
  }
  const int bits = encoding.modulus_bits;
  const uint64_t mask = Mask(bits);
  // Two's complement in `bits` bits: values >= 2^(bits-1) are negative.
  const uint64_t sign_bit = uint64_t{1} << (bits - 1);
  auto to_signed = [&](uint64_t u) -> int64_t {
    // Sign-extend: set every bit above `bits` when the sign bit is set (a no-op for 64 bits).
    return static_cast<int64_t>((u & sign_bit) != 0 ? (u | ~mask) : u);
  };
  for (size_t i = 0; i < sum.size(); ++i) {
    if ((sum[i] & ~mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("encoded sum entry ", i, " = ", sum[i], " is outside [0, 2^", bits, ")"));
    }
  }
  DecodedSum decoded;
  decoded.total_weight = to_signed(sum.back());
  if (decoded.total_weight < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("decoded total weight ", decoded.total_weight,
                     " is negative: the sum wrapped (more than max_clients vectors?)"));
  }
  decoded.weighted_sum.resize(sum.size() - 1);
  for (size_t i = 0; i + 1 < sum.size(); ++i) {
    decoded.weighted_sum[i] = static_cast<double>(to_signed(sum[i])) / encoding.scale;
  }
  return decoded;
}

}  // namespace fedkit::secagg
