// A live web dashboard of a running coordinator, served over HTTP by monitoring::HttpEndpoint
// (monitoring/http_endpoint.h: Debian's GNU libmicrohttpd): one page (dashboard/static/, embedded
// in the binary at build time: nothing is fetched from a CDN) that polls the coordinator's
// GetStatusResponse as JSON every second and shows the run's state, a chart of accuracy and loss
// per round, participants and dropouts, refusals, epsilon and the secure aggregation phases of the
// current round.
//
// Routes (GET only; any other method is 405 with "Allow: GET"; any other path is 404):
//   /, /index.html   the page (and its /dashboard.js, /dashboard.css: see EmbeddedAssets())
//   /api/status      the status source's GetStatusResponse as JSON (StatusToJson below), with
//                    "Cache-Control: no-store"; 503 with {"error": MESSAGE} when the source fails
// Every response (but libmicrohttpd's own 431) carries a Content-Security-Policy that lets the
// page load nothing but this server's own files, and no CORS header (other sites' pages cannot
// read the status).
//
// Security: read-only, and GetStatus holds no secrets (no client ids, no keys, no DP sampling
// seeds), but there is NO authentication and NO TLS: listen on loopback (127.0.0.1:PORT) and reach
// it over an SSH tunnel, or put it behind the operator's reverse proxy, which authenticates. The
// page uses relative URLs, so a proxy may serve it under any path prefix. Bounded (HttpEndpoint):
// `threads` threads serve every connection (polling, not a thread per connection), at most
// `max_connections` at once, request headers up to 8 KiB (larger: 431), no request body is read,
// and a connection idle for `idle_timeout` is closed. Not civetweb: http_endpoint.h says why.
//
// Ownership: the server owns its HttpEndpoint (and through it the listening socket) and the status
// source; it stops (waiting for the requests in progress) when destroyed.
// Thread safety: Create, port(), url() and the destructor may be called from any thread (the
// destructor not from the status source). The status source runs on the server's threads, up to
// `threads` calls at once: it must be thread-safe (RoundCoordinator::Status is).
#ifndef FEDKIT_DASHBOARD_DASHBOARD_SERVER_H_
#define FEDKIT_DASHBOARD_DASHBOARD_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::monitoring {
class HttpEndpoint;
}

namespace fedkit::dashboard {

struct DashboardOptions {
  // "HOST:PORT": HOST an IPv4 address (0.0.0.0: every interface) or "localhost" (127.0.0.1), PORT
  // 0..65535 (0: a free port, see DashboardServer::port()).
  std::string listen = "127.0.0.1:0";
  // Threads serving connections (1..16); a connection stays with the thread that accepted it.
  int threads = 2;
  int max_connections = 32;  // connections open at once; more are refused at accept (1..1024)
  // A connection with nothing sent or received for this long is closed (whole seconds, >= 1 s).
  absl::Duration idle_timeout = absl::Seconds(10);
};

// What /api/status serves; called once per request. An error is answered 503 with its message
// (the page then shows "connection lost").
using StatusSource = std::function<absl::StatusOr<v1::GetStatusResponse>()>;

// `status` as /api/status serves it: protobuf's own JSON mapping
// (google::protobuf::util::MessageToJsonString) with the .proto field names (current_round, not
// currentRound) and every field without presence printed even when zero or empty, so a page reads
// "received": "0" rather than a missing key. Fields with presence (`optional`, e.g. epsilon) are
// printed only when set. As the mapping says, 64-bit integers are JSON strings ("7") and
// non-finite doubles are "NaN", "Infinity" or "-Infinity". INTERNAL if protobuf refuses.
absl::StatusOr<std::string> StatusToJson(const v1::GetStatusResponse& status);

class DashboardServer {
 public:
  // Starts serving on options.listen. INVALID_ARGUMENT for a malformed address (naming it), other
  // options out of range, or an empty source; UNAVAILABLE naming the address and the system's
  // reason when it cannot be bound (in use, not this machine's, a privileged port) or the server
  // cannot start.
  static absl::StatusOr<std::unique_ptr<DashboardServer>> Create(const DashboardOptions& options,
                                                                 StatusSource source);

  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;
  // Stops listening and waits for the requests in progress.
  ~DashboardServer();

  // The port bound (the one picked when options.listen asked for port 0).
  int port() const;
  // "http://HOST:PORT/" with the host as given (localhost as 127.0.0.1) and the bound port.
  std::string url() const;

 private:
  explicit DashboardServer(std::unique_ptr<monitoring::HttpEndpoint> endpoint);

  const std::unique_ptr<monitoring::HttpEndpoint> endpoint_;  // never null
};

}  // namespace fedkit::dashboard

#endif  // FEDKIT_DASHBOARD_DASHBOARD_SERVER_H_
