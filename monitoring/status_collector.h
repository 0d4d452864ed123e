// StatusCollector: a prometheus::Collectable that reads the coordinator's GetStatus at each scrape
// and reports what is true now: the round and its phase, devices checked in / assigned / uploaded,
// rounds abandoned, refusals and declines by reason, the privacy spent, and the last committed
// round's device telemetry (p50 and p90 of each field, RoundSummary.device_telemetry). Reading the
// status when Prometheus asks (instead of mirroring it in gauges) keeps one source of truth: the
// values are exactly what GetStatus and the dashboard show.
//
// Thread safety: Collect may run on any thread (the HTTP endpoint's); it only calls `status`,
// which must be thread-safe (RoundCoordinator::Status is). Owns a copy of `status`.
#ifndef FEDKIT_MONITORING_STATUS_COLLECTOR_H_
#define FEDKIT_MONITORING_STATUS_COLLECTOR_H_

#include <functional>
#include <vector>

#include "fedkit/v1/coordinator.pb.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace fedkit::monitoring {

// The phases fedkit_round_phase reports (one series each, 1 for the current one), so that a
// dashboard can show a phase that is not current as 0 rather than as a missing series.
inline constexpr const char* kRoundPhases[] = {
    "waiting",       "training",      "secagg-advertise", "secagg-share",
    "secagg-upload", "secagg-unmask", "secagg-unmasking", "finished"};

class StatusCollector final : public prometheus::Collectable {
 public:
  explicit StatusCollector(std::function<v1::GetStatusResponse()> status);
  std::vector<prometheus::MetricFamily> Collect() const override;

  // The families for one status (Collect is this of `status()`); for tests.
  static std::vector<prometheus::MetricFamily> FamiliesOf(const v1::GetStatusResponse& status);

 private:
  std::function<v1::GetStatusResponse()> status_;
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_STATUS_COLLECTOR_H_
