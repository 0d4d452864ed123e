#include "monitoring/rpc_interceptor.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "fedkit/v1/coordinator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace fedkit::monitoring {
namespace {

using ::testing::HasSubstr;

// Answers GetStatus with a status whose size the test knows, and refuses CheckIn.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::GetStatusResponse* response) override {
    response->set_waiting_for(std::string(1000, 'x'));
    return grpc::Status::OK;
  }
  grpc::Status CheckIn(grpc::ServerContext*, const v1::CheckInRequest*,
                       v1::CheckInResponse*) override {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad id");
  }
};

TEST(RpcMetricsInterceptorTest, CountsEachCoordinatorRpcByMethodAndCodeWithItsBytes) {
  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  FakeCoordinator service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<RpcMetricsInterceptorFactory>(&metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = v1::Coordinator::NewStub(channel);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    v1::GetStatusResponse response;
    ASSERT_TRUE(stub->GetStatus(&context, v1::GetStatusRequest(), &response).ok());
  }
  v1::CheckInRequest check_in;
  check_in.set_client_id("abc");  // 5 bytes serialized
  grpc::ClientContext context;
  v1::CheckInResponse response;
  EXPECT_EQ(stub->CheckIn(&context, check_in, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  server->Shutdown();

  const std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
  EXPECT_THAT(text,
              HasSubstr("fedkit_rpc_duration_seconds_count{code=\"OK\",method=\"GetStatus\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_duration_seconds_count{code=\"INVALID_ARGUMENT\","
                              "method=\"CheckIn\"} 1\n"));
  // Two responses of 1000 bytes of waiting_for plus the field's 3-byte tag and length.
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_sent_bytes_total{method=\"GetStatus\"} 2006\n"));
  EXPECT_THAT(text, HasSubstr("fedkit_rpc_received_bytes_total{method=\"CheckIn\"} " +
                              std::to_string(check_in.ByteSizeLong()) + "\n"));
}

}  // namespace
}  // namespace fedkit::monitoring
