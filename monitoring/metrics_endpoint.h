// MetricsEndpoint: serves Prometheus' text exposition format (prometheus-cpp's TextSerializer) of
// the collectables registered with it at http://HOST:PORT/metrics, over HttpEndpoint (GNU
// libmicrohttpd; http_endpoint.h says why not prometheus-cpp's own civetweb Exposer). GET only
// (others: 405), other paths 404, bounded as http_endpoint.h says (2 threads, 32 connections).
//
// Ownership: the endpoint keeps the collectables alive (shared_ptr) for as long as it serves
// them. Thread safety: Create and the destructor from one thread; scrapes are answered on the
// endpoint's own threads, concurrently with everything else (collectables must be thread-safe;
// prometheus::Registry is).
#ifndef FEDKIT_MONITORING_METRICS_ENDPOINT_H_
#define FEDKIT_MONITORING_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "monitoring/http_endpoint.h"
#include "prometheus/collectable.h"

namespace fedkit::monitoring {

class MetricsEndpoint {
 public:
  // Listens on `listen` ("HOST:PORT", HOST an IPv4 address or localhost; port 0 picks a free one).
  // INVALID_ARGUMENT (naming it) when `listen` is not such an address, UNAVAILABLE (naming the
  // address and the system's reason) when it cannot be bound, e.g. a port in use.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Create(
      const std::string& listen,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

  // The exposition of `collectables` now (what a scrape returns).
  static std::string Exposition(
      const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables);

  // The port it listens on.
  int port() const { return http_->port(); }

 private:
  MetricsEndpoint() = default;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<HttpEndpoint> http_;  // destroyed first: stops serving
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_METRICS_ENDPOINT_H_
