// fedkit::monitoring — the coordinator's Prometheus metrics (prometheus-cpp): what happened
// (rounds, uploads, secure aggregation phases, checkpoints, RPCs) as counters and histograms fed
// by events, and what is true now (devices, phase, refusals, epsilon) read from GetStatus at
// scrape time (status_collector.h). No transport of its own: MetricsEndpoint (metrics_endpoint.h)
// serves a registry over HTTP, RpcMetricsInterceptorFactory (rpc_interceptor.h) feeds the RPC
// metrics. Names follow Prometheus' conventions (fedkit_ prefix, base units, _total for counters);
// the table is in README.md ("Metrics").
//
// Thread safety: every method may be called from any thread at once (prometheus-cpp's metrics
// are atomic; label lookups take the family's own mutex). Nothing blocks on I/O.
#ifndef FEDKIT_MONITORING_COORDINATOR_METRICS_H_
#define FEDKIT_MONITORING_COORDINATOR_METRICS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace fedkit::monitoring {

// A committed round, as the coordinator's round_committed hook reports it.
struct CommittedRound {
  int64_t round = 0;
  int64_t participants = 0;  // updates aggregated
  int64_t assigned = 0;      // devices assigned (over-selection included); 0 when unknown
  double seconds = 0;        // round start to commit
  std::optional<double> accuracy;
  std::optional<double> loss;
};

class CoordinatorMetrics {
 public:
  // Registers every event metric in `registry` (shared: the endpoint serves it). Never fails:
  // the names are fixed and valid.
  explicit CoordinatorMetrics(std::shared_ptr<prometheus::Registry> registry);

  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  void RoundCommitted(const CommittedRound& round);
  // A closed secure aggregation phase ("secagg-advertise", ...): its duration, and the clients
  // that were expected in it but did not complete it (clients_in - clients_out).
  void SecAggPhaseClosed(absl::string_view phase, absl::Duration took, int64_t clients_in,
                         int64_t clients_out);
  // A complete upload validated and aggregated (kind "plain" or "masked"), accepted or refused.
  void UpdateProcessed(absl::string_view kind, absl::Duration took, bool accepted);
  // A checkpoint written and made durable (fsync), or failed.
  void CheckpointWritten(absl::Duration took, bool ok);
  // A finished RPC: `method` is the short name ("CheckIn"), `code` the gRPC status code's name
  // ("OK", "RESOURCE_EXHAUSTED"); bytes are serialized message bytes.
  void RpcFinished(absl::string_view method, absl::string_view code, absl::Duration took,
                   int64_t bytes_in, int64_t bytes_out);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& rounds_committed_;
  prometheus::Histogram& round_duration_;
  prometheus::Gauge& round_participants_;
  prometheus::Gauge& round_assigned_;
  prometheus::Counter& round_dropouts_;
  prometheus::Gauge& round_accuracy_;
  prometheus::Gauge& round_loss_;
  prometheus::Family<prometheus::Histogram>& secagg_phase_duration_;
  prometheus::Family<prometheus::Counter>& secagg_dropouts_;
  prometheus::Family<prometheus::Histogram>& update_processing_;
  prometheus::Family<prometheus::Counter>& updates_;
  prometheus::Histogram& checkpoint_write_;
  prometheus::Counter& checkpoint_failures_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Counter>& rpc_received_bytes_;
  prometheus::Family<prometheus::Counter>& rpc_sent_bytes_;
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_COORDINATOR_METRICS_H_
