#include "privacy/rdp_accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace fedkit::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)), exact for -inf operands.
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(-std::abs(a - b)));
}

// log(exp(a) - exp(b)) for a >= b.
double LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (a <= b) return -kInf;  // a == b: the difference is 0 (rounding may make a < b)
  return std::log(std::expm1(a - b)) + b;
}

// log(erfc(x)), accurate where erfc underflows (x above ~26): the asymptotic series
// erfc(x) ~ exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6)).
double LogErfc(double x) {
  if (x < 20.0) return std::log(std::erfc(x));
  const double x2 = x * x;
  return -x2 - std::log(x) - 0.5 * std::log(M_PI) +
         std::log1p(-1.0 / (2 * x2) + 3.0 / (4 * x2 * x2) - 15.0 / (8 * x2 * x2 * x2));
}

// log A_alpha for integer alpha: log sum_i binom(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) /
// 2z^2).
double LogAInteger(double q, double sigma, int64_t alpha) {
  double log_a = -kInf;
  for (int64_t i = 0; i <= alpha; ++i) {
    const double log_binom =
        std::lgamma(alpha + 1.0) - std::lgamma(i + 1.0) - std::lgamma(alpha - i + 1.0);
    const double term = log_binom + i * std::log(q) + (alpha - i) * std::log1p(-q) +
                        (static_cast<double>(i) * i - i) / (2 * sigma * sigma);
    log_a = LogAdd(log_a, term);
  }
  return log_a;
}

// log A_alpha for fractional alpha: the integral split at z0 into two series with generalized
// binomial coefficients (whose sign alternates once i > alpha), each term weighted by a Gaussian
// tail.
double LogAFractional(double q, double sigma, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  double log_abs_binom = 0.0;  // log |binom(alpha, i)|, updated incrementally
  int sign = 1;
  for (int64_t i = 0;; ++i) {
    if (i > 0) {
      const double factor = (alpha - (i - 1)) / i;
      if (factor < 0) sign = -sign;
      log_abs_binom += std::log(std::abs(factor));
    }
    const double j = alpha - i;
    const double log_t0 = log_abs_binom + i * std::log(q) + j * std::log1p(-q);
    const double log_t1 = log_abs_binom + j * std::log(q) + i * std::log1p(-q);
    const double log_e0 = std::log(0.5) + LogErfc((i - z0) / (M_SQRT2 * sigma));
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / (M_SQRT2 * sigma));
    const double log_s0 = log_t0 + (static_cast<double>(i) * i - i) / (2 * sigma * sigma) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2 * sigma * sigma) + log_e1;
    if (sign > 0) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30 || i > 100000) break;
  }
  return LogAdd(log_a0, log_a1);
}

double RdpAtOrder(double q, double sigma, double alpha) {
  if (q == 0) return 0;
  if (std::isinf(alpha)) return kInf;
  if (q == 1) return alpha / (2 * sigma * sigma);
  const double log_a = alpha == std::floor(alpha)
                           ? LogAInteger(q, sigma, static_cast<int64_t>(alpha))
                           : LogAFractional(q, sigma, alpha);
  return log_a / (alpha - 1);
}

}  // namespace

std::vector<double> SampledGaussianRdp(double sampling_rate, double noise_multiplier,
                                       absl::Span<const double> orders) {
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double order : orders) rdp.push_back(RdpAtOrder(sampling_rate, noise_multiplier, order));
  return rdp;
}

std::vector<double> DefaultRdpOrders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  for (double a : {128.0, 256.0, 512.0}) orders.push_back(a);
  return orders;
}

absl::StatusOr<EpsilonAtDelta> RdpToEpsilon(absl::Span<const double> orders,
                                            absl::Span<const double> rdp, double delta,
                                            RdpConversion conversion) {
  if (orders.empty() || orders.size() != rdp.size()) {
    return absl::InvalidArgumentError(absl::StrCat("need one RDP value per order; got ",
                                                   orders.size(), " orders and ", rdp.size(),
                                                   " values"));
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  // Nothing released: no privacy loss (the conversion's bound would still be a little above 0).
  if (std::all_of(rdp.begin(), rdp.end(), [](double r) { return r == 0; })) {
    return EpsilonAtDelta{0.0, orders.back()};
  }
  EpsilonAtDelta best{kInf, 0};
  for (size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    if (!(a > 1)) {
      return absl::InvalidArgumentError(absl::StrCat("RDP orders must be > 1, got ", a));
    }
    const double eps = conversion == RdpConversion::kBalle2020
                           ? rdp[i] + std::log1p(-1 / a) - (std::log(delta) + std::log(a)) / (a - 1)
                           : rdp[i] - std::log(delta) / (a - 1);
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(best.epsilon, 0.0);
  return best;
}

RdpAccountant::RdpAccountant(std::vector<double> orders)
    : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {}

absl::Status RdpAccountant::Compose(double sampling_rate, double noise_multiplier, int64_t steps) {
  if (!(sampling_rate >= 0 && sampling_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling rate must be in [0, 1], got ", sampling_rate));
  }
  if (!(noise_multiplier > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be > 0, got ", noise_multiplier));
  }
  if (steps < 0) return absl::InvalidArgumentError("steps must be >= 0");
  const std::vector<double> step = SampledGaussianRdp(sampling_rate, noise_multiplier, orders_);
  for (size_t i = 0; i < rdp_.size(); ++i) rdp_[i] += step[i] * static_cast<double>(steps);
  return absl::OkStatus();
}

absl::StatusOr<EpsilonAtDelta> RdpAccountant::Epsilon(double delta) const {
  return RdpToEpsilon(orders_, rdp_, delta);
}

absl::StatusOr<EpsilonAtDelta> RdpAccountant::EpsilonAfter(double sampling_rate,
                                                           double noise_multiplier, int64_t steps,
                                                           double delta) const {
  RdpAccountant copy = *this;
  if (absl::Status s = copy.Compose(sampling_rate, noise_multiplier, steps); !s.ok()) return s;
  return copy.Epsilon(delta);
}

absl::Status RdpAccountant::Restore(absl::Span<const double> rdp) {
  if (rdp.size() != orders_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("accountant state has ", rdp.size(),
                                                   " values for ", orders_.size(), " orders"));
  }
  for (double v : rdp) {
    if (!(v >= 0))
      return absl::InvalidArgumentError("accountant state holds a negative or NaN value");
  }
  rdp_.assign(rdp.begin(), rdp.end());
  return absl::OkStatus();
}

}  // namespace fedkit::privacy
