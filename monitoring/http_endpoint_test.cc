// HttpEndpoint over real loopback sockets: routes, the endpoint's own headers, errors (404, 405,
// 431, 500), bad addresses, options and routes, a port in use (and not shared through
// SO_REUSEPORT), port 0, a thread pool, and stopping in the destructor.
#include "monitoring/http_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "monitoring/http_test_client.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;

using Reply = testing::HttpReply;
using testing::RawHttpRequest;

Reply RawRequest(int port, const std::string& request) { return RawHttpRequest(port, request); }
Reply Get(int port, const std::string& path) { return testing::HttpRequest(port, path); }

std::vector<HttpRoute> HelloRoute() {
  return {{.path = "/hello", .handler = [] { return HttpResponse{.body = "hello\n"}; }}};
}

std::unique_ptr<HttpEndpoint> Start(std::vector<HttpRoute> routes,
                                    HttpEndpointOptions options = {}) {
  absl::StatusOr<std::unique_ptr<HttpEndpoint>> endpoint =
      HttpEndpoint::Create(options, std::move(routes));
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return endpoint.ok() ? *std::move(endpoint) : nullptr;
}

TEST(HttpEndpointTest, ServesEachRouteAsItsHandlerAnswersOnAPickedPort) {
  std::atomic<int> calls{0};
  auto endpoint = Start({
      {.path = "/a",
       .handler =
           [&calls] {
             ++calls;
             return HttpResponse{.status = 200,
                                 .content_type = "application/json",
                                 .body = "{\"n\": 1}",
                                 .cache_control = "max-age=5",
                                 .headers = {{"X-Extra", "yes"}}};
           }},
      {.path = "/b",
       .handler = [] { return HttpResponse{.status = 202, .body = "b", .cache_control = ""}; }},
  });
  ASSERT_NE(endpoint, nullptr);
  EXPECT_GT(endpoint->port(), 0);
  EXPECT_EQ(endpoint->host(), "127.0.0.1");
  const Reply a = Get(endpoint->port(), "/a");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "{\"n\": 1}");
  EXPECT_EQ(a.headers.at("content-type"), "application/json");
  EXPECT_EQ(a.headers.at("cache-control"), "max-age=5");
  EXPECT_EQ(a.headers.at("x-extra"), "yes");
  const Reply b = Get(endpoint->port(), "/b");
  EXPECT_EQ(b.status, 202);
  EXPECT_EQ(b.body, "b");
  EXPECT_EQ(b.headers.at("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(b.headers.count("cache-control"), 0u);  // empty: none
  // The query string does not change the route; the handler runs once per request.
  EXPECT_EQ(Get(endpoint->port(), "/a?t=1").status, 200);
  EXPECT_EQ(calls.load(), 2);
}

TEST(HttpEndpointTest, UnknownPathsAre404) {
  auto endpoint = Start(HelloRoute());
  ASSERT_NE(endpoint, nullptr);
  for (const std::string path : {"/", "/hello/", "/hellox", "/hell", "/../hello", "/Hello"}) {
    const Reply reply = Get(endpoint->port(), path);
    EXPECT_EQ(reply.status, 404) << path;
    EXPECT_EQ(reply.body, "not found\n") << path;
  }
  EXPECT_EQ(Get(endpoint->port(), "/hello").status, 200);
}

TEST(HttpEndpointTest, MethodsOtherThanGetAre405WithAllow) {
  std::atomic<int> calls{0};
  auto endpoint = Start({{.path = "/hello", .handler = [&calls] {
                            ++calls;
                            return HttpResponse{.body = "hello\n"};
                          }}});
  ASSERT_NE(endpoint, nullptr);
  for (const std::string method : {"POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}) {
    for (const std::string path : {"/hello", "/other"}) {
      const Reply reply = RawRequest(endpoint->port(), method + " " + path +
                                                           " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                                                           "Content-Length: 2\r\n\r\n{}");
      EXPECT_EQ(reply.status, 405) << method << " " << path;
      if (reply.status == 405) {
        EXPECT_EQ(reply.headers.at("allow"), "GET") << method;
      }
    }
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST(HttpEndpointTest, TheEndpointsHeadersAreOnEveryResponse) {
  auto endpoint = Start(
      {{.path = "/hello", .handler = [] { return HttpResponse{.body = "hello\n"}; }},
       {.path = "/throws", .handler = []() -> HttpResponse { throw std::runtime_error("no"); }}},
      {.headers = {{"Content-Security-Policy", "default-src 'none'"}, {"X-A", "1"}}});
  ASSERT_NE(endpoint, nullptr);
  const std::vector<Reply> replies = {
      Get(endpoint->port(), "/hello"), Get(endpoint->port(), "/nothing"),
      Get(endpoint->port(), "/throws"),
      RawRequest(endpoint->port(), "POST /hello HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")};
  const std::vector<int> statuses = {200, 404, 500, 405};
  for (size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i].status, statuses[i]);
    EXPECT_EQ(replies[i].headers.count("content-security-policy"), 1u) << statuses[i];
    if (replies[i].headers.count("content-security-policy") == 1) {
      EXPECT_EQ(replies[i].headers.at("content-security-policy"), "default-src 'none'");
      EXPECT_EQ(replies[i].headers.at("x-a"), "1");
    }
  }
}

TEST(HttpEndpointTest, AThrowingHandlerOrAnInvalidResponseIs500AndTheServerGoesOn) {
  auto endpoint = Start({
      {.path = "/throws", .handler = []() -> HttpResponse { throw std::runtime_error("no"); }},
      {.path = "/status", .handler = [] { return HttpResponse{.status = 1000}; }},
      {.path = "/header",
       .handler =
           [] {
             return HttpResponse{.headers = {{"X-Split", "a\r\nSet-Cookie: x=1"}}};
           }},
      {.path = "/name",
       .handler =
           [] {
             return HttpResponse{.headers = {{"X: y", "z"}}};
           }},
      {.path = "/type", .handler = [] { return HttpResponse{.content_type = "text/html\n"}; }},
      {.path = "/hello", .handler = [] { return HttpResponse{.body = "hello\n"}; }},
  });
  ASSERT_NE(endpoint, nullptr);
  for (const std::string path : {"/throws", "/status", "/header", "/name", "/type"}) {
    const Reply reply = Get(endpoint->port(), path);
    EXPECT_EQ(reply.status, 500) << path;
    EXPECT_EQ(reply.body, "internal error\n") << path;
    EXPECT_EQ(reply.headers.count("set-cookie"), 0u) << path;
  }
  EXPECT_EQ(Get(endpoint->port(), "/hello").body, "hello\n");
}

TEST(HttpEndpointTest, OversizedRequestIs431WithoutCallingTheHandler) {
  std::atomic<int> calls{0};
  auto endpoint = Start({{.path = "/hello", .handler = [&calls] {
                            ++calls;
                            return HttpResponse{.body = "hello\n"};
                          }}});
  ASSERT_NE(endpoint, nullptr);
  const Reply reply =
      RawRequest(endpoint->port(), "GET /hello HTTP/1.0\r\nX-Padding: " + std::string(20000, 'a') +
                                       "\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(reply.status, 431);
  EXPECT_EQ(calls.load(), 0);
  // The server still answers afterwards.
  EXPECT_EQ(Get(endpoint->port(), "/hello").status, 200);
  EXPECT_EQ(calls.load(), 1);
}

TEST(HttpEndpointTest, BadAddressesAreInvalidArgumentNamingThemAndTheEndpoint) {
  for (const std::string listen :
       {"", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:65536", "127.0.0.1:80x", "127.0.0.1:-1",
        "example.com:80", "[::1]:80", "127.0.0.1:80,0.0.0.0:81", "127.0.0.1:80s", "1.2.3:80",
        "127.0.0.1:123456", "9464", "127.0.0.1:+80", "127.0.0.1: 80"}) {
    auto endpoint = HttpEndpoint::Create({.name = "metrics", .listen = listen}, HelloRoute());
    ASSERT_FALSE(endpoint.ok()) << listen;
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(endpoint.status().message(), HasSubstr("metrics address \"" + listen + "\""))
        << listen;
    EXPECT_THAT(endpoint.status().message(), HasSubstr("HOST:PORT")) << listen;
  }
  // localhost is 127.0.0.1; 0.0.0.0 is every interface, loopback included.
  auto local = HttpEndpoint::Create({.listen = "localhost:0"}, HelloRoute());
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ((*local)->host(), "127.0.0.1");
  EXPECT_EQ(Get((*local)->port(), "/hello").status, 200);
  auto any = HttpEndpoint::Create({.listen = "0.0.0.0:0"}, HelloRoute());
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(Get((*any)->port(), "/hello").status, 200);
}

TEST(HttpEndpointTest, OtherBadOptionsAndRoutesAreInvalidArgument) {
  auto code = [](const HttpEndpointOptions& options, std::vector<HttpRoute> routes) {
    return HttpEndpoint::Create(options, std::move(routes)).status().code();
  };
  EXPECT_EQ(code({.threads = 0}, HelloRoute()), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.threads = 17}, HelloRoute()), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.max_connections = 0}, HelloRoute()), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.max_connections = 1025}, HelloRoute()), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.idle_timeout = absl::Milliseconds(999)}, HelloRoute()),
            absl::StatusCode::kInvalidArgument);
  for (const HttpHeader& header : std::vector<HttpHeader>{
           {"", "x"}, {"X-A:", "x"}, {"X A", "x"}, {"X-A", "x\r\nY: z"}, {"X-A\n", "x"}}) {
    EXPECT_EQ(code({.headers = {header}}, HelloRoute()), absl::StatusCode::kInvalidArgument)
        << header.first;
  }
  auto ok = [] { return HttpResponse(); };
  EXPECT_EQ(code({}, {{.path = "hello", .handler = ok}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({}, {{.path = "", .handler = ok}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({}, {{.path = "/hello", .handler = nullptr}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({}, {{.path = "/hello", .handler = ok}, {.path = "/hello", .handler = ok}}),
            absl::StatusCode::kInvalidArgument);
  // The limits themselves are accepted, and so are no routes at all (everything 404).
  EXPECT_EQ(code({.threads = 16, .max_connections = 1024, .idle_timeout = absl::Seconds(1)},
                 HelloRoute()),
            absl::StatusCode::kOk);
  EXPECT_EQ(code({.threads = 1}, {}), absl::StatusCode::kOk);
}

TEST(HttpEndpointTest, AddressInUseOrNotOursIsUnavailableNamingIt) {
  auto first = Start(HelloRoute());
  ASSERT_NE(first, nullptr);
  const std::string taken = "127.0.0.1:" + std::to_string(first->port());
  auto second = HttpEndpoint::Create({.name = "metrics", .listen = taken}, HelloRoute());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("metrics cannot listen on " + taken));
  // 192.0.2.1 (TEST-NET-1) is no address of this machine.
  auto foreign = HttpEndpoint::Create({.listen = "192.0.2.1:0"}, HelloRoute());
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(foreign.status().message(), HasSubstr("192.0.2.1:0"));
}

TEST(HttpEndpointTest, AnotherSocketCannotShareThePortThroughSoReusePort) {
  // Were the endpoint's socket SO_REUSEPORT, a second socket with SO_REUSEPORT (another process,
  // as the same user) could bind the port too and take part of the requests.
  auto endpoint = Start(HelloRoute());
  ASSERT_NE(endpoint, nullptr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const int on = 1;
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)), 0);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(endpoint->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  const int error = errno;
  close(fd);
  EXPECT_EQ(bound, -1);
  EXPECT_EQ(error, EADDRINUSE);
}

TEST(HttpEndpointTest, ThreadPoolServesASecondRequestWhileTheFirstIsInAHandler) {
  // The first call waits in the handler until a second call has joined it (or a minute passes,
  // which only bounds a broken pool: the assertion is on the peak). A connection stays with the
  // thread that accepted it, so the second request is sent once the first is in the handler: its
  // thread is busy, and another one must accept it.
  absl::Mutex mu;
  int in_handler = 0;
  int peak = 0;
  auto endpoint = Start({{.path = "/slow",
                          .handler =
                              [&] {
                                absl::MutexLock lock(&mu);
                                peak = std::max(peak, ++in_handler);
                                mu.AwaitWithTimeout(absl::Condition(
                                                        +[](int* p) { return *p >= 2; }, &peak),
                                                    absl::Minutes(1));
                                --in_handler;
                                return HttpResponse{.body = "slow\n"};
                              }}},
                        {.threads = 2});
  ASSERT_NE(endpoint, nullptr);
  const int port = endpoint->port();
  int first_status = 0;
  std::thread first([&] { first_status = Get(port, "/slow").status; });
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](int* n) { return *n >= 1; }, &in_handler),
                        absl::Minutes(1));
  }
  const int second_status = Get(port, "/slow").status;
  first.join();
  EXPECT_EQ(first_status, 200);
  EXPECT_EQ(second_status, 200);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(peak, 2);
}

TEST(HttpEndpointTest, StopsListeningWhenDestroyedAndThePortIsFreeAgain) {
  auto endpoint = Start(HelloRoute());
  ASSERT_NE(endpoint, nullptr);
  const int port = endpoint->port();
  ASSERT_EQ(Get(port, "/hello").status, 200);
  endpoint.reset();
  EXPECT_EQ(Get(port, "/hello").status, 0);  // connection refused
  auto again = HttpEndpoint::Create({.listen = "127.0.0.1:" + std::to_string(port)}, HelloRoute());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Get(port, "/hello").status, 200);
}

}  // namespace
}  // namespace fedkit::monitoring
