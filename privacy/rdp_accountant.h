// Renyi differential privacy accounting for the Poisson-subsampled Gaussian mechanism, the
// mechanism of user-level DP-FedAvg (McMahan et al. 2018): each round samples clients with
// probability q and adds Gaussian noise of standard deviation z * S to the sum of updates clipped
// to L2 norm S.
#ifndef FEDKIT_PRIVACY_RDP_ACCOUNTANT_H_
#define FEDKIT_PRIVACY_RDP_ACCOUNTANT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedkit::privacy {

// The RDP of one step of the sampled Gaussian mechanism at each order, following Mironov, Talwar
// and Zhang, "Renyi Differential Privacy of the Sampled Gaussian Mechanism" (2019): exact for
// integer orders (Sec. 3.3, a finite binomial sum) and, for fractional orders, the two-sided series
// of Sec. 3.4 summed until its terms fall below e^-30, as TensorFlow Privacy and Opacus do. All
// sums are in log space. q in [0, 1], noise_multiplier z > 0, orders > 1.
std::vector<double> SampledGaussianRdp(double sampling_rate, double noise_multiplier,
                                       absl::Span<const double> orders);

// The standard order list of TensorFlow Privacy / Opacus: 1.1, 1.2, ..., 10.9, 12, 13, ..., 63,
// plus 128, 256, 512.
std::vector<double> DefaultRdpOrders();

struct EpsilonAtDelta {
  double epsilon = 0.0;
  double order = 0.0;  // the order that gave the smallest epsilon
};

// RDP-to-(epsilon, delta) conversion. kBalle2020 is Balle et al., "Hypothesis Testing
// Interpretations and Renyi Differential Privacy" (AISTATS 2020), Thm. 21:
//   epsilon = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1),
// minimised over orders a and floored at 0 (what TensorFlow Privacy's dp_accounting and Opacus
// use). kMironov2017 is the classic bound epsilon = rdp(a) + log(1 / delta) / (a - 1) (Mironov
// 2017, Prop. 3), looser; kept to compare with older published numbers.
enum class RdpConversion { kBalle2020, kMironov2017 };

// INVALID_ARGUMENT unless orders and rdp have equal, non-zero lengths and 0 < delta < 1.
absl::StatusOr<EpsilonAtDelta> RdpToEpsilon(absl::Span<const double> orders,
                                            absl::Span<const double> rdp, double delta,
                                            RdpConversion conversion = RdpConversion::kBalle2020);

// Accumulates RDP over rounds (composition adds RDP order by order). The state is the RDP vector,
// which a coordinator checkpoints and restores.
class RdpAccountant {
 public:
  explicit RdpAccountant(std::vector<double> orders = DefaultRdpOrders());

  // Records `steps` rounds with the given sampling rate q = clients per round / population and
  // noise multiplier z. INVALID_ARGUMENT for q outside [0, 1] or z <= 0.
  absl::Status Compose(double sampling_rate, double noise_multiplier, int64_t steps = 1);

  // Epsilon spent so far at `delta`.
  absl::StatusOr<EpsilonAtDelta> Epsilon(double delta) const;

  // Epsilon if `steps` more rounds of (q, z) were spent: for stopping before a round that would
  // exceed a budget.
  absl::StatusOr<EpsilonAtDelta> EpsilonAfter(double sampling_rate, double noise_multiplier,
                                              int64_t steps, double delta) const;

  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }
  // INVALID_ARGUMENT if `rdp` does not have one value per order or holds a negative/NaN value.
  absl::Status Restore(absl::Span<const double> rdp);

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;
};

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_RDP_ACCOUNTANT_H_
