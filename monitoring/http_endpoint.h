// HttpEndpoint: a small read-only HTTP/1.1 server over Debian's GNU libmicrohttpd, for operators'
// endpoints: Prometheus' /metrics (metrics_endpoint.h) and the coordinator's live dashboard
// (dashboard/dashboard_server.h). No LibTorch.
//
// What it serves: a fixed set of exact paths ("/metrics"; the query string is not part of the path
// and does not change the route), each answered by a handler with a whole response. GET only: any
// other method (HEAD included) is 405 with "Allow: GET"; any other path is 404; a handler that
// throws is 500. Those three bodies are one line of text/plain. Request bodies are never read.
//
// Bounded: `threads` threads serve every connection (polling, not a thread per connection), at
// most `max_connections` at once (more are refused at accept), a connection's request line and
// headers must fit in 8 KiB (larger: 431, answered by libmicrohttpd without calling a handler),
// and a connection idle for `idle_timeout` is closed. The listening socket has SO_REUSEADDR only
// (a restart may rebind a port in TIME_WAIT), never SO_REUSEPORT: a second process cannot bind the
// same port and take half of the requests; it gets UNAVAILABLE.
//
// Why not civetweb, which prometheus-cpp's own Exposer uses: Debian's libcivetweb starts its
// threads with a fixed 100 KiB stack, and glibc refuses such a thread (EINVAL) in a process whose
// static TLS does not fit in it, as in fedkit-coordinator: 106 KiB, of which OpenBLAS (through
// LibTorch) holds 60 and glog 30. libmicrohttpd's threads get the system's default stack.
//
// Security: no TLS, no authentication. Keep it on loopback or a private network, or behind a
// reverse proxy that authenticates.
//
// Ownership: the endpoint owns its libmicrohttpd daemon (and through it the listening socket) and
// the routes' handlers; it stops when destroyed, after the requests in progress.
// Thread safety: Create, port(), host() and the destructor may be called from any thread (the
// destructor not from a handler). Handlers run on the endpoint's threads, up to `threads` calls at
// once, concurrently with everything else: they must be thread-safe.
#ifndef FEDKIT_MONITORING_HTTP_ENDPOINT_H_
#define FEDKIT_MONITORING_HTTP_ENDPOINT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct MHD_Daemon;

namespace fedkit::monitoring {

// A header line: name, value (neither may hold CR or LF; the name no ':' or space).
using HttpHeader = std::pair<std::string, std::string>;

// A whole response, as a handler returns it.
struct HttpResponse {
  int status = 200;  // 100..599
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string cache_control = "no-store";  // empty: no Cache-Control header
  std::vector<HttpHeader> headers;         // more, after the endpoint's own (options.headers)
};

struct HttpRoute {
  std::string path;  // exact, starting with '/', e.g. "/metrics"
  // Called once per GET of `path`, on the endpoint's threads. A response with an invalid status or
  // header is answered 500 instead, as is an exception.
  std::function<HttpResponse()> handler;
};

struct HttpEndpointOptions {
  // Names the endpoint in error messages ("dashboard", "metrics").
  std::string name = "http";
  // "HOST:PORT": HOST an IPv4 address (0.0.0.0: every interface) or "localhost" (127.0.0.1), PORT
  // 0..65535 (0: a free port, see HttpEndpoint::port()).
  std::string listen = "127.0.0.1:0";
  // Threads serving connections (1..16); a connection stays with the thread that accepted it.
  int threads = 2;
  int max_connections = 32;  // connections open at once; more are refused at accept (1..1024)
  // A connection with nothing sent or received for this long is closed (whole seconds, >= 1 s).
  absl::Duration idle_timeout = absl::Seconds(10);
  // Added to every response the endpoint makes (routes', 404, 405, 500; not libmicrohttpd's own
  // 431), e.g. a Content-Security-Policy.
  std::vector<HttpHeader> headers;
};

class HttpEndpoint {
 public:
  // Starts serving `routes` on options.listen. INVALID_ARGUMENT for a malformed address (naming
  // it), other options out of range, an invalid header in options.headers, or a route without a
  // handler, not starting with '/' or given twice; UNAVAILABLE naming the address and the system's
  // reason when it cannot be bound (in use, not this machine's, a privileged port), or when
  // libmicrohttpd cannot start.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Create(const HttpEndpointOptions& options,
                                                              std::vector<HttpRoute> routes);

  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;
  // Stops listening and waits for the requests in progress.
  ~HttpEndpoint();

  // The port bound (the one picked when options.listen asked for port 0).
  int port() const { return port_; }
  // The host listened on, as dotted IPv4 ("localhost" as 127.0.0.1).
  const std::string& host() const { return host_; }

 private:
  friend struct HttpRequestHandler;  // libmicrohttpd's callback (http_endpoint.cc)

  HttpEndpoint(std::string host, std::vector<HttpHeader> headers,
               std::map<std::string, std::function<HttpResponse()>, std::less<>> routes);

  // Set by Create before the daemon starts, then constant: read by every serving thread without a
  // lock.
  const std::string host_;
  const std::vector<HttpHeader> headers_;
  const std::map<std::string, std::function<HttpResponse()>, std::less<>> routes_;
  int port_ = 0;
  MHD_Daemon* daemon_ = nullptr;  // owned: MHD_stop_daemon, which also closes its socket
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_HTTP_ENDPOINT_H_
