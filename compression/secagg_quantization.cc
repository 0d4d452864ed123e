#include "compression/secagg_quantization.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compression/hadamard.h"
#include "compression/random.h"
#include "compression/update_codec.h"

namespace fedkit::compression {
namespace {

bool Rotates(const SecAggQuantization& q) {
  return q.spec.method == CompressionMethod::kQuantizeRotate;
}

// ceil(log2(n)) for n >= 1.
int CeilLog2(int64_t n) {
  int bits = 0;
  while (bits < 63 && (int64_t{1} << bits) < n) ++bits;
  return bits;
}

// 2^(bits-1) - 1: the largest |q_i| of one client.
double MaxLevel(int bits) { return static_cast<double>((int64_t{1} << (bits - 1)) - 1); }

uint64_t Mask(int bits) { return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// The clipping range of each coordinate (per rotation block when rotating).
std::vector<double> Ranges(const SecAggQuantization& q) {
  std::vector<double> ranges;
  ranges.reserve(static_cast<size_t>(q.dimension));
  if (!Rotates(q)) {
    ranges.assign(static_cast<size_t>(q.dimension), q.clip_norm);
    return ranges;
  }
  for (int64_t size : RotationBlockSizes(q.dimension)) {
    const double range =
        std::min(q.clip_norm, 6.0 * q.clip_norm / std::sqrt(static_cast<double>(size)));
    ranges.insert(ranges.end(), static_cast<size_t>(size), range);
  }
  return ranges;
}

// Unbiased stochastic rounding of v: floor(v) + Bernoulli(v - floor(v)).
int64_t StochasticRound(double v, Xoshiro256& rng) {
  double whole = std::floor(v);
  const double fraction = v - whole;
  if (fraction > 0.0 && rng.UniformUnit() < fraction) whole += 1.0;
  return static_cast<int64_t>(whole);
}

absl::Status Validate(const CompressionSpec& spec, int64_t dimension, double clip_norm,
                      int64_t max_weight, int64_t max_inputs) {
  if (!IsQuantizing(spec.method) || !ValidateCompressionSpec(spec).ok() || spec.bits < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("secure aggregation quantization needs quantize:BITS or quantize-rotate:BITS "
                     "with BITS in [2, 16], got ",
                     FormatCompressionSpec(spec)));
  }
  if (dimension < 1 || dimension > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimension must be in [1, ", kMaxDimension, "], got ", dimension));
  }
  if (!(clip_norm > 0.0) || !std::isfinite(clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_norm must be positive and finite, got ", clip_norm));
  }
  if (max_weight < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_weight must be >= 1, got ", max_weight));
  }
  if (max_inputs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_inputs must be >= 1, got ", max_inputs));
  }
  const int modulus_bits = spec.bits + CeilLog2(max_inputs);
  if (modulus_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("modulus_bits = bits + ceil(log2(max_inputs)) = ", spec.bits, " + ",
                     CeilLog2(max_inputs), " exceeds 64; reduce bits or max_inputs"));
  }
  return absl::OkStatus();
}

absl::Status ValidateQuantization(const SecAggQuantization& q) {
  absl::Status status = Validate(q.spec, q.dimension, q.clip_norm, q.max_weight, q.max_inputs);
  if (!status.ok()) return status;
  if (q.modulus_bits != q.spec.bits + CeilLog2(q.max_inputs)) {
    return absl::InvalidArgumentError(
        absl::StrCat("modulus_bits ", q.modulus_bits, " is not bits + ceil(log2(max_inputs)) = ",
                     q.spec.bits + CeilLog2(q.max_inputs), "; use ChooseSecAggQuantization"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SecAggQuantization> ChooseSecAggQuantization(const CompressionSpec& spec,
                                                            int64_t dimension, double clip_norm,
                                                            int64_t max_weight, int64_t max_inputs,
                                                            uint64_t rotation_seed) {
  absl::Status status = Validate(spec, dimension, clip_norm, max_weight, max_inputs);
  if (!status.ok()) return status;
  SecAggQuantization q;
  q.spec = spec;
  q.dimension = dimension;
  q.clip_norm = clip_norm;
  q.max_weight = max_weight;
  q.max_inputs = max_inputs;
  q.rotation_seed = rotation_seed;
  q.modulus_bits = spec.bits + CeilLog2(max_inputs);
  return q;
}

absl::StatusOr<std::vector<uint64_t>> EncodeForSecAgg(const SecAggQuantization& q,
                                                      absl::Span<const float> delta, int64_t weight,
                                                      uint64_t rounding_seed) {
  absl::Status status = ValidateQuantization(q);
  if (!status.ok()) return status;
  if (static_cast<int64_t>(delta.size()) != q.dimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta has ", delta.size(), " values, expected ", q.dimension));
  }
  if (weight < 0 || weight > q.max_weight) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight must be in [0, ", q.max_weight, "], got ", weight));
  }
  std::vector<double> y(delta.begin(), delta.end());
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("delta[", i, "] is not finite (", delta[i], ")"));
    }
  }
  if (Rotates(q)) RotateInPlace(absl::MakeSpan(y), q.rotation_seed);
  const std::vector<double> ranges = Ranges(q);
  const double max_level = MaxLevel(q.spec.bits);
  const double w = static_cast<double>(weight);
  const double max_weight = static_cast<double>(q.max_weight);
  const uint64_t mask = Mask(q.modulus_bits);
  Xoshiro256 rng(rounding_seed);
  std::vector<uint64_t> out(static_cast<size_t>(q.dimension) + 1);
  for (size_t i = 0; i < y.size(); ++i) {
    const double clipped = std::clamp(y[i], -ranges[i], ranges[i]);
    // w * clipped / range_i is within [-max_weight, max_weight], so the level is within
    // [-max_level, max_level] and so is its stochastic rounding (clamped against float slop).
    const double level =
        std::clamp(w * (clipped / ranges[i]) * (max_level / max_weight), -max_level, max_level);
    out[i] = static_cast<uint64_t>(StochasticRound(level, rng)) & mask;
  }
  out.back() =
      static_cast<uint64_t>(StochasticRound(std::min(w * max_level / max_weight, max_level), rng)) &
      mask;
  return out;
}

absl::StatusOr<SecAggQuantizedSum> DecodeSecAggSum(const SecAggQuantization& q,
                                                   absl::Span<const uint64_t> sum) {
  absl::Status status = ValidateQuantization(q);
  if (!status.ok()) return status;
  if (static_cast<int64_t>(sum.size()) != q.dimension + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sum has ", sum.size(), " values, expected ", q.dimension + 1));
  }
  const uint64_t mask = Mask(q.modulus_bits);
  const int shift = 64 - q.modulus_bits;
  // The largest magnitude max_inputs vectors can sum to: max_inputs * (2^(bits-1) - 1), below
  // 2^63 since modulus_bits <= 64.
  const auto reach = static_cast<uint64_t>(q.max_inputs) * ((uint64_t{1} << (q.spec.bits - 1)) - 1);
  std::vector<int64_t> signed_sum(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) {
    if ((sum[i] & ~mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sum[", i, "] = ", sum[i], " is outside [0, 2^", q.modulus_bits, ")"));
    }
    // Two's complement of modulus_bits bits: shift the sign bit to bit 63 and back.
    const int64_t v = static_cast<int64_t>(sum[i] << shift) >> shift;
    const uint64_t magnitude = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    if (magnitude > reach) {
      return absl::InvalidArgumentError(absl::StrCat("sum[", i, "] = ", v, " is beyond what ",
                                                     q.max_inputs, " inputs can sum to"));
    }
    signed_sum[i] = v;
  }
  if (signed_sum.back() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the summed weight is negative (", signed_sum.back(), ")"));
  }
  const std::vector<double> ranges = Ranges(q);
  const double max_level = MaxLevel(q.spec.bits);
  const double max_weight = static_cast<double>(q.max_weight);
  SecAggQuantizedSum result;
  result.weighted_sum.resize(static_cast<size_t>(q.dimension));
  for (size_t i = 0; i < result.weighted_sum.size(); ++i) {
    result.weighted_sum[i] =
        static_cast<double>(signed_sum[i]) * (max_weight / max_level) * ranges[i];
  }
  if (Rotates(q)) InverseRotateInPlace(absl::MakeSpan(result.weighted_sum), q.rotation_seed);
  result.total_weight = static_cast<double>(signed_sum.back()) * max_weight / max_level;
  return result;
}

std::vector<float> SecAggQuantizedSum::Average() const {
  std::vector<float> average;
  if (!(total_weight > 0.0)) return average;
  average.reserve(weighted_sum.size());
  for (double v : weighted_sum) average.push_back(static_cast<float>(v / total_weight));
  return average;
}

}  // namespace fedkit::compression
