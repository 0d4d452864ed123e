#include "privacy/discrete_gaussian.h"

#include <bit>
#include <cmath>
#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"

namespace fedkit::privacy {
namespace {

// GCC/Clang 128-bit integers: the products of the rejection step need up to 124 bits (header).
using uint128 = unsigned __int128;

constexpr uint128 kOne = 1;

// Rejected discrete Laplace proposals are those with |x| > kCandidateBoundInScales * t.
constexpr int64_t kCandidateBoundInScales = 64;

uint64_t ISqrt(uint64_t n) {
  uint64_t r = static_cast<uint64_t>(std::sqrt(static_cast<double>(n)));
  while (static_cast<uint128>(r) * r > n) --r;
  while (static_cast<uint128>(r + 1) * (r + 1) <= n) ++r;
  return r;
}

// Uniform on [0, n) for 1 <= n <= 2^127, by rejection on masked 128-bit draws.
uint128 UniformBelow128(RandomSource& random, uint128 n) {
  if (n == (kOne << 64)) return random.NextUint64();
  if (n < (kOne << 64)) return UniformBelow(random, static_cast<uint64_t>(n));
  const uint64_t hi_bound = static_cast<uint64_t>((n - 1) >> 64);
  const uint64_t hi_mask = ~uint64_t{0} >> std::countl_zero(hi_bound);
  while (true) {
    const uint64_t hi = random.NextUint64() & hi_mask;
    const uint64_t lo = random.NextUint64();
    const uint128 x = (static_cast<uint128>(hi) << 64) | lo;
    if (x < n) return x;
  }
}

// Bernoulli(num / den) for 0 <= num <= den, den >= 1.
bool Bernoulli(RandomSource& random, uint128 num, uint128 den) {
  return UniformBelow128(random, den) < num;
}

// Bernoulli(exp(-gamma)) for gamma = num / den in [0, 1]: CKS Algorithm 1, first case. Each trial
// is Bernoulli(gamma / k), drawn as Bernoulli(gamma) AND Bernoulli(1 / k) so no product can
// overflow.
bool BernoulliExpAtMostOne(RandomSource& random, uint128 num, uint128 den) {
  uint64_t k = 1;
  while (Bernoulli(random, num, den) && UniformBelow(random, k) == 0) ++k;
  return k % 2 == 1;
}

// Bernoulli(exp(-gamma)) for any gamma = num / den >= 0: CKS Algorithm 1, second case,
// exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))). The loop stops at the first
// failure, after fewer than 1.6 trials on average, however large floor(gamma) is.
bool BernoulliExp(RandomSource& random, uint128 num, uint128 den) {
  const uint128 whole = num / den;
  for (uint128 i = 0; i < whole; ++i) {
    if (!BernoulliExpAtMostOne(random, 1, 1)) return false;
  }
  return BernoulliExpAtMostOne(random, num % den, den);
}

// A discrete Laplace sample with integer scale t >= 1, Pr[x] proportional to exp(-|x| / t):
// CKS Algorithm 2 with s = 1. nullopt if |x| would exceed `bound` (the caller starts over).
std::optional<int64_t> DiscreteLaplace(RandomSource& random, int64_t t, int64_t bound) {
  while (true) {
    // U uniform on [0, t) kept with probability exp(-U / t), V geometric with ratio exp(-1):
    // U + t V is geometric with ratio exp(-1 / t).
    uint64_t u;
    do {
      u = UniformBelow(random, static_cast<uint64_t>(t));
    } while (!BernoulliExp(random, u, static_cast<uint64_t>(t)));
    int64_t v = 0;
    while (BernoulliExpAtMostOne(random, 1, 1)) {
      if (++v > kCandidateBoundInScales) return std::nullopt;
    }
    const int64_t magnitude = static_cast<int64_t>(u) + t * v;
    if (magnitude > bound) return std::nullopt;
    const bool negative = random.NextUint64() & 1;
    if (negative && magnitude == 0) continue;  // else 0 would be twice as likely as it should
    return negative ? -magnitude : magnitude;
  }
}

}  // namespace

absl::StatusOr<Rational> RationalAtLeast(double x, int denominator_bits) {
  if (!(x >= 0.0 && std::isfinite(x))) {
    return absl::InvalidArgumentError(absl::StrCat("expected a finite value >= 0, got ", x));
  }
  if (denominator_bits < 0 || denominator_bits > 40) {
    return absl::InvalidArgumentError(
        absl::StrCat("denominator bits must be in [0, 40], got ", denominator_bits));
  }
  const double scaled = std::ldexp(x, denominator_bits);  // exact: a power-of-two scaling
  if (!(scaled < 0x1.0p62)) {
    return absl::InvalidArgumentError(absl::StrCat(x, " * 2^", denominator_bits,
                                                   " does not fit in 62 bits; lower the "
                                                   "denominator bits"));
  }
  const int64_t numerator = static_cast<int64_t>(std::ceil(scaled));
  const int64_t denominator = int64_t{1} << denominator_bits;
  const int64_t g = std::gcd(numerator, denominator);  // gcd(0, q) = q gives 0/1
  return Rational{numerator / g, denominator / g};
}

DiscreteGaussianSampler::DiscreteGaussianSampler(int64_t p, int64_t q, int64_t t)
    : p_(p), q_(q), t_(t) {}

absl::StatusOr<DiscreteGaussianSampler> DiscreteGaussianSampler::Create(Rational sigma_squared) {
  int64_t p = sigma_squared.numerator;
  int64_t q = sigma_squared.denominator;
  if (p < 0 || q <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sigma^2 must be a non-negative rational with a positive denominator, got ", p, "/", q));
  }
  if (p == 0) return DiscreteGaussianSampler(0, 1, 0);
  const int64_t g = std::gcd(p, q);
  p /= g;
  q /= g;
  // floor(sqrt(p / q)) = floor(sqrt(floor(p / q))).
  const int64_t t = static_cast<int64_t>(ISqrt(static_cast<uint64_t>(p / q))) + 1;
  if (p > (int64_t{1} << 62) || static_cast<uint128>(q) * t * t > (kOne << 56)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sigma^2 = ", p, "/", q,
        " is outside the exact sampler's range (need numerator <= 2^62 "
        "and denominator * (floor(sigma) + 1)^2 <= 2^56): use a smaller sigma or a coarser "
        "denominator"));
  }
  return DiscreteGaussianSampler(p, q, t);
}

absl::StatusOr<DiscreteGaussianSampler> DiscreteGaussianSampler::CreateFromDouble(
    double sigma_squared, int denominator_bits) {
  absl::StatusOr<Rational> rational = RationalAtLeast(sigma_squared, denominator_bits);
  if (!rational.ok()) return rational.status();
  return Create(*rational);
}

int64_t DiscreteGaussianSampler::Sample(RandomSource& random) const {
  if (p_ == 0) return 0;
  const int64_t bound = kCandidateBoundInScales * t_;
  // Accept a Laplace proposal x with probability exp(-(|x| - sigma^2 / t)^2 / (2 sigma^2)),
  // written over a common denominator: (|x| q t - p)^2 / (2 p q t^2). By the range check in
  // Create, |x| q t <= 64 q t^2 <= 2^62 and p <= 2^62, so the numerator is below 2^124 and the
  // denominator below 2^119.
  const uint128 den = 2 * static_cast<uint128>(p_) * q_ * t_ * t_;
  while (true) {
    const std::optional<int64_t> x = DiscreteLaplace(random, t_, bound);
    if (!x.has_value()) continue;
    const uint128 scaled = static_cast<uint128>(*x < 0 ? -*x : *x) * q_ * t_;
    const uint128 diff = scaled >= static_cast<uint128>(p_) ? scaled - p_ : p_ - scaled;
    if (BernoulliExp(random, diff * diff, den)) return *x;
  }
}

void DiscreteGaussianSampler::AddNoise(absl::Span<int64_t> values, RandomSource& random) const {
  for (int64_t& v : values) v += Sample(random);
}

void DiscreteGaussianSampler::AddNoiseModular(absl::Span<uint64_t> values, int modulus_bits,
                                              RandomSource& random) const {
  const uint64_t mask = modulus_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << modulus_bits) - 1;
  for (uint64_t& v : values) v = (v + static_cast<uint64_t>(Sample(random))) & mask;
}

}  // namespace fedkit::privacy
