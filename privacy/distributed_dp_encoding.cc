#include "privacy/distributed_dp_encoding.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "privacy/central_discrete_noise.h"
#include "privacy/distributed_dp.h"

namespace fedkit::privacy {
namespace {

// DiscreteGaussianSampler rejects proposals beyond this many discrete Laplace scales t (see its
// header), so no sample exceeds it in magnitude.
constexpr int64_t kSamplerBoundInScales = 64;
// Kairouz et al.'s correction tau * d enters the RDP additively; above this it is not negligible.
constexpr double kMaxTauTimesDim = 1e-6;
// The update is clipped this much below the bound (relative), so double rounding in the scaling
// can never push its norm above scaled_clip.
constexpr double kClipSafety = 1e-12;

uint64_t Mask(int bits) { return bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

int64_t ISqrt(int64_t n) {
  int64_t r = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (r > 0 && r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r;
}

int64_t MinSurvivors(int64_t n, double dropout_tolerance) {
  return std::max<int64_t>(
      1, static_cast<int64_t>(std::floor(static_cast<double>(n) * (1 - dropout_tolerance))));
}

// Everything that follows from one scaled_clip, without the validity checks of the noise
// parameters. nullopt when the local variance cannot be represented (scale far too large).
std::optional<DistributedDpEncoding> Evaluate(const DistributedDpEncodingOptions& o,
                                              double scaled_clip) {
  DistributedDpEncoding e;
  e.modulus_bits = o.modulus_bits;
  e.max_clients = o.max_clients;
  e.dim = o.dim;
  e.with_count = o.with_count;
  e.scaled_clip = scaled_clip;
  e.value_sensitivity = scaled_clip + std::sqrt(static_cast<double>(o.dim));
  const double z = o.noise_multiplier;
  if (o.with_count) {
    // From sigma_b = z Delta / (2 H) and Delta^2 = Delta_v^2 + H^2. Without noise the count is
    // exact and H = 1 suffices.
    const double h =
        z > 0 ? e.value_sensitivity /
                    std::sqrt(4 * o.clipped_count_stddev * o.clipped_count_stddev / (z * z) - 1)
              : 1.0;
    if (!(h < 0x1.0p62)) return std::nullopt;
    e.count_half_step = std::max<int64_t>(1, std::llround(h));
  }
  const double h = static_cast<double>(e.count_half_step);
  e.sensitivity = std::sqrt(e.value_sensitivity * e.value_sensitivity + h * h);
  int64_t noise_bound = 0;
  e.min_surviving_clients = 1;
  if (z > 0) {
    e.min_surviving_clients = MinSurvivors(o.max_clients, o.dropout_tolerance);
    const double stddev = z * e.sensitivity;
    absl::StatusOr<Rational> variance =
        RationalAtLeast(stddev * stddev / static_cast<double>(e.min_surviving_clients));
    if (!variance.ok()) return std::nullopt;
    e.local_variance = *variance;
    noise_bound = kSamplerBoundInScales * (ISqrt(variance->numerator / variance->denominator) + 1);
  }
  const double top = std::ceil(std::max(scaled_clip, h));
  if (!(top < 0x1.0p62)) return std::nullopt;
  e.max_client_magnitude = static_cast<int64_t>(top) + noise_bound;
  return e;
}

bool Fits(const DistributedDpEncoding& e) {
  const uint64_t budget =
      ((uint64_t{1} << (e.modulus_bits - 1)) - 1) / static_cast<uint64_t>(e.max_clients);
  return e.max_client_magnitude >= 0 && static_cast<uint64_t>(e.max_client_magnitude) <= budget;
}

}  // namespace

absl::StatusOr<DistributedDpEncoding> ChooseDistributedDpEncoding(
    const DistributedDpEncodingOptions& o) {
  if (o.modulus_bits < 8 || o.modulus_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("modulus bits must be in [8, 64], got ", o.modulus_bits));
  }
  if (o.max_clients < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max clients must be >= 1, got ", o.max_clients));
  }
  if (o.dim < 1) return absl::InvalidArgumentError(absl::StrCat("dim must be >= 1, got ", o.dim));
  if (!(o.noise_multiplier >= 0 && std::isfinite(o.noise_multiplier))) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be finite and >= 0, got ", o.noise_multiplier));
  }
  if (!(o.dropout_tolerance >= 0 && o.dropout_tolerance < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout tolerance must be in [0, 1), got ", o.dropout_tolerance));
  }
  if (!(o.max_sensitivity_inflation > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max sensitivity inflation must be > 1, got ", o.max_sensitivity_inflation));
  }
  if (o.with_count && o.noise_multiplier > 0 &&
      !(o.noise_multiplier < 2 * o.clipped_count_stddev)) {
    return absl::InvalidArgumentError(absl::StrCat("clipped count stddev ", o.clipped_count_stddev,
                                                   " is too small for noise multiplier ",
                                                   o.noise_multiplier, ": need z < 2 sigma_b"));
  }

  // The magnitude bound grows with scaled_clip: bisect for the largest scale that fits.
  double lo = 0.0;
  // (Capped below 2^62, the range ConditionalRandomizedRound accepts.)
  double hi = std::min(0x1.0p61, static_cast<double>(((uint64_t{1} << (o.modulus_bits - 1)) - 1) /
                                                     static_cast<uint64_t>(o.max_clients)));
  for (int i = 0; i < 200 && hi - lo > 1e-9 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    std::optional<DistributedDpEncoding> e = Evaluate(o, mid);
    if (e.has_value() && Fits(*e)) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  std::optional<DistributedDpEncoding> chosen = Evaluate(o, lo);
  const double sqrt_d = std::sqrt(static_cast<double>(o.dim));
  if (!chosen.has_value() || !Fits(*chosen) || !(lo > 0) ||
      chosen->value_sensitivity > o.max_sensitivity_inflation * lo) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", o.modulus_bits, "-bit modulus leaves ", o.max_clients,
                     " clients a scaled clip of only ", lo, ": rounding ", o.dim,
                     " coordinates would inflate the sensitivity by more than a factor ",
                     o.max_sensitivity_inflation, " (need scaled clip >= sqrt(d) / ",
                     o.max_sensitivity_inflation - 1, " = ",
                     sqrt_d / (o.max_sensitivity_inflation - 1), "); increase modulus_bits"));
  }
  DistributedDpEncoding e = *chosen;
  if (o.noise_multiplier > 0) {
    FEDKIT_ASSIGN_OR_RETURN(
        DistributedDiscreteGaussianParams params,
        DistributedDiscreteGaussianParameters(o.noise_multiplier, e.sensitivity, o.max_clients,
                                              o.dropout_tolerance, e.length()));
    if (params.min_surviving_clients != e.min_surviving_clients ||
        params.local_variance.numerator != e.local_variance.numerator ||
        params.local_variance.denominator != e.local_variance.denominator) {
      return absl::InternalError("distributed DP parameters disagree with the encoding's bound");
    }
    if (!(params.tau_times_dim <= kMaxTauTimesDim)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tau * d = ", params.tau_times_dim, " exceeds ", kMaxTauTimesDim,
                       ": the local noise is too small for Kairouz et al.'s bound"));
    }
    e.effective_noise_multiplier = params.effective_noise_multiplier;
    e.tau_times_dim = params.tau_times_dim;
    const double sum_stddev =
        std::sqrt(static_cast<double>(e.min_surviving_clients) * e.local_variance.ToDouble());
    e.value_noise_multiplier = sum_stddev / e.scaled_clip;
    if (e.with_count) e.count_noise_stddev = sum_stddev / (2.0 * e.count_half_step);
  }
  return e;
}

absl::StatusOr<std::vector<uint64_t>> EncodeDistributedDpUpdate(
    const DistributedDpEncoding& encoding, absl::Span<const float> update, double clip_norm,
    std::optional<bool> unclipped, RandomSource& rounding, RandomSource& noise) {
  if (static_cast<int64_t>(update.size()) != encoding.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", update.size(), " values, the encoding ", encoding.dim));
  }
  if (unclipped.has_value() != encoding.with_count) {
    return absl::InvalidArgumentError(encoding.with_count
                                          ? "the encoding has a count: pass the unclipped bit"
                                          : "the encoding has no count coordinate");
  }
  if (!(clip_norm > 0 && std::isfinite(clip_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip norm must be finite and > 0, got ", clip_norm));
  }
  double sum_sq = 0.0;
  for (size_t i = 0; i < update.size(); ++i) {
    if (!std::isfinite(update[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("update[", i, "] is not finite (", update[i], ")"));
    }
    sum_sq += static_cast<double>(update[i]) * update[i];
  }
  const double norm = std::sqrt(sum_sq);
  const double clip_factor = (norm > clip_norm ? clip_norm / norm : 1.0) * (1 - kClipSafety);
  const double factor = clip_factor * encoding.scaled_clip / clip_norm;
  std::vector<double> scaled(update.size());
  for (size_t i = 0; i < update.size(); ++i) {
    scaled[i] = std::clamp(update[i] * factor, -encoding.scaled_clip, encoding.scaled_clip);
  }
  FEDKIT_ASSIGN_OR_RETURN(
      std::vector<int64_t> values,
      ConditionalRandomizedRound(scaled, std::numeric_limits<double>::infinity(), rounding));
  if (encoding.with_count) {
    values.push_back(*unclipped ? encoding.count_half_step : -encoding.count_half_step);
  }
  FEDKIT_ASSIGN_OR_RETURN(DiscreteGaussianSampler sampler,
                          DiscreteGaussianSampler::Create(encoding.local_variance));
  sampler.AddNoise(absl::MakeSpan(values), noise);
  const uint64_t mask = Mask(encoding.modulus_bits);
  std::vector<uint64_t> encoded(values.size());
  for (size_t i = 0; i < values.size(); ++i) encoded[i] = static_cast<uint64_t>(values[i]) & mask;
  return encoded;
}

absl::StatusOr<DistributedDpSum> DecodeDistributedDpSum(const DistributedDpEncoding& encoding,
                                                        absl::Span<const uint64_t> sum,
                                                        double clip_norm) {
  if (static_cast<int64_t>(sum.size()) != encoding.length()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sum has ", sum.size(), " values, the encoding ", encoding.length()));
  }
  if (!(clip_norm > 0 && std::isfinite(clip_norm))) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip norm must be finite and > 0, got ", clip_norm));
  }
  const int bits = encoding.modulus_bits;
  const uint64_t mask = Mask(bits);
  const uint64_t sign_bit = uint64_t{1} << (bits - 1);
  auto to_signed = [&](uint64_t u) -> double {
    return static_cast<double>(static_cast<int64_t>((u & sign_bit) != 0 ? (u | ~mask) : u));
  };
  for (size_t i = 0; i < sum.size(); ++i) {
    if ((sum[i] & ~mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sum entry ", i, " = ", sum[i], " is outside [0, 2^", bits, ")"));
    }
  }
  DistributedDpSum decoded;
  decoded.sum.resize(encoding.dim);
  const double unscale = clip_norm / encoding.scaled_clip;
  for (int64_t i = 0; i < encoding.dim; ++i) decoded.sum[i] = to_signed(sum[i]) * unscale;
  if (encoding.with_count) {
    decoded.noised_centered_count =
        to_signed(sum.back()) / (2.0 * static_cast<double>(encoding.count_half_step));
  }
  return decoded;
}

absl::StatusOr<DistributedDpSum> DecodeDistributedDpSumWithCentralNoise(
    const DistributedDpEncoding& encoding, absl::Span<const uint64_t> sum, double clip_norm,
    double noise_multiplier, RandomSource& noise) {
  // Decoded once without noise: the checks, and the exact count.
  FEDKIT_ASSIGN_OR_RETURN(DistributedDpSum decoded,
                          DecodeDistributedDpSum(encoding, sum, clip_norm));
  if (!(noise_multiplier >= 0) || !std::isfinite(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be finite and >= 0, got ", noise_multiplier));
  }
  FEDKIT_ASSIGN_OR_RETURN(
      CentralDiscreteNoise mechanism,
      CentralDiscreteNoise::Create(noise_multiplier * encoding.value_sensitivity,
                                   encoding.value_sensitivity, encoding.dim));
  const int bits = encoding.modulus_bits;
  const uint64_t mask = Mask(bits);
  const uint64_t sign_bit = uint64_t{1} << (bits - 1);
  std::vector<absl::int128> values(encoding.dim);
  for (int64_t i = 0; i < encoding.dim; ++i) {
    const uint64_t u = sum[i];
    values[i] = static_cast<int64_t>((u & sign_bit) != 0 ? (u | ~mask) : u);
  }
  const std::vector<absl::int128> noised = mechanism.Noise(values, noise);
  const double unscale = clip_norm / encoding.scaled_clip;
  for (int64_t i = 0; i < encoding.dim; ++i) {
    decoded.sum[i] = static_cast<double>(noised[i]) * unscale;
  }
  return decoded;
}

double DropoutToleranceForRate(int64_t n, double dropout_rate, double tail) {
  if (!(dropout_rate > 0) || n < 1) return 0.0;
  // Walk the Binomial(n, p) pmf up from 0 until the upper tail P(X > k) is small enough.
  const double p = dropout_rate;
  double pmf = std::exp(static_cast<double>(n) * std::log1p(-p));
  double cdf = pmf;
  int64_t k = 0;
  while (k < n && 1 - cdf > tail) {
    pmf *= static_cast<double>(n - k) / static_cast<double>(k + 1) * p / (1 - p);
    cdf += pmf;
    ++k;
  }
  // floor(n (1 - f)) must come out as n - k despite rounding: nudge f down if needed.
  double f = static_cast<double>(k) / static_cast<double>(n);
  while (f > 0 && MinSurvivors(n, f) < n - k) f = std::nextafter(f, 0.0);
  return std::min(f, std::nextafter(1.0, 0.0));
}

}  // namespace fedkit::privacy
