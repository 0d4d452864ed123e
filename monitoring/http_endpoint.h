// HttpEndpoint: a small read-only HTTP/1.1 server (Debian's cpp-httplib) for operators' endpoints:
// Prometheus' /metrics (metrics_endpoint.h) and the coordinator's dashboard. GET and HEAD only
// (others: 405), fixed paths (others: 404), request bodies refused, a few threads.
//
// Why not civetweb, which prometheus-cpp's own Exposer uses: Debian's civetweb starts its threads
// with a fixed 100 KiB stack, and in a process that loads LibTorch and OpenBLAS (whose static TLS
// needs more than that) pthread_create fails with EINVAL, so the Exposer cannot start inside
// fedkit-coordinator.
//
// Ownership and threads: Create starts a thread that serves until the endpoint is destroyed;
// handlers run on the server's worker threads, concurrently, and must be thread-safe. The
// destructor stops serving and joins; call it from one thread.
#ifndef FEDKIT_MONITORING_HTTP_ENDPOINT_H_
#define FEDKIT_MONITORING_HTTP_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace fedkit::monitoring {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpRoute {
  std::string path;  // exact, e.g. "/metrics"
  std::function<HttpResponse()> handler;
};

class HttpEndpoint {
 public:
  // Serves `routes` on `listen` ("HOST:PORT", "[IPV6]:PORT"; port 0 picks a free one).
  // INVALID_ARGUMENT when `listen` is not HOST:PORT, UNAVAILABLE (naming the address) when it
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Create(const std::string& listen,
                                                              std::vector<HttpRoute> routes,
                                                              int threads = 2);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  // The port it listens on.
  int port() const { return port_; }

 private:
  HttpEndpoint() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "HOST:PORT" / "[IPV6]:PORT"; INVALID_ARGUMENT otherwise (port outside 0..65535).
absl::Status ParseListenAddress(const std::string& listen, std::string* host, int* port);

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_HTTP_ENDPOINT_H_
