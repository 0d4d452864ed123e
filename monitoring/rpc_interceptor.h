// RpcMetricsInterceptorFactory: a gRPC server interceptor that reports every RPC of the
// fedkit.v1.Coordinator service to CoordinatorMetrics::RpcFinished: its handling time (from the
// call's arrival to its status being sent), status code, and serialized message bytes in and out.
// Other services (e.g. grpc.health.v1) are not measured. Install with
// ServerBuilder::experimental().SetInterceptorCreators.
//
// Ownership: `metrics` is not owned and must outlive the server. Thread safety: gRPC creates one
// interceptor per call and runs its hooks on the call's threads; CoordinatorMetrics is
// thread-safe.
#ifndef FEDKIT_MONITORING_RPC_INTERCEPTOR_H_
#define FEDKIT_MONITORING_RPC_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "monitoring/coordinator_metrics.h"

namespace fedkit::monitoring {

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(CoordinatorMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  CoordinatorMetrics* metrics_;
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_RPC_INTERCEPTOR_H_
