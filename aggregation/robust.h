// Byzantine-robust aggregation of a round's client updates: Aggregator implementations
// (aggregation/aggregator.h) that a coordinator or simulator can use where it uses
// WeightedFedAvgAggregator, for rounds WITHOUT secure aggregation (they need each update in the
// clear; a masked sum reveals none of them) and without central DP (whose noise is calibrated to
// a plain sum of clipped updates).
//
//   median          CoordinateMedianAggregator  coordinate-wise median (Yin et al. 2018).
//   trimmed-mean:B  TrimmedMeanAggregator       coordinate-wise mean after dropping the
//                                               floor(B*n) largest and smallest values (Yin et al.
//                                               2018).
//   krum:F          KrumAggregator              the update with the lowest Krum score (Blanchard
//                                               et al. 2017).
//   multi-krum:F,M  KrumAggregator              the example-weighted mean of the M updates with
//                                               the lowest Krum scores (Blanchard et al. 2017).
//   norm-bound:C    NormBoundAggregator         every update scaled down to L2 norm <= C, then
//                                               weighted FedAvg (Sun et al. 2019).
//   mean            WeightedFedAvgAggregator    plain weighted FedAvg, not robust (for comparison).
//
// What each tolerates (n = updates in the round; an attacker's update is anything that passes
// validation, i.e. finite and within the value bound, with any claimed weight in [1, max_weight]):
//   - median: fewer than n/2 attackers. Every coordinate of the result then lies between the
//     smallest and largest honest value of that coordinate.
//   - trimmed-mean:B: at most floor(B*n) attackers (all on one side or split between the two):
//     floor(B*n) values are dropped from each end of every coordinate, so every value that remains
//     lies between the smallest and largest honest value of its coordinate.
//   - krum:F / multi-krum:F,M: at most F attackers, and n >= 2F + 3 is required (Report refuses
//     fewer). The guarantee of Blanchard et al. is statistical (honest updates i.i.d. with bounded
//     variance); a single round is not guaranteed to pick an honest update.
//   - norm-bound:C: no attacker is removed; it bounds each one's influence on the mean to
//     w_a * C / W (w_a its claimed weight, W the total weight). Weights are self-reported example
//     counts, so max_weight caps what an attacker can claim; a tight cap matters here.
//   Median and trimmed mean are unweighted (every update weighs 1, whatever its example count);
//   Krum's selection is unweighted and Multi-Krum's average is weighted by example count.
//
// Memory and time (d = model dimension): median, trimmed mean and Krum keep every update until
// Report (BufferingAggregator): n x d floats, plus an ExactSum of d 128-bit integers. Median and
// trimmed mean take O(n d log n) at Report; Krum computes all pairwise distances, O(n^2 d) time
// and n(n-1)/2 doubles. norm-bound streams like FedAvg: O(d) memory, O(d) per update.
//
// Determinism: Report gives the same bits whatever order the updates were accumulated in and
// however they were split over CloneEmpty()/MergeWith/MergeSerialized, like the other
// aggregators. Per-coordinate values are ordered by a total order on floats (-0 before +0), Krum's
// ties are broken by the canonical order of updates (below), and every average is either summed
// in that sorted order or in the exact fixed point of aggregation/exact_sum.h.
//
// Errors (absl/status/status.h), as aggregator.h says: INVALID_ARGUMENT for a bad configuration
// or update (wrong length, non-finite value or one beyond the value bound, weight outside [1,
// max_weight]); FAILED_PRECONDITION for merging an aggregator of another kind or configuration,
// for Report when CanReport() is false (nothing accumulated, too few updates for Krum, already
// reported), for a second Report, and for Accumulate or a merge after Report. On error the
// aggregate is unchanged.
//
// Ownership: every aggregator owns its buffered copies of the updates; the spans passed to
// Accumulate are copied and may be freed on return. Thread safety: thread-compatible (one thread
// at a time per aggregator); for parallel accumulation give each thread its own CloneEmpty() and
// MergeWith them at the end. The free functions are thread-safe.
#ifndef FEDKIT_AGGREGATION_ROBUST_H_
#define FEDKIT_AGGREGATION_ROBUST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "aggregation/aggregator.h"
#include "aggregation/exact_sum.h"

namespace fedkit::aggregation {

// ---------------------------------------------------------------------------------------------
// Specs: which aggregator a round uses, as a command-line string.

enum class AggregatorKind { kMean, kMedian, kTrimmedMean, kKrum, kMultiKrum, kNormBound };

// "mean", "median", "trimmed-mean", "krum", "multi-krum", "norm-bound".
absl::string_view AggregatorKindName(AggregatorKind kind);

// The largest F and M a spec accepts (no aggregate holds more updates: ExactSum::kMaxVectors).
inline constexpr int64_t kMaxSpecCount = ExactSum::kMaxVectors;

struct AggregatorSpec {
  AggregatorKind kind = AggregatorKind::kMean;
  double beta = 0.0;        // trimmed-mean: the fraction trimmed from each end, in [0, 0.5)
  int64_t attackers = 0;    // krum, multi-krum: F, in [0, kMaxSpecCount]
  int64_t selected = 0;     // multi-krum: M, in [1, kMaxSpecCount]
  double norm_bound = 0.0;  // norm-bound: C, finite and > 0
  // Parameters a kind does not use must be 0 (the parser leaves them so; MakeAggregator checks).
  bool operator==(const AggregatorSpec&) const = default;
};

// The accepted forms, for usage messages:
// "mean | median | trimmed-mean:BETA | krum:F | multi-krum:F,M | norm-bound:C".
absl::string_view AcceptedAggregatorSpecs();

// Parses exactly one of mean, median, trimmed-mean:BETA, krum:F, multi-krum:F,M, norm-bound:C
// (lower case, no spaces). BETA and C are decimal numbers ("0.1", "1e-3"); F and M are decimal
// digits only. INVALID_ARGUMENT, quoting the text and listing the accepted forms, for anything
// else, including BETA outside [0, 0.5), F or M beyond kMaxSpecCount, M < 1 and C not finite and
// positive.
absl::StatusOr<AggregatorSpec> ParseAggregatorSpec(absl::string_view text);

// The string ParseAggregatorSpec reads back as `spec` (for a valid spec; doubles in the shortest
// decimal form that round-trips): "trimmed-mean:0.1", "multi-krum:2,5", "norm-bound:1.5".
std::string FormatAggregatorSpec(const AggregatorSpec& spec);

// The aggregator for `spec`; "mean" is WeightedFedAvgAggregator::Create(dimension, value_bound,
// max_weight). INVALID_ARGUMENT for an invalid spec (as the parser would refuse it, or with a
// parameter its kind does not use set), or unless dimension >= 1, value_bound is finite and
// positive and 1 <= max_weight <= kMaxWeightLimit. value_bound is the per-coordinate bound of
// every update (UpdateValueBound), max_weight the cap on an update's weight (its example count).
absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(const AggregatorSpec& spec,
                                                           int64_t dimension, double value_bound,
                                                           int64_t max_weight);

// ---------------------------------------------------------------------------------------------
// Aggregators that keep every update until Report (median, trimmed mean, Krum).
//
// Accumulate validates and copies the update (n x d floats in all: memory grows with every
// update), and also adds weight * update to sum(): the exact sum plain FedAvg would average, kept
// for the interface and diagnostics; it is not what Report releases. Serialize writes the
// configuration and every buffered update with its weight (n * (8 + 4d) bytes plus a header);
// MergeSerialized validates each one as Accumulate does.
//
// The canonical order of updates: ascending lexicographic order of their values, coordinate by
// coordinate, in the total order of floats (numeric, with -0 before +0), then ascending weight.
// Identical updates of identical weight are interchangeable, so the order depends only on the
// multiset of (update, weight) pairs, never on arrival order.
//
// AggregateReport: num_inputs = n (all accumulated updates); total_examples = the sum of all their
// example counts; total_weight = the weights of the updates behind the released values (per
// class below). Callers that divide a loss sum weighted by example count should use
// total_examples.
class BufferingAggregator : public Aggregator {
 public:
  absl::Status Accumulate(absl::Span<const float> delta, int64_t num_examples) final;
  absl::Status MergeWith(const Aggregator& other) final;
  // False before enough updates (MinInputs) and after Report.
  bool CanReport() const final;
  absl::StatusOr<AggregateReport> Report() final;
  int64_t num_inputs() const final { return sum_.num_vectors(); }
  const ExactSum& sum() const final { return sum_; }
  std::string Serialize() const final;
  absl::Status MergeSerialized(absl::string_view bytes) final;

 protected:
  struct Update {
    std::vector<float> values;
    int64_t weight = 0;
  };
  // What distinguishes configurations: a kind tag and up to two parameters. Aggregators merge only
  // with the same tag, parameters, dimension, value bound and weight cap.
  struct Config {
    uint64_t kind = 0;
    double parameters[2] = {0.0, 0.0};
  };

  BufferingAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                      int64_t max_weight, Config config);

  // The fewest updates Report accepts (>= 1).
  virtual int64_t MinInputs() const { return 1; }
  // The FAILED_PRECONDITION Report returns with MinInputs() > n >= 1 updates.
  virtual absl::Status TooFewInputs(int64_t n) const;
  // Fills report.average and report.total_weight from the buffered updates (at least
  // MinInputs(), in arrival order: the implementation makes the result independent of it).
  virtual absl::Status Release(const std::vector<Update>& updates,
                               AggregateReport& report) const = 0;

  int64_t dimension() const { return sum_.dimension(); }
  const FixedPoint& fixed_point() const { return sum_.fixed_point(); }
  double max_abs_value() const { return max_abs_value_; }
  int64_t max_weight() const { return max_weight_; }

  // Indices of `updates` in the canonical order (above).
  static std::vector<size_t> CanonicalOrder(const std::vector<Update>& updates);

 private:
  bool SameConfiguration(const BufferingAggregator& other) const;

  const double max_abs_value_;
  const int64_t max_weight_;
  const Config config_;
  ExactSum sum_;  // of weight * values, over the buffered updates
  std::vector<Update> updates_;
  int64_t total_examples_ = 0;
  bool reported_ = false;
};

// Coordinate-wise median, unweighted: for each coordinate, the middle value of the n updates' (the
// mean of the two middle ones, rounded to float, for even n). Tolerates fewer than n/2 attackers.
// Keeps all n updates (n x d floats). total_weight = the values behind each coordinate: 1 for odd
// n, 2 for even n. Create: INVALID_ARGUMENT as WeightedFedAvgAggregator::Create.
class CoordinateMedianAggregator final : public BufferingAggregator {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinateMedianAggregator>> Create(int64_t dimension,
                                                                            double max_abs_value,
                                                                            int64_t max_weight);
  std::unique_ptr<Aggregator> CloneEmpty() const override;

 private:
  using BufferingAggregator::BufferingAggregator;
  absl::Status Release(const std::vector<Update>& updates, AggregateReport& report) const override;
};

// Coordinate-wise trimmed mean, unweighted: for each coordinate, drop the k = floor(beta * n)
// largest and k smallest values (k computed with a 1e-9 slack, so that beta = 0.29 of n = 100
// trims 29, not 28) and average the n - 2k left (summed in double in ascending order, rounded to
// float). beta = 0 is the unweighted mean. Tolerates at most k attackers. Keeps all n updates
// (n x d floats). total_weight = n - 2k, the values averaged per coordinate. Create:
// INVALID_ARGUMENT as WeightedFedAvgAggregator::Create, or unless 0 <= beta < 0.5.
class TrimmedMeanAggregator final : public BufferingAggregator {
 public:
  static absl::StatusOr<std::unique_ptr<TrimmedMeanAggregator>> Create(int64_t dimension,
                                                                       double max_abs_value,
                                                                       int64_t max_weight,
                                                                       double beta);
  std::unique_ptr<Aggregator> CloneEmpty() const override;

 private:
  TrimmedMeanAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                        int64_t max_weight, double beta);
  absl::Status Release(const std::vector<Update>& updates, AggregateReport& report) const override;

  const double beta_;
};

// Krum and Multi-Krum with F assumed attackers. Each update's score is the sum of its squared L2
// distances (in double) to its n - F - 2 nearest other updates. Krum (selected = 0) releases the
// update with the lowest score, bit for bit, total_weight = its example count. Multi-Krum
// (selected = M >= 1) releases the weighted mean (weights = example counts, summed exactly) of the
// min(M, n - F) updates with the lowest scores (M = 1 releases that update bit for bit);
// total_weight = the sum of their example counts. Equal scores are ordered by the canonical order
// of updates. Tolerates at most F attackers; requires n >= 2F + 3: before that CanReport() is
// false and Report is FAILED_PRECONDITION naming n and F. Keeps all n updates (n x d floats);
// Report takes O(n^2 d) time and n(n-1)/2 doubles. Create: INVALID_ARGUMENT as
// WeightedFedAvgAggregator::Create, or unless 0 <= attackers <= kMaxSpecCount and 0 <= selected
// <= kMaxSpecCount.
class KrumAggregator final : public BufferingAggregator {
 public:
  static absl::StatusOr<std::unique_ptr<KrumAggregator>> Create(int64_t dimension,
                                                                double max_abs_value,
                                                                int64_t max_weight,
                                                                int64_t attackers,
                                                                int64_t selected);
  std::unique_ptr<Aggregator> CloneEmpty() const override;

 private:
  KrumAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                 int64_t max_weight, int64_t attackers, int64_t selected);
  int64_t MinInputs() const override { return 2 * attackers_ + 3; }
  absl::Status TooFewInputs(int64_t n) const override;
  absl::Status Release(const std::vector<Update>& updates, AggregateReport& report) const override;

  const int64_t attackers_;
  const int64_t selected_;  // 0 for Krum
};

// Norm bounding: an update of L2 norm (in double) above C is scaled by C / norm (each coordinate
// rounded to float, so its norm is C within float rounding, ~1e-7 relative); one within C is left
// as it is, bit for bit. Then weighted FedAvg, exactly as WeightedFedAvgAggregator (the same
// fixed point, so with no update scaled the two release the same bits). Removes no attacker; bounds
// each one's pull on the mean to w_a * C / W. Streams: O(d) memory. AggregateReport as FedAvg's:
// total_weight = total_examples = the sum of all example counts. Create: INVALID_ARGUMENT as
// WeightedFedAvgAggregator::Create, or unless norm_bound is finite and positive.
class NormBoundAggregator final : public Aggregator {
 public:
  static absl::StatusOr<std::unique_ptr<NormBoundAggregator>> Create(int64_t dimension,
                                                                     double max_abs_value,
                                                                     int64_t max_weight,
                                                                     double norm_bound);

  absl::Status Accumulate(absl::Span<const float> delta, int64_t num_examples) override;
  absl::Status MergeWith(const Aggregator& other) override;
  bool CanReport() const override { return !reported_ && sum_.num_vectors() > 0; }
  absl::StatusOr<AggregateReport> Report() override;
  int64_t num_inputs() const override { return sum_.num_vectors(); }
  std::unique_ptr<Aggregator> CloneEmpty() const override;
  // The exact sum of weight * (scaled) update.
  const ExactSum& sum() const override { return sum_; }
  std::string Serialize() const override;
  absl::Status MergeSerialized(absl::string_view bytes) override;
  // How many of the accumulated updates (merged ones included) were scaled down.
  int64_t num_scaled() const { return num_scaled_; }

 private:
  NormBoundAggregator(int64_t dimension, FixedPoint fixed_point, double max_abs_value,
                      int64_t max_weight, double norm_bound);

  const double max_abs_value_;
  const int64_t max_weight_;
  const double norm_bound_;
  ExactSum sum_;
  int64_t total_weight_ = 0;
  int64_t num_scaled_ = 0;
  bool reported_ = false;
};

}  // namespace fedkit::aggregation

#endif  // FEDKIT_AGGREGATION_ROBUST_H_
