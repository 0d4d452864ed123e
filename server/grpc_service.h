// The gRPC face of the coordinator: a thin adapter from fedkit.v1.Coordinator calls to
// RoundCoordinator events, plus what the open internet needs before a request reaches the round
// engine: authentication and the client-id binding (server/identity.h), per-caller quotas
// (server/caller_quotas.h), global stream and transfer caps, stream deadlines
// (server/stream_watchdog.h), and upload headers checked before any buffer is allocated.
#ifndef FEDKIT_SERVER_GRPC_SERVICE_H_
#define FEDKIT_SERVER_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "server/artifact_store.h"
#include "server/caller_quotas.h"
#include "server/identity.h"
#include "server/round_coordinator.h"
#include "server/stream_watchdog.h"
#include "server/transfer_limiter.h"

namespace fedkit::server {

// How callers prove who they are (server/identity.h).
struct Authentication {
  TokenAuthenticator tokens;         // none: no token required
  bool client_certificates = false;  // mutual TLS: the certificate's identity is the client id
};

// Limits on what callers may hold at once; each refusal is RESOURCE_EXHAUSTED with a retry hint
// and a counted reason (GetStatus' refusals).
struct CoordinatorServiceOptions {
  // Floats per model chunk sent to clients (1 MiB of values by default); an encoded model
  // (CoordinatorOptions::download_encoding) goes in chunks of 4 x chunk_floats bytes.
  int64_t chunk_floats = 256 * 1024;
  // Model downloads and update uploads served at once (each holds about a model of buffers), and
  // how long a transfer waits for a slot (reason "transfers_busy").
  int64_t max_concurrent_transfers = 16;
  absl::Duration transfer_wait = absl::Seconds(30);
  // Upload and download streams open at once, waiting ones included, over all callers: beyond it a
  // new stream is refused at once (reason "streams_busy") instead of holding a server thread.
  int64_t max_streams = 256;
  // A stream with no message in or out for this long, or open for longer than the maximum, is
  // cancelled (reasons "stream_idle", "stream_too long"): a peer cannot hold a thread forever.
  absl::Duration stream_idle_timeout = absl::Seconds(60);
  absl::Duration max_stream_duration = absl::Minutes(15);
  // Per-identity limits: check-in rate, client ids, streams (server/caller_quotas.h).
  CallerQuotaOptions caller;
  // Observes how long the coordinator took to validate and aggregate each complete upload
  // ("plain" or "masked") and whether it was accepted; optional. Runs on the upload's RPC thread
  // with no lock held: it must be thread-safe (e.g. a Prometheus histogram).
  std::function<void(absl::string_view kind, absl::Duration took, bool accepted)> update_processed;
};

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  static constexpr int64_t kArtifactChunkBytes = 1 << 20;  // bytes per artifact chunk

  // `coordinator` and `artifact` (null: no model file is served; GetArtifact is NOT_FOUND) are
  // not owned and must outlive the service. Every RPC may run on any gRPC thread.
  // Every RPC but GetStatus names a client id; the caller must be allowed to claim it
  // (PERMISSION_DENIED, reason "permission_denied", otherwise).
  CoordinatorService(RoundCoordinator* coordinator, Authentication auth,
                     CoordinatorServiceOptions options = {},
                     const ModelArtifactStore* artifact = nullptr,
                     std::function<absl::Time()> clock = absl::Now);

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
  // The authenticated caller; UNAUTHENTICATED (a token missing or unknown) or PERMISSION_DENIED
  // (a client certificate naming no client id), counted, otherwise.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context);
  // The same, also allowed to claim `client_id` (PERMISSION_DENIED, counted, otherwise).
  absl::StatusOr<Caller> Authorize(const grpc::ServerContext& context, absl::string_view client_id);
  // What a stream holds while it runs: a caller's stream slot, a place among max_streams, and its
  // watchdog registration. Released when destroyed.
  class OpenStream;
  absl::StatusOr<std::unique_ptr<OpenStream>> Open(grpc::ServerContext& context,
                                                   const Caller& caller);
  // DEADLINE_EXCEEDED (counted as "stream_idle" / "stream_too long") when the watchdog cancelled
  // `stream`; nullopt otherwise.
  std::optional<grpc::Status> CancelledByWatchdog(OpenStream& stream);
  // A transfer slot, waiting up to transfer_wait (and the call's deadline).
  std::optional<TransferLimiter::Slot> AcquireTransfer(const grpc::ServerContext& context);
  grpc::Status Upload(grpc::ServerContext& context, grpc::ServerReader<v1::UpdateChunk>& reader,
                      const v1::UpdateHeader& header, v1::UploadResponse* response,
                      OpenStream& stream);
  // The rest of an upload stream into `assembler` (server/upload_assembler.h: plain, compressed or
  // masked), then `submit` of what it assembled, timed for options_.update_processed under `kind`.
  template <typename Assembler, typename Submit>
  grpc::Status ReceiveUpload(grpc::ServerReader<v1::UpdateChunk>& reader, OpenStream& stream,
                             Assembler& assembler, absl::string_view kind, Submit submit,
                             v1::UploadResponse* response);
  // A refusal counted under `reason`, as a gRPC status (with its retry hint, if any).
  grpc::Status Refuse(grpc::ServerContext& context, const absl::Status& status,
                      absl::string_view reason);

  RoundCoordinator* coordinator_;
  const Authentication auth_;
  const CoordinatorServiceOptions options_;
  const ModelArtifactStore* artifact_;
  std::function<absl::Time()> clock_;
  TransferLimiter transfers_;
  CallerQuotas quotas_;
  StreamWatchdog watchdog_;
  std::atomic<int64_t> streams_{0};
  absl::Mutex uploads_mu_;
  // Assignments with an upload stream in progress: one at a time per assignment.
  absl::flat_hash_set<std::string> uploads_in_flight_ ABSL_GUARDED_BY(uploads_mu_);
};

// absl::Status -> grpc::Status with the same code and message. With a context, a retry hint
// (core/retry_after.h) is also sent as the "fedkit-retry-after-ms" trailing metadata.
grpc::Status ToGrpcStatus(const absl::Status& status);
grpc::Status ToGrpcStatus(grpc::ServerContext& context, const absl::Status& status);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_GRPC_SERVICE_H_
