// DashboardServer over real loopback sockets: the page, /api/status as JSON, 503, the security
// headers on every response (404 and 405 too), bad options, port 0, and stopping in the destructor.
// What the HTTP server does on its own (bad addresses, a port in use, 405 for every method, 431,
// the thread pool) is tested in monitoring/http_endpoint_test.cc.
#include "dashboard/dashboard_server.h"

#include <atomic>
#include <map>
#include <string>

#include "dashboard/embedded_assets.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "monitoring/http_test_client.h"
#include "nlohmann/json.hpp"

namespace fedkit::dashboard {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using HttpResponse = monitoring::testing::HttpReply;

HttpResponse RawRequest(int port, const std::string& request) {
  return monitoring::testing::RawHttpRequest(port, request);
}
HttpResponse Get(int port, const std::string& path) {
  return monitoring::testing::HttpRequest(port, path);
}

v1::GetStatusResponse SampleStatus() {
  v1::GetStatusResponse s;
  s.set_current_round(3);
  s.set_phase("secagg-share");
  s.set_checked_in(0);  // zero: must still be printed
  s.set_assigned(5);
  s.set_received(0);
  s.set_rounds_total(10);
  s.set_waiting_for("round 3: secure aggregation phase secagg-share");
  for (int r = 1; r <= 2; ++r) {
    v1::RoundSummary* h = s.add_history();
    h->set_round(r);
    h->set_participants(4);
    h->set_assigned(5);
    h->set_accuracy(0.5 + 0.1 * r);
    h->set_loss(1.0 / r);
    h->set_seconds(2.5);
    h->set_examples(4000);
    h->set_train_loss(0.9);
    h->set_epsilon(0.25 * r);
  }
  s.set_rounds_abandoned(1);
  s.set_epsilon(0.5);
  s.set_delta(1e-5);
  v1::SecAggPhaseSummary* p = s.add_secagg_phases();
  p->set_phase("secagg-advertise");
  p->set_seconds(0.75);
  p->set_clients_in(5);
  p->set_clients_out(4);
  (*s.mutable_refusals())["late"] = 2;
  (*s.mutable_declines())["ARTIFACT_UNTRUSTED"] = 1;
  return s;
}

std::unique_ptr<DashboardServer> Start(StatusSource source) {
  absl::StatusOr<std::unique_ptr<DashboardServer>> server =
      DashboardServer::Create({.listen = "127.0.0.1:0"}, std::move(source));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(DashboardServerTest, PortZeroPicksAFreePortAndUrlNamesIt) {
  auto server = Start([] { return v1::GetStatusResponse(); });
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->url(), "http://127.0.0.1:" + std::to_string(server->port()) + "/");
  // localhost is 127.0.0.1.
  auto local =
      DashboardServer::Create({.listen = "localhost:0"}, [] { return v1::GetStatusResponse(); });
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_NE((*local)->port(), server->port());
  EXPECT_THAT((*local)->url(), StartsWith("http://127.0.0.1:"));
}

TEST(DashboardServerTest, ServesStatusAsProtobufJsonWithZerosAndNoCaching) {
  auto server = Start([] { return SampleStatus(); });
  ASSERT_NE(server, nullptr);
  const HttpResponse response = Get(server->port(), "/api/status");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers.at("content-type"), "application/json");
  EXPECT_EQ(response.headers.at("cache-control"), "no-store");
  EXPECT_EQ(response.headers.count("access-control-allow-origin"), 0u);

  const nlohmann::json json = nlohmann::json::parse(response.body);
  EXPECT_EQ(json["current_round"], "3");  // int64: a string in protobuf's JSON mapping
  EXPECT_EQ(json["phase"], "secagg-share");
  EXPECT_EQ(json["checked_in"], "0");  // zeros are printed
  EXPECT_EQ(json["received"], "0");
  EXPECT_EQ(json["rounds_total"], "10");
  EXPECT_EQ(json["rounds_abandoned"], "1");
  EXPECT_DOUBLE_EQ(json["epsilon"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(json["delta"].get<double>(), 1e-5);
  ASSERT_EQ(json["history"].size(), 2u);
  EXPECT_EQ(json["history"][1]["round"], "2");
  EXPECT_EQ(json["history"][1]["assigned"], "5");
  EXPECT_DOUBLE_EQ(json["history"][1]["accuracy"].get<double>(), 0.7);
  EXPECT_DOUBLE_EQ(json["history"][1]["epsilon"].get<double>(), 0.5);
  EXPECT_EQ(json["secagg_phases"][0]["phase"], "secagg-advertise");
  EXPECT_EQ(json["secagg_phases"][0]["clients_out"], "4");
  EXPECT_EQ(json["refusals"]["late"], "2");
  EXPECT_EQ(json["declines"]["ARTIFACT_UNTRUSTED"], "1");

  // The body is StatusToJson's, and protobuf reads it back to the same message.
  EXPECT_EQ(response.body, *StatusToJson(SampleStatus()));
  v1::GetStatusResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(response.body, &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, SampleStatus()));
}

TEST(DashboardServerTest, OptionalFieldsAreLeftOutWhenUnsetAndEveryOtherFieldIsPrinted) {
  v1::GetStatusResponse status;  // all defaults, no DP
  status.add_history()->set_round(1);
  const nlohmann::json json = nlohmann::json::parse(*StatusToJson(status));
  EXPECT_FALSE(json.contains("epsilon"));
  EXPECT_FALSE(json["history"][0].contains("epsilon"));
  for (const char* field :
       {"current_round", "phase", "checked_in", "assigned", "received", "rounds_total", "history",
        "refusals", "declines", "waiting_for", "rounds_abandoned", "delta", "secagg_phases"}) {
    EXPECT_TRUE(json.contains(field)) << field;
  }
  EXPECT_EQ(json["history"][0]["participants"], "0");
}

TEST(DashboardServerTest, CallsTheSourceOnEveryRequest) {
  std::atomic<int> calls{0};
  auto server = Start([&calls] {
    v1::GetStatusResponse s;
    s.set_current_round(++calls);
    return s;
  });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(nlohmann::json::parse(Get(server->port(), "/api/status").body)["current_round"], "1");
  EXPECT_EQ(nlohmann::json::parse(Get(server->port(), "/api/status").body)["current_round"], "2");
  // The query string does not change the route.
  EXPECT_EQ(Get(server->port(), "/api/status?t=1").status, 200);
  EXPECT_EQ(calls.load(), 3);
}

TEST(DashboardServerTest, SourceErrorIs503WithTheMessage) {
  auto server = Start([]() -> absl::StatusOr<v1::GetStatusResponse> {
    return absl::UnavailableError("coordinator \"stopping\"");
  });
  ASSERT_NE(server, nullptr);
  const HttpResponse response = Get(server->port(), "/api/status");
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.headers.at("content-type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(response.body)["error"], "coordinator \"stopping\"");
}

TEST(DashboardServerTest, ServesTheEmbeddedPageAndItsFilesOnly) {
  auto server = Start([] { return v1::GetStatusResponse(); });
  ASSERT_NE(server, nullptr);
  const Asset* index = FindAsset("/index.html");
  ASSERT_NE(index, nullptr);
  for (const std::string path : {"/", "/index.html"}) {
    const HttpResponse page = Get(server->port(), path);
    ASSERT_EQ(page.status, 200) << path;
    EXPECT_EQ(page.headers.at("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(page.body, index->bytes);
    EXPECT_THAT(page.headers.at("content-security-policy"), HasSubstr("default-src 'none'"));
    EXPECT_EQ(page.headers.at("x-content-type-options"), "nosniff");
  }
  // The page names its script and style sheet by relative URLs, and both are served.
  EXPECT_THAT(std::string(index->bytes), HasSubstr("src=\"dashboard.js\""));
  EXPECT_THAT(std::string(index->bytes), HasSubstr("href=\"dashboard.css\""));
  ASSERT_GE(EmbeddedAssets().size(), 3u);
  for (const Asset& asset : EmbeddedAssets()) {
    const HttpResponse response = Get(server->port(), std::string(asset.path));
    EXPECT_EQ(response.status, 200) << asset.path;
    EXPECT_EQ(response.body, asset.bytes) << asset.path;
    EXPECT_EQ(response.headers.at("content-type"), asset.content_type) << asset.path;
  }
  EXPECT_EQ(FindAsset("/dashboard.js")->content_type, "text/javascript; charset=utf-8");
  // Nothing else: no directory listing, no files from disk, no path tricks.
  for (const std::string path :
       {"/favicon.ico", "/api", "/api/status/", "/api/statusx", "/index.htm", "/../etc/passwd",
        "/%2e%2e/etc/passwd", "/static/index.html"}) {
    EXPECT_EQ(Get(server->port(), path).status, 404) << path;
  }
}

TEST(DashboardServerTest, ErrorsCarryTheSecurityHeadersToo) {
  auto server = Start([] { return SampleStatus(); });
  ASSERT_NE(server, nullptr);
  const HttpResponse not_found = Get(server->port(), "/favicon.ico");
  const HttpResponse post =
      RawRequest(server->port(),
                 "POST /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(post.status, 405);
  for (const HttpResponse* response : {&not_found, &post}) {
    ASSERT_EQ(response->headers.count("content-security-policy"), 1u) << response->status;
    EXPECT_THAT(response->headers.at("content-security-policy"), HasSubstr("default-src 'none'"));
    EXPECT_EQ(response->headers.at("x-content-type-options"), "nosniff");
    EXPECT_EQ(response->headers.at("referrer-policy"), "no-referrer");
    EXPECT_EQ(response->headers.count("access-control-allow-origin"), 0u);
  }
  ASSERT_EQ(post.headers.count("allow"), 1u);
  EXPECT_EQ(post.headers.at("allow"), "GET");
}

TEST(DashboardServerTest, OtherBadOptionsAreInvalidArgument) {
  auto source = [] { return v1::GetStatusResponse(); };
  auto code = [](const DashboardOptions& options, StatusSource source) {
    return DashboardServer::Create(options, std::move(source)).status().code();
  };
  EXPECT_EQ(code({}, nullptr), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.threads = 0}, source), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.threads = 17}, source), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.max_connections = 0}, source), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.max_connections = 1025}, source), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.idle_timeout = absl::Milliseconds(999)}, source),
            absl::StatusCode::kInvalidArgument);
  // The address is checked (monitoring/http_endpoint_test.cc has the cases), named as the
  // dashboard's.
  auto bad = DashboardServer::Create({.listen = "[::1]:80"}, source);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("dashboard address \"[::1]:80\""));
  // The limits themselves are accepted.
  EXPECT_EQ(
      code({.threads = 16, .max_connections = 1024, .idle_timeout = absl::Seconds(1)}, source),
      absl::StatusCode::kOk);
}

TEST(DashboardServerTest, StopsListeningWhenDestroyed) {
  auto server = Start([] { return v1::GetStatusResponse(); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  ASSERT_EQ(Get(port, "/api/status").status, 200);
  server.reset();
  EXPECT_EQ(Get(port, "/api/status").status, 0);  // connection refused
  // The port is free again.
  auto again = DashboardServer::Create({.listen = "127.0.0.1:" + std::to_string(port)},
                                       [] { return v1::GetStatusResponse(); });
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace fedkit::dashboard
