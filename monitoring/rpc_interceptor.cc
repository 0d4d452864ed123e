#include "monitoring/rpc_interceptor.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::monitoring {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;

constexpr absl::string_view kServicePrefix = "/fedkit.v1.Coordinator/";

// The serialized size of a received request. gRPC hands the interceptor the deserialized message
// as void*: it is cast back to the method's own request type, never to a base class it was not
// made from.
using RequestSize = int64_t (*)(const void*);
template <typename Request>
int64_t SizeOf(const void* message) {
  return static_cast<int64_t>(static_cast<const Request*>(message)->ByteSizeLong());
}
RequestSize RequestSizeFor(absl::string_view method) {
  if (method == "CheckIn") return &SizeOf<v1::CheckInRequest>;
  if (method == "GetModel") return &SizeOf<v1::GetModelRequest>;
  if (method == "GetArtifact") return &SizeOf<v1::GetArtifactRequest>;
  if (method == "Decline") return &SizeOf<v1::DeclineRequest>;
  if (method == "UploadUpdate") return &SizeOf<v1::UpdateChunk>;
  if (method == "SecureAggregation") return &SizeOf<v1::SecAggRequest>;
  if (method == "GetStatus") return &SizeOf<v1::GetStatusRequest>;
  return nullptr;
}

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(CoordinatorMetrics* metrics, std::string method, RequestSize request_size)
      : metrics_(metrics),
        method_(std::move(method)),
        request_size_(request_size),
        started_(absl::Now()) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      if (const void* message = methods->GetRecvMessage(); message != nullptr) {
        bytes_in_ += request_size_(message);
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (const grpc::ByteBuffer* sent = methods->GetSerializedSendMessage(); sent != nullptr) {
        bytes_out_ += static_cast<int64_t>(sent->Length());
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      code_ = methods->GetSendStatus().error_code();
    }
    // The call is over: report it once.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        !reported_) {
      reported_ = true;
      // gRPC and absl status codes share their numbers and names ("" for a number outside them).
      std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(code_));
      if (code.empty()) code = "UNKNOWN";
      metrics_->RpcFinished(method_, code, absl::Now() - started_, bytes_in_, bytes_out_);
    }
    methods->Proceed();
  }

 private:
  CoordinatorMetrics* const metrics_;
  const std::string method_;
  const RequestSize request_size_;
  const absl::Time started_;
  int64_t bytes_in_ = 0;
  int64_t bytes_out_ = 0;
  grpc::StatusCode code_ = grpc::OK;
  bool reported_ = false;
};

}  // namespace

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  absl::string_view method = info->method();
  if (!absl::ConsumePrefix(&method, kServicePrefix)) return nullptr;
  RequestSize size = RequestSizeFor(method);
  if (size == nullptr) return nullptr;
  return new RpcMetricsInterceptor(metrics_, std::string(method), size);
}

}  // namespace fedkit::monitoring
