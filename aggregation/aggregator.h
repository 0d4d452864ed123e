// Streaming aggregation of a round's client updates, shared by the coordinator and the simulator.
//
// The interface follows federated-compute's TensorAggregator: Accumulate folds one client's update
// in as soon as it arrives (nothing of it is kept), MergeWith adds a partial aggregate built
// elsewhere (another thread, process or machine), CanReport says whether a release is possible,
// and Report releases the aggregate once. Every implementation sums in the exact fixed point of
// aggregation/exact_sum.h, so the released value is the same bit for bit whatever order updates
// arrive in and however they were split into partial aggregates: a coordinator that folds uploads
// as they come and a simulator that trains clients on a pool of threads agree exactly.
//
// Implementations:
//   WeightedFedAvgAggregator  sum_u w_u delta_u / sum_u w_u, w_u = the client's example count
//                             (McMahan et al. 2017).
//   UnitWeightDpAggregator    DP-FedAvg (McMahan et al. 2018): every update clipped to L2 norm S
//                             weighs 1; Report adds discrete Gaussian noise of standard deviation
//                             >= stddev to each coordinate of the exact integer sum
//                             (CentralDpRelease) and divides by a fixed denominator.
// (Secure aggregation accumulates masked vectors modulo 2^bits: privacy/secagg/server.h folds each
// masked input into its running sum the same way, and unmasks at the end of the protocol.)
// Byzantine-robust aggregators (coordinate-wise median, trimmed mean, Krum / Multi-Krum, norm
// bounding) and the --aggregator spec that picks one are in aggregation/robust.h; those that
// need every update keep them until Report, and are as order-independent as the above.
//
// Limits (refused, never wrapped): each coordinate of an update is bounded (the clip norm, or a
// value bound without clipping), each weight by max_weight <= kMaxWeightLimit, and an aggregate
// holds at most ExactSum::kMaxVectors updates. The rounding error of the released average is at
// most bound * max_weight * 2^-94 per coordinate (about 3e-17 at the defaults): far below float
// precision. Errors (absl/status/status.h): INVALID_ARGUMENT for a bad configuration or a bad
// update (wrong length, non-finite or out-of-bound value, weight outside [1, max_weight], norm
// over the clip bound); FAILED_PRECONDITION for merging aggregators of another kind or
// configuration, for Report when CanReport() is false, and for a second Report. On error the
// aggregate is unchanged.
//
// Thread safety: thread-compatible (one thread at a time per aggregator). For parallel
// accumulation give each thread its own CloneEmpty() and MergeWith them at the end.
#ifndef FEDKIT_AGGREGATION_AGGREGATOR_H_
#define FEDKIT_AGGREGATION_AGGREGATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "aggregation/exact_sum.h"
#include "privacy/noise.h"

namespace fedkit::aggregation {

// Without a clip norm, update coordinates beyond +/- this are refused (the fixed point's range).
inline constexpr double kDefaultMaxUpdateValue = 1e6;
// The default cap on a client's weight (its example count).
inline constexpr int64_t kDefaultMaxWeight = int64_t{1} << 20;
// Weights up to 2^29 keep float value * weight exact in double.
inline constexpr int64_t kMaxWeightLimit = int64_t{1} << 29;
// Relative slack on the clip-norm bound for float rounding in the client's clipping.
inline constexpr double kDefaultClipTolerance = 1e-3;

// The per-coordinate bound of a round's updates: clip_norm * (1 + clip_tolerance) when clipping
// (clip_norm > 0; every coordinate is at most the norm), else max_update_value.
double UpdateValueBound(double clip_norm, double clip_tolerance = kDefaultClipTolerance,
                        double max_update_value = kDefaultMaxUpdateValue);

// What Report releases.
struct AggregateReport {
  std::vector<float> average;  // the aggregate model update the server optimizer applies
  int64_t num_inputs = 0;      // updates accumulated, merged ones included
  int64_t total_weight = 0;    // sum of the weights used (== num_inputs for unit weights)
  int64_t total_examples = 0;  // sum of the example counts the clients reported
};

class Aggregator {
 public:
  virtual ~Aggregator() = default;

  // Folds one client's update in (`num_examples` is its example count: its weight for FedAvg).
  virtual absl::Status Accumulate(absl::Span<const float> delta, int64_t num_examples) = 0;
  // Adds everything `other` holds. `other` must come from CloneEmpty() of an aggregator with the
  // same configuration (or be built with it); it is not changed.
  virtual absl::Status MergeWith(const Aggregator& other) = 0;
  // Whether Report can release: at least one input and not yet reported.
  virtual bool CanReport() const = 0;
  // Releases the aggregate; once per aggregator.
  virtual absl::StatusOr<AggregateReport> Report() = 0;
  virtual int64_t num_inputs() const = 0;
  // An empty aggregator of the same configuration (for partial aggregates). For the DP
  // aggregator the clone shares the noise source: only the aggregator that reports draws from it.
  virtual std::unique_ptr<Aggregator> CloneEmpty() const = 0;
  // The exact integer sums.
  virtual const ExactSum& sum() const = 0;
  // The partial aggregate as bytes: its configuration, totals and exact sums (processes of one
  // architecture; e.g. MPI ranks), and the merge of such bytes. MergeSerialized: INVALID_ARGUMENT
  // for malformed bytes, FAILED_PRECONDITION for another kind or configuration; then unchanged.
  virtual std::string Serialize() const = 0;
  virtual absl::Status MergeSerialized(absl::string_view bytes) = 0;
};

// Weighted FedAvg. Create: INVALID_ARGUMENT unless dimension >= 1, max_abs_value is finite and
// positive and 1 <= max_weight <= kMaxWeightLimit.
class WeightedFedAvgAggregator final : public Aggregator {
 public:
  static absl::StatusOr<std::unique_ptr<WeightedFedAvgAggregator>> Create(int64_t dimension,
                                                                          double max_abs_value,
                                                                          int64_t max_weight);

  absl::Status Accumulate(absl::Span<const float> delta, int64_t num_examples) override;
  absl::Status MergeWith(const Aggregator& other) override;
  bool CanReport() const override { return !reported_ && sum_.num_vectors() > 0; }
  absl::StatusOr<AggregateReport> Report() override;
  int64_t num_inputs() const override { return sum_.num_vectors(); }
  std::unique_ptr<Aggregator> CloneEmpty() const override;
  const ExactSum& sum() const override { return sum_; }
  std::string Serialize() const override;
  absl::Status MergeSerialized(absl::string_view bytes) override;

 private:
  WeightedFedAvgAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                           int64_t max_weight);

  const double max_abs_value_;
  const int64_t max_weight_;
  ExactSum sum_;              // of w_u * delta_u
  int64_t total_weight_ = 0;  // sum of w_u (== total examples)
  bool reported_ = false;
};

// DP-FedAvg's central release from the exact sum of unit-weight updates of L2 norm <= clip_bound:
// (sum + noise) / fixed_denominator per coordinate, as floats, where the noise is the discrete
// Gaussian on a fixed-point grid of the sum's integers (privacy/central_discrete_noise.h, with
// sensitivity clip_bound plus the sum's per-term rounding, and standard deviation >= noise_stddev
// in value units), so that no floating-point noise is ever released (Mironov 2012). The coordinator
// and the simulator both release through here, so a seeded run is the same bit for bit.
// INVALID_ARGUMENT if noise_stddev is negative or not finite, clip_bound or fixed_denominator is
// not positive and finite. noise_stddev 0 draws nothing.
absl::StatusOr<std::vector<float>> CentralDpRelease(const ExactSum& sum, double clip_bound,
                                                    double noise_stddev, double fixed_denominator,
                                                    privacy::RandomSource& noise);

// DP-FedAvg's unit-weight sum with central noise at Report (CentralDpRelease). `noise` is borrowed:
// it must outlive the aggregator, and only Report uses it (on the calling thread). Create:
// INVALID_ARGUMENT unless dimension >= 1, clip_bound > 0, noise_stddev >= 0 and
// fixed_denominator > 0 (all finite). Accumulate refuses an update whose L2 norm exceeds
// clip_bound (the sensitivity the noise is calibrated to).
class UnitWeightDpAggregator final : public Aggregator {
 public:
  static absl::StatusOr<std::unique_ptr<UnitWeightDpAggregator>> Create(
      int64_t dimension, double clip_bound, double noise_stddev, double fixed_denominator,
      privacy::RandomSource* noise);

  absl::Status Accumulate(absl::Span<const float> delta, int64_t num_examples) override;
  absl::Status MergeWith(const Aggregator& other) override;
  bool CanReport() const override { return !reported_ && sum_.num_vectors() > 0; }
  absl::StatusOr<AggregateReport> Report() override;
  int64_t num_inputs() const override { return sum_.num_vectors(); }
  std::unique_ptr<Aggregator> CloneEmpty() const override;
  const ExactSum& sum() const override { return sum_; }
  std::string Serialize() const override;
  absl::Status MergeSerialized(absl::string_view bytes) override;

 private:
  UnitWeightDpAggregator(int64_t dimension, FixedPoint fixed_point, double clip_bound,
                         double noise_stddev, double fixed_denominator,
                         privacy::RandomSource* noise);

  const double clip_bound_;
  const double noise_stddev_;
  const double fixed_denominator_;
  privacy::RandomSource* const noise_;
  ExactSum sum_;  // of the clipped deltas, weight 1
  int64_t total_examples_ = 0;
  bool reported_ = false;
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_AGGREGATOR_H_
