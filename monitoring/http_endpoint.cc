#include "monitoring/http_endpoint.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedkit::monitoring {

absl::Status ParseListenAddress(const std::string& listen, std::string* host, int* port) {
  const size_t colon = listen.rfind(':');
  int parsed = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &parsed) || parsed < 0 || parsed > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", listen, "' is not HOST:PORT (e.g. 127.0.0.1:9464)"));
  }
  std::string h = listen.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::move(h);
  *port = parsed;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Create(const std::string& listen,
                                                                   std::vector<HttpRoute> routes,
                                                                   int threads) {
  std::string host;
  int port = 0;
  if (absl::Status parsed = ParseListenAddress(listen, &host, &port); !parsed.ok()) return parsed;
  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint());
  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads > 0 ? threads : 1));
  };
  // cpp-httplib's default also sets SO_REUSEPORT, which would let a second process bind the same
  // port and take half the scrapes: only SO_REUSEADDR (a restart may rebind at once).
  server->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->set_payload_max_length(0);  // GET only: no request body is read
  server->set_read_timeout(5, 0);
  server->set_write_timeout(5, 0);
  server->set_keep_alive_max_count(10);
  for (HttpRoute& route : routes) {
    server->Get(route.path, [handler = std::move(route.handler)](const httplib::Request&,
                                                                 httplib::Response& res) {
      HttpResponse response = handler();
      res.status = response.status;
      res.set_header("Cache-Control", "no-store");
      res.set_content(std::move(response.body), response.content_type.c_str());
    });
  }
  auto not_allowed = [](const httplib::Request&, httplib::Response& res) {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed\n", "text/plain; charset=utf-8");
  };
  server->Post(".*", not_allowed);
  server->Put(".*", not_allowed);
  server->Patch(".*", not_allowed);
  server->Delete(".*", not_allowed);
  server->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      res.set_content(res.status == 404 ? "not found\n" : "error\n", "text/plain; charset=utf-8");
    }
  });
  if (port == 0) {
    port = server->bind_to_any_port(host);
    if (port < 0) port = 0;
  } else if (!server->bind_to_port(host, port)) {
    port = 0;
  }
  if (port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", listen, " (address in use, or not an address of this machine)"));
  }
  endpoint->port_ = port;
  endpoint->server_ = std::move(server);
  httplib::Server* serving = endpoint->server_.get();
  auto stopped = std::make_shared<std::atomic<bool>>(false);
  endpoint->thread_ = std::thread([serving, stopped] {
    serving->listen_after_bind();
    *stopped = true;
  });
  // Until the accept loop runs, Server::stop() would do nothing and the destructor's join would
  // wait forever: return only once it runs (or has already ended).
  while (!serving->is_running() && !stopped->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return endpoint;
}

HttpEndpoint::~HttpEndpoint() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace fedkit::monitoring
