#include "dashboard/dashboard_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "dashboard/embedded_assets.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace fedkit::dashboard {
namespace {

constexpr int kMaxThreads = 16;
constexpr int kMaxConnections = 1024;
// A connection's memory, which its request line and headers must fit in (larger: 431).
constexpr size_t kConnectionMemoryBytes = 8 * 1024;

// The page may load only this server's files (and the empty data: favicon), may not be framed,
// and sends no referrer.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' "
    "data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct ListenAddress {
  std::string host;  // dotted IPv4
  in_addr address;
  int port = 0;
};

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& listen) {
  auto invalid = [&listen](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("dashboard address \"", listen, "\": ", why,
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
absl::StatusOr<std::pair<int, int>> OpenListeningSocket(const ListenAddress& address,
                                                        const std::string& spec) {
  auto failed = [&spec](const char* step) {
    return absl::UnavailableError(
        absl::StrCat("dashboard cannot listen on ", spec, ": ", step, ": ", std::strerror(errno)));
  };
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return failed("socket");
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));  // a restart reuses a TIME_WAIT port
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

// Queues a complete response. `persistent` bodies (the embedded files) are not copied.
MHD_Result Respond(MHD_Connection* connection, unsigned int status, const char* content_type,
                   absl::string_view body, const char* cache_control, bool persistent = false,
                   const char* allow = nullptr) {
  MHD_Response* response =
      MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                      persistent ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  MHD_add_response_header(response, "Content-Type", content_type);
  MHD_add_response_header(response, "Cache-Control", cache_control);
  MHD_add_response_header(response, "Content-Security-Policy", kContentSecurityPolicy);
  MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
  if (allow != nullptr) MHD_add_response_header(response, "Allow", allow);
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result RespondText(MHD_Connection* connection, unsigned int status, absl::string_view text,
                       const char* allow = nullptr) {
  return Respond(connection, status, "text/plain; charset=utf-8", absl::StrCat(text, "\n"),
                 "no-store", false, allow);
}

}  // namespace

// libmicrohttpd's request callback, a friend of DashboardServer.
struct DashboardRequestHandler {
  static MHD_Result Handle(void* self, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* /*upload_data*/,
                           size_t* /*upload_data_size*/, void** /*request_state*/) {
    // libmicrohttpd is C: nothing may unwind through it.
    try {
      return Serve(*static_cast<const DashboardServer*>(self), connection,
                   url != nullptr ? url : "", method != nullptr ? method : "");
    } catch (...) {
      return RespondText(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error");
    }
  }

  // Answers as soon as the headers are in (the first call for a request); a body is never read.
  static MHD_Result Serve(const DashboardServer& server, MHD_Connection* connection,
                          absl::string_view path, absl::string_view method) {
    if (method != MHD_HTTP_METHOD_GET) {
      return RespondText(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is served", "GET");
    }
    if (path == "/api/status") {
      absl::StatusOr<v1::GetStatusResponse> status = server.source_();
      absl::StatusOr<std::string> json =
          status.ok() ? StatusToJson(*status) : absl::StatusOr<std::string>(status.status());
      if (!json.ok()) {
        const nlohmann::json body = {{"error", std::string(json.status().message())}};
        return Respond(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                       body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "no-store");
      }
      return Respond(connection, MHD_HTTP_OK, "application/json", *json, "no-store");
    }
    const Asset* asset = FindAsset(path == "/" ? "/index.html" : path);
    if (asset == nullptr) return RespondText(connection, MHD_HTTP_NOT_FOUND, "not found");
    // The page changes only with the binary: a browser may keep it, but asks again each load.
    return Respond(connection, MHD_HTTP_OK, std::string(asset->content_type).c_str(), asset->bytes,
                   "no-cache", /*persistent=*/true);
  }
};

absl::StatusOr<std::string> StatusToJson(const v1::GetStatusResponse& status) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto printed = google::protobuf::util::MessageToJsonString(status, &json, options);
  if (!printed.ok()) {
    return absl::InternalError(
        absl::StrCat("GetStatusResponse to JSON: ", std::string(printed.message())));
  }
  return json;
}

absl::StatusOr<std::unique_ptr<DashboardServer>> DashboardServer::Create(
    const DashboardOptions& options, StatusSource source) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(options.listen);
  if (!address.ok()) return address.status();
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("dashboard threads ", options.threads, " outside 1..", kMaxThreads));
  }
  if (options.max_connections < 1 || options.max_connections > kMaxConnections) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dashboard max connections ", options.max_connections, " outside 1..", kMaxConnections));
  }
  if (options.idle_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("dashboard idle timeout under 1 s");
  }
  if (!source) return absl::InvalidArgumentError("dashboard: no status source");

  absl::StatusOr<std::pair<int, int>> socket = OpenListeningSocket(*address, options.listen);
  if (!socket.ok()) return socket.status();
  std::unique_ptr<DashboardServer> server(new DashboardServer(address->host, std::move(source)));
  server->port_ = socket->second;

  // One internal polling thread (epoll) serves every connection, or a pool of them. Thread
  // stacks: the system default (see the header on civetweb). No MHD_USE_ERROR_LOG: libmicrohttpd
  // would print to stderr. The daemon takes the socket: it closes it when stopped, and also when
  // it fails to start (libmicrohttpd 0.9.75 does, measured), so it is not closed here.
  const unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
  const unsigned int pool = options.threads > 1 ? static_cast<unsigned int>(options.threads) : 0;
  const unsigned int timeout_seconds =
      static_cast<unsigned int>(absl::ToInt64Seconds(options.idle_timeout));
  server->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &DashboardRequestHandler::Handle, server.get(),
      MHD_OPTION_LISTEN_SOCKET, socket->first, MHD_OPTION_THREAD_POOL_SIZE, pool,
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned int>(options.max_connections),
      MHD_OPTION_CONNECTION_TIMEOUT, timeout_seconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      kConnectionMemoryBytes, MHD_OPTION_THREAD_STACK_SIZE, size_t{0}, MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("dashboard on ", options.listen, ": libmicrohttpd could not start"));
  }
  return server;
}

DashboardServer::DashboardServer(std::string host, StatusSource source)
    : host_(std::move(host)), source_(std::move(source)) {}

DashboardServer::~DashboardServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string DashboardServer::url() const { return absl::StrCat("http://", host_, ":", port_, "/"); }

}  // namespace fedkit::dashboard
