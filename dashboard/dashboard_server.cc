#include "dashboard/dashboard_server.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dashboard/embedded_assets.h"
#include "google/protobuf/util/json_util.h"
#include "monitoring/http_endpoint.h"
#include "nlohmann/json.hpp"

namespace fedkit::dashboard {
namespace {

using monitoring::HttpResponse;

// The page may load only this server's files (and the empty data: favicon), may not be framed,
// and sends no referrer.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' "
    "data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// /api/status: the source's status as JSON, or 503 with {"error": MESSAGE}.
HttpResponse ServeStatus(const StatusSource& source) {
  absl::StatusOr<v1::GetStatusResponse> status = source();
  absl::StatusOr<std::string> json =
      status.ok() ? StatusToJson(*status) : absl::StatusOr<std::string>(status.status());
  if (!json.ok()) {
    const nlohmann::json body = {{"error", std::string(json.status().message())}};
    return HttpResponse{.status = 503,
                        .content_type = "application/json",
                        .body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        .cache_control = "no-store"};
  }
  return HttpResponse{.status = 200,
                      .content_type = "application/json",
                      .body = *std::move(json),
                      .cache_control = "no-store"};
}

// An embedded file. The page changes only with the binary: a browser may keep it, but asks again
// each load.
HttpResponse ServeAsset(const Asset& asset) {
  return HttpResponse{.status = 200,
                      .content_type = std::string(asset.content_type),
                      .body = std::string(asset.bytes),
                      .cache_control = "no-cache"};
}

}  // namespace

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
  if (!source) return absl::InvalidArgumentError("dashboard: no status source");
  // The routes own the source and point at the embedded files (static data).
  std::vector<monitoring::HttpRoute> routes;
  routes.push_back({.path = "/api/status",
                    .handler = [source = std::move(source)] { return ServeStatus(source); }});
  for (const Asset& asset : EmbeddedAssets()) {
    routes.push_back(
        {.path = std::string(asset.path), .handler = [a = &asset] { return ServeAsset(*a); }});
  }
  const Asset* index = FindAsset("/index.html");
  if (index != nullptr) {
    routes.push_back({.path = "/", .handler = [index] { return ServeAsset(*index); }});
  }
  absl::StatusOr<std::unique_ptr<monitoring::HttpEndpoint>> endpoint =
      monitoring::HttpEndpoint::Create(
          {.name = "dashboard",
           .listen = options.listen,
           .threads = options.threads,
           .max_connections = options.max_connections,
           .idle_timeout = options.idle_timeout,
           .headers = {{"Content-Security-Policy", kContentSecurityPolicy},
                       {"X-Content-Type-Options", "nosniff"},
                       {"Referrer-Policy", "no-referrer"}}},
          std::move(routes));
  if (!endpoint.ok()) return endpoint.status();
  return std::unique_ptr<DashboardServer>(new DashboardServer(*std::move(endpoint)));
}

DashboardServer::DashboardServer(std::unique_ptr<monitoring::HttpEndpoint> endpoint)
    : endpoint_(std::move(endpoint)) {}

DashboardServer::~DashboardServer() = default;

int DashboardServer::port() const { return endpoint_->port(); }

std::string DashboardServer::url() const {
  return absl::StrCat("http://", endpoint_->host(), ":", endpoint_->port(), "/");
}

}  // namespace fedkit::dashboard
