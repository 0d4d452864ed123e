#include "monitoring/metrics_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;

// The whole HTTP/1.0 response to GET `path` on 127.0.0.1:`port` ("" when it cannot connect).
std::string HttpRequest(int port, const std::string& method, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
  close(fd);
  return response;
}

std::string HttpGet(int port, const std::string& path) { return HttpRequest(port, "GET", path); }

TEST(MetricsEndpointTest, ServesTheRegisteredCollectablesOnAPickedPort) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("fedkit_test_total")
      .Help("test")
      .Register(*registry)
      .Add({})
      .Increment(3);
  auto endpoint = MetricsEndpoint::Create("127.0.0.1:0", {registry});
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_GT((*endpoint)->port(), 0);
  const std::string response = HttpGet((*endpoint)->port(), "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("fedkit_test_total 3"));
  EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(HttpGet((*endpoint)->port(), "/other"), HasSubstr("404"));
  EXPECT_THAT(HttpRequest((*endpoint)->port(), "POST", "/metrics"), HasSubstr("405"));
  // Scrapes read the registry as it is now.
  prometheus::BuildCounter().Name("fedkit_later_total").Help("test").Register(*registry).Add({});
  EXPECT_THAT(HttpGet((*endpoint)->port(), "/metrics"), HasSubstr("fedkit_later_total 0"));
}

TEST(MetricsEndpointTest, ABadOrTakenAddressIsAClearError) {
  auto bad = MetricsEndpoint::Create("9464", {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("HOST:PORT"));
  EXPECT_EQ(MetricsEndpoint::Create("127.0.0.1:70000", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto first = MetricsEndpoint::Create("127.0.0.1:0", {});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = MetricsEndpoint::Create(taken, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(taken));
}

}  // namespace
}  // namespace fedkit::monitoring
