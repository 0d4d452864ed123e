#include "monitoring/http_endpoint.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace fedkit::monitoring {
namespace {

constexpr int kMaxThreads = 16;
constexpr int kMaxConnections = 1024;
// A connection's memory, which its request line and headers must fit in (larger: 431).
constexpr size_t kConnectionMemoryBytes = 8 * 1024;

struct ListenAddress {
  std::string host;  // dotted IPv4
  in_addr address;
  int port = 0;
};

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& name,
                                                 const std::string& listen) {
  auto invalid = [&name, &listen](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " address \"", listen, "\": ", why,
                     " (expected HOST:PORT, HOST an IPv4 address or localhost, PORT 0..65535)"));
  };
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return invalid("no port");
  ListenAddress parsed;
  parsed.host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (parsed.host.empty()) return invalid("no host");
  if (parsed.host == "localhost") parsed.host = "127.0.0.1";
  if (inet_pton(AF_INET, parsed.host.c_str(), &parsed.address) != 1) {
    return invalid(absl::StrCat("host \"", parsed.host, "\" is not an IPv4 address"));
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(port, &parsed.port) || parsed.port > 65535) {
    return invalid(absl::StrCat("port \"", port, "\" is not a number in 0..65535"));
  }
  return parsed;
}

// A bound, listening, non-blocking TCP socket, and the port it got; UNAVAILABLE with the system's
// reason naming `spec` (the address as given) otherwise.
absl::StatusOr<std::pair<int, int>> OpenListeningSocket(const std::string& name,
                                                        const ListenAddress& address,
                                                        const std::string& spec) {
  auto failed = [&name, &spec](const char* step) {
    return absl::UnavailableError(
        absl::StrCat(name, " cannot listen on ", spec, ": ", step, ": ", std::strerror(errno)));
  };
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return failed("socket");
  // A restart reuses a port in TIME_WAIT. Not SO_REUSEPORT: a second process must not share it.
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in bind_to{};
  bind_to.sin_family = AF_INET;
  bind_to.sin_addr = address.address;
  bind_to.sin_port = htons(static_cast<uint16_t>(address.port));
  sockaddr_in bound{};
  socklen_t bound_size = sizeof(bound);
  absl::Status status;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&bind_to), sizeof(bind_to)) != 0) {
    status = failed("bind");
  } else if (::listen(fd, 64) != 0) {
    status = failed("listen");
  } else if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_size) != 0) {
    status = failed("getsockname");
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return std::make_pair(fd, static_cast<int>(ntohs(bound.sin_port)));
}

bool ValidHeaderValue(absl::string_view value) {
  return value.find_first_of("\r\n") == absl::string_view::npos;
}

bool ValidHeader(const HttpHeader& header) {
  return !header.first.empty() && header.first.find_first_of(":\r\n\t ") == std::string::npos &&
         ValidHeaderValue(header.second);
}

HttpResponse TextResponse(int status, absl::string_view text) {
  return HttpResponse{.status = status,
                      .content_type = "text/plain; charset=utf-8",
                      .body = absl::StrCat(text, "\n"),
                      .cache_control = "no-store"};
}

// `response` as libmicrohttpd's, with `common` headers first; nullptr when libmicrohttpd refuses
// it (out of memory, or a header it does not accept).
MHD_Response* Build(const HttpResponse& response, const std::vector<HttpHeader>& common) {
  MHD_Response* built = MHD_create_response_from_buffer(
      response.body.size(), const_cast<char*>(response.body.data()), MHD_RESPMEM_MUST_COPY);
  if (built == nullptr) return nullptr;
  bool ok =
      ValidHeaderValue(response.content_type) &&
      MHD_add_response_header(built, "Content-Type", response.content_type.c_str()) == MHD_YES;
  if (ok && !response.cache_control.empty()) {
    ok = ValidHeaderValue(response.cache_control) &&
         MHD_add_response_header(built, "Cache-Control", response.cache_control.c_str()) == MHD_YES;
  }
  for (const std::vector<HttpHeader>* headers : {&common, &response.headers}) {
    for (const HttpHeader& header : *headers) {
      if (!ok) break;
      ok = ValidHeader(header) &&
           MHD_add_response_header(built, header.first.c_str(), header.second.c_str()) == MHD_YES;
    }
  }
  if (!ok) {
    MHD_destroy_response(built);
    return nullptr;
  }
  return built;
}

// Queues `response`, or a 500 when it cannot be built. MHD_NO (libmicrohttpd then closes the
// connection) only when not even the 500 can be.
MHD_Result Queue(MHD_Connection* connection, const HttpResponse& response,
                 const std::vector<HttpHeader>& common, const char* allow = nullptr) {
  MHD_Response* built = nullptr;
  unsigned int status = MHD_HTTP_INTERNAL_SERVER_ERROR;
  if (response.status >= 100 && response.status <= 599) {
    built = Build(response, common);
    status = static_cast<unsigned int>(response.status);
  }
  if (built != nullptr && allow != nullptr &&
      MHD_add_response_header(built, "Allow", allow) != MHD_YES) {
    MHD_destroy_response(built);
    built = nullptr;
  }
  if (built == nullptr) {
    built = Build(TextResponse(MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error"), common);
    status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    if (built == nullptr) return MHD_NO;
  }
  const MHD_Result queued = MHD_queue_response(connection, status, built);
  MHD_destroy_response(built);
  return queued;
}

}  // namespace

// libmicrohttpd's request callback, a friend of HttpEndpoint.
struct HttpRequestHandler {
  static MHD_Result Handle(void* self, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* /*upload_data*/,
                           size_t* /*upload_data_size*/, void** /*request_state*/) {
    const HttpEndpoint& endpoint = *static_cast<const HttpEndpoint*>(self);
    // libmicrohttpd is C: nothing may unwind through it.
    try {
      return Serve(endpoint, connection, url != nullptr ? url : "",
                   method != nullptr ? method : "");
    } catch (...) {
      try {
        return Queue(connection, TextResponse(MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error"),
                     endpoint.headers_);
      } catch (...) {
        return MHD_NO;  // out of memory: libmicrohttpd closes the connection
      }
    }
  }

  // Answers as soon as the headers are in (the first call for a request); a body is never read.
  static MHD_Result Serve(const HttpEndpoint& endpoint, MHD_Connection* connection,
                          absl::string_view path, absl::string_view method) {
    if (method != MHD_HTTP_METHOD_GET) {
      return Queue(connection, TextResponse(MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is served"),
                   endpoint.headers_, "GET");
    }
    const auto route = endpoint.routes_.find(path);
    if (route == endpoint.routes_.end()) {
      return Queue(connection, TextResponse(MHD_HTTP_NOT_FOUND, "not found"), endpoint.headers_);
    }
    return Queue(connection, route->second(), endpoint.headers_);
  }
};

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Create(
    const HttpEndpointOptions& options, std::vector<HttpRoute> routes) {
  const std::string& name = options.name;
  absl::StatusOr<ListenAddress> address = ParseListenAddress(name, options.listen);
  if (!address.ok()) return address.status();
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " threads ", options.threads, " outside 1..", kMaxThreads));
  }
  if (options.max_connections < 1 || options.max_connections > kMaxConnections) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " max connections ", options.max_connections, " outside 1..", kMaxConnections));
  }
  if (options.idle_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " idle timeout under 1 s"));
  }
  for (const HttpHeader& header : options.headers) {
    if (!ValidHeader(header)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": header \"", header.first, "\" is not a valid header line"));
    }
  }
  std::map<std::string, std::function<HttpResponse()>, std::less<>> by_path;
  for (HttpRoute& route : routes) {
    if (route.path.empty() || route.path.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": route \"", route.path, "\" does not start with '/'"));
    }
    if (!route.handler) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": route \"", route.path, "\" has no handler"));
    }
    if (!by_path.emplace(route.path, std::move(route.handler)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": route \"", route.path, "\" given twice"));
    }
  }

  absl::StatusOr<std::pair<int, int>> socket = OpenListeningSocket(name, *address, options.listen);
  if (!socket.ok()) return socket.status();
  std::unique_ptr<HttpEndpoint> endpoint(
      new HttpEndpoint(address->host, options.headers, std::move(by_path)));
  endpoint->port_ = socket->second;

  // One internal polling thread (epoll) serves every connection, or a pool of them. Thread
  // stacks: the system default (see the header on civetweb). No MHD_USE_ERROR_LOG: libmicrohttpd
  // would print to stderr. The daemon takes the socket: it closes it when stopped, and also when
  // it fails to start (libmicrohttpd 0.9.75 does, measured), so it is not closed here.
  const unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
  const unsigned int pool = options.threads > 1 ? static_cast<unsigned int>(options.threads) : 0;
  const unsigned int timeout_seconds =
      static_cast<unsigned int>(absl::ToInt64Seconds(options.idle_timeout));
  endpoint->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &HttpRequestHandler::Handle, endpoint.get(),
      MHD_OPTION_LISTEN_SOCKET, socket->first, MHD_OPTION_THREAD_POOL_SIZE, pool,
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned int>(options.max_connections),
      MHD_OPTION_CONNECTION_TIMEOUT, timeout_seconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      kConnectionMemoryBytes, MHD_OPTION_THREAD_STACK_SIZE, size_t{0}, MHD_OPTION_END);
  if (endpoint->daemon_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(name, " on ", options.listen, ": libmicrohttpd could not start"));
  }
  return endpoint;
}

HttpEndpoint::HttpEndpoint(std::string host, std::vector<HttpHeader> headers,
                           std::map<std::string, std::function<HttpResponse()>, std::less<>> routes)
    : host_(std::move(host)), headers_(std::move(headers)), routes_(std::move(routes)) {}

HttpEndpoint::~HttpEndpoint() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace fedkit::monitoring
