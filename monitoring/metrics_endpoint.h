// MetricsEndpoint: serves Prometheus' text format at http://HOST:PORT/metrics with
// prometheus-cpp's Exposer (civetweb), for the collectables registered with it.
//
// Ownership: the endpoint keeps the collectables alive (shared_ptr) for as long as it serves
// them. Thread safety: Create and the destructor from one thread; scrapes are answered on the
// Exposer's own threads, concurrently with everything else.
#ifndef FEDKIT_MONITORING_METRICS_ENDPOINT_H_
#define FEDKIT_MONITORING_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace fedkit::monitoring {

class MetricsEndpoint {
 public:
  // Listens on `listen` ("HOST:PORT"; port 0 picks a free one). INVALID_ARGUMENT when `listen` is
  // not HOST:PORT, UNAVAILABLE (naming the address) when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Create(
      const std::string& listen,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

  // The port it listens on.
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;  // destroyed first: stops serving
  int port_ = 0;
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_METRICS_ENDPOINT_H_
