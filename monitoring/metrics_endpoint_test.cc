#include "monitoring/metrics_endpoint.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "monitoring/http_test_client.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;

using testing::HttpRequest;
using ::testing::StartsWith;

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
  testing::HttpReply response = HttpRequest((*endpoint)->port(), "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.body, HasSubstr("fedkit_test_total 3"));
  EXPECT_THAT(response.headers["content-type"], StartsWith("text/plain; version=0.0.4"));
  EXPECT_EQ(HttpRequest((*endpoint)->port(), "/other").status, 404);
  EXPECT_EQ(HttpRequest((*endpoint)->port(), "/metrics", "POST").status, 405);
  // Scrapes read the registry as it is now.
  prometheus::BuildCounter().Name("fedkit_later_total").Help("test").Register(*registry).Add({});
  EXPECT_THAT(HttpRequest((*endpoint)->port(), "/metrics").body, HasSubstr("fedkit_later_total 0"));
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
