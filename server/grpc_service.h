// The gRPC face of the coordinator: a thin adapter from fedkit.v1.Coordinator calls to
// RoundCoordinator events, plus authentication and stream validation.
#ifndef FEDKIT_SERVER_GRPC_SERVICE_H_
#define FEDKIT_SERVER_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "server/artifact_store.h"
#include "server/round_coordinator.h"
#include "server/transfer_limiter.h"

namespace fedkit::server {

// Bearer tokens accepted in "authorization: Bearer <token>" metadata. Empty = no token required.
class TokenAuthenticator {
 public:
  TokenAuthenticator() = default;
  explicit TokenAuthenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  // Reads one token per line; blank lines and lines starting with '#' are skipped. Errors name the
  // file; a file with no tokens is an error (it would silently disable authentication).
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);

  // OK, or UNAUTHENTICATED with a message (never echoing the presented token).
  grpc::Status Check(const grpc::ServerContext& context) const;
  bool enabled() const { return !tokens_.empty(); }

 private:
  std::vector<std::string> tokens_;
};

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  // Floats per model chunk sent to clients (1 MiB of values by default).
  static constexpr int64_t kDefaultChunkFloats = 256 * 1024;
  // Bytes per artifact chunk (1 MiB).
  static constexpr int64_t kArtifactChunkBytes = 1 << 20;
  // Model downloads and update uploads served at once (each holds about a model of buffers), and
  // how long a transfer waits for a slot before RESOURCE_EXHAUSTED (devices retry later).
  static constexpr int64_t kDefaultMaxConcurrentTransfers = 16;
  static constexpr absl::Duration kDefaultTransferWait = absl::Seconds(30);

  // `coordinator` and `artifact` (null: no model file is served; GetArtifact is NOT_FOUND) are
  // not owned and must outlive the service. Every RPC may run on any gRPC thread.
  CoordinatorService(RoundCoordinator* coordinator, TokenAuthenticator auth,
                     std::function<absl::Time()> clock = absl::Now,
                     int64_t chunk_floats = kDefaultChunkFloats,
                     const ModelArtifactStore* artifact = nullptr,
                     int64_t max_concurrent_transfers = kDefaultMaxConcurrentTransfers,
                     absl::Duration transfer_wait = kDefaultTransferWait);

  // Transfers in flight now and at most so far (tests, metrics).
  const TransferLimiter& transfers() const { return transfers_; }

  grpc::Status CheckIn(grpc::ServerContext* context, const v1::CheckInRequest* request,
                       v1::CheckInResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        grpc::ServerWriter<v1::ModelChunk>* writer) override;
  // The served artifact's bytes from request.offset on. NOT_FOUND for any other SHA-256,
  // OUT_OF_RANGE for an offset past the end.
  grpc::Status GetArtifact(grpc::ServerContext* context, const v1::GetArtifactRequest* request,
                           grpc::ServerWriter<v1::ArtifactChunk>* writer) override;
  grpc::Status Decline(grpc::ServerContext* context, const v1::DeclineRequest* request,
                       v1::DeclineResponse* response) override;
  grpc::Status UploadUpdate(grpc::ServerContext* context,
                            grpc::ServerReader<v1::UpdateChunk>* reader,
                            v1::UploadResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override;
  grpc::Status SecureAggregation(grpc::ServerContext* context, const v1::SecAggRequest* request,
                                 v1::SecAggResponse* response) override;

 private:
  // A transfer slot, waiting up to transfer_wait_ (and the call's deadline).
  std::optional<TransferLimiter::Slot> AcquireTransfer(const grpc::ServerContext& context);
  // The rest of an upload whose header announced a masked vector (secure aggregation).
  grpc::Status UploadMasked(grpc::ServerReader<v1::UpdateChunk>& reader,
                            const v1::UpdateHeader& header, v1::UploadResponse* response);

  RoundCoordinator* coordinator_;
  TokenAuthenticator auth_;
  std::function<absl::Time()> clock_;
  int64_t chunk_floats_;
  const ModelArtifactStore* artifact_;
  TransferLimiter transfers_;
  const absl::Duration transfer_wait_;
};

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_GRPC_SERVICE_H_
