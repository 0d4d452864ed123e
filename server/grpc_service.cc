#include "server/grpc_service.h"

#include <openssl/crypto.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/retry_after.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "server/upload_assembler.h"

namespace fedkit::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status ToGrpcStatus(grpc::ServerContext& context, const absl::Status& status) {
  if (std::optional<absl::Duration> after = RetryAfterOf(status); after.has_value()) {
    context.AddTrailingMetadata(kRetryAfterMetadata,
                                absl::StrCat(absl::ToInt64Milliseconds(*after)));
  }
  return ToGrpcStatus(status);
}

namespace {

// Reads the rest of an upload stream into `assembler` (server/upload_assembler.h), touching `watch`
// at every chunk: nullopt once the stream has ended, or the refusal of the first chunk the
// assembler refused, counted under its name.
template <typename Assembler>
std::optional<grpc::Status> ReadChunks(grpc::ServerReader<v1::UpdateChunk>& reader,
                                       StreamWatchdog::Watch& watch, RoundCoordinator& coordinator,
                                       Assembler& assembler) {
  v1::UpdateChunk chunk;
  while (reader.Read(&chunk)) {
    watch.Touch();
    if (absl::Status added = assembler.Add(chunk); !added.ok()) {
      coordinator.CountRefusal(assembler.refusal());
      return ToGrpcStatus(added);
    }
  }
  return std::nullopt;
}

}  // namespace

class CoordinatorService::OpenStream {
 public:
  OpenStream(CoordinatorService* service, CallerQuotas::StreamSlot slot,
             StreamWatchdog::Watch watch)
      : service_(service), slot_(std::move(slot)), watch_(std::move(watch)) {}
  ~OpenStream() { service_->streams_.fetch_sub(1); }
  StreamWatchdog::Watch& watch() { return watch_; }

 private:
  CoordinatorService* service_;
  CallerQuotas::StreamSlot slot_;
  StreamWatchdog::Watch watch_;
};

CoordinatorService::CoordinatorService(RoundCoordinator* coordinator, Authentication auth,
                                       CoordinatorServiceOptions options,
                                       const ModelArtifactStore* artifact,
                                       std::function<absl::Time()> clock)
    : coordinator_(coordinator),
      auth_(std::move(auth)),
      options_(options),
      artifact_(artifact),
      clock_(std::move(clock)),
      transfers_(std::max<int64_t>(1, options.max_concurrent_transfers)),
      quotas_(options.caller),
      watchdog_(options.stream_idle_timeout, options.max_stream_duration) {}

grpc::Status CoordinatorService::Refuse(grpc::ServerContext& context, const absl::Status& status,
                                        absl::string_view reason) {
  coordinator_->CountRefusal(reason);
  return ToGrpcStatus(context, status);
}

absl::StatusOr<Caller> CoordinatorService::Authenticate(const grpc::ServerContext& context) {
  std::optional<absl::string_view> authorization;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<const TokenAuthenticator::Token*> token = auth_.tokens.Authenticate(authorization);
  if (!token.ok()) {
    coordinator_->CountRefusal("unauthenticated");
    return token.status();
  }
  std::optional<std::string> certificate_id;
  if (auth_.client_certificates) {
    std::vector<std::string> uris, common_names;
    if (std::shared_ptr<const grpc::AuthContext> peer = context.auth_context(); peer != nullptr) {
      for (const grpc::string_ref& v : peer->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME))
        uris.emplace_back(v.data(), v.size());
      for (const grpc::string_ref& v : peer->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME))
        common_names.emplace_back(v.data(), v.size());
    }
    certificate_id = CertificateClientId(uris, common_names);
    if (!certificate_id.has_value()) {
      coordinator_->CountRefusal("permission_denied");
      return absl::PermissionDeniedError(
          absl::StrCat("the client certificate names no client id (a URI subjectAltName ",
                       kClientIdUriPrefix, "<id>, or a common name that is a valid client id)"));
    }
  }
  return Caller(std::move(certificate_id), *token);
}

absl::StatusOr<Caller> CoordinatorService::Authorize(const grpc::ServerContext& context,
                                                     absl::string_view client_id) {
  absl::StatusOr<Caller> caller = Authenticate(context);
  if (!caller.ok()) return caller.status();
  if (absl::Status allowed = caller->MayClaim(client_id); !allowed.ok()) {
    coordinator_->CountRefusal("permission_denied");
    return allowed;
  }
  return caller;
}

absl::StatusOr<std::unique_ptr<CoordinatorService::OpenStream>> CoordinatorService::Open(
    grpc::ServerContext& context, const Caller& caller) {
  absl::StatusOr<CallerQuotas::StreamSlot> slot = quotas_.OpenStream(caller);
  if (!slot.ok()) {
    coordinator_->CountRefusal("streams_per_identity");
    return slot.status();
  }
  if (streams_.fetch_add(1) >= options_.max_streams) {
    streams_.fetch_sub(1);
    coordinator_->CountRefusal("streams_busy");
    return ResourceExhaustedRetryAfter(
        absl::StrCat("the coordinator has ", options_.max_streams, " transfers open"),
        absl::Seconds(5));
  }
  StreamWatchdog::Watch watch = watchdog_.Start([&context] { context.TryCancel(); });
  return std::make_unique<OpenStream>(this, *std::move(slot), std::move(watch));
}

std::optional<grpc::Status> CoordinatorService::CancelledByWatchdog(OpenStream& stream) {
  const char* expired = stream.watch().expired();
  if (*expired == '\0') return std::nullopt;
  coordinator_->CountRefusal(absl::StrCat("stream_", expired));
  return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                      absl::StrCat("upload stream cancelled: ", expired));
}

std::optional<TransferLimiter::Slot> CoordinatorService::AcquireTransfer(
    const grpc::ServerContext& context) {
  const absl::Time deadline =
      std::min(absl::Now() + options_.transfer_wait, absl::FromChrono(context.deadline()));
  return transfers_.Acquire(deadline);
}

grpc::Status CoordinatorService::CheckIn(grpc::ServerContext* context,
                                         const v1::CheckInRequest* request,
                                         v1::CheckInResponse* response) {
  absl::StatusOr<Caller> caller = Authorize(*context, request->client_id());
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const absl::Time now = clock_();
  std::string reason;
  if (absl::Status admitted = quotas_.AdmitCheckIn(*caller, request->client_id(), now, &reason);
      !admitted.ok()) {
    return Refuse(*context, admitted, reason);
  }
  const std::string identity = caller->identity();
  absl::StatusOr<v1::CheckInResponse> result =
      coordinator_->CheckIn(*request, now, identity == "anonymous" ? "" : identity);
  if (!result.ok()) return ToGrpcStatus(*context, result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetModel(grpc::ServerContext* context,
                                          const v1::GetModelRequest* request,
                                          grpc::ServerWriter<v1::ModelChunk>* writer) {
  absl::StatusOr<Caller> caller = Authorize(*context, request->client_id());
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<RoundCoordinator::ModelSnapshot> snapshot =
      coordinator_->GetModel(*request, clock_());
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
  absl::StatusOr<std::unique_ptr<OpenStream>> stream = Open(*context, *caller);
  if (!stream.ok()) return ToGrpcStatus(*context, stream.status());
  // Checked first (cheap), then a slot: at most max_concurrent_transfers model copies in flight.
  std::optional<TransferLimiter::Slot> slot = AcquireTransfer(*context);
  if (!slot.has_value()) {
    return Refuse(
        *context,
        ResourceExhaustedRetryAfter("too many model transfers in flight", absl::Seconds(5)),
        "transfers_busy");
  }
  const std::vector<float>& params = *snapshot->parameters;
  const int64_t total = static_cast<int64_t>(params.size());
  const int64_t chunk_floats = std::max<int64_t>(1, options_.chunk_floats);
  // An encoded model travels as bytes, in chunks of as many bytes as a float chunk has.
  const std::string* encoded = snapshot->encoded.get();
  const int64_t size = encoded != nullptr ? static_cast<int64_t>(encoded->size()) : total;
  const int64_t step = encoded != nullptr ? 4 * chunk_floats : chunk_floats;
  for (int64_t offset = 0; offset < size; offset += step) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    (*stream)->watch().Touch();
    v1::ModelChunk chunk;
    chunk.set_round(snapshot->round);
    chunk.set_total_size(total);
    chunk.set_offset(offset);
    const int64_t end = std::min(size, offset + step);
    if (encoded != nullptr) {
      chunk.set_encoding(proto::DownloadEncodingToProto(snapshot->encoding));
      chunk.set_encoded_size(size);
      chunk.set_encoded(encoded->data() + offset, static_cast<size_t>(end - offset));
    } else {
      chunk.mutable_values()->Add(params.begin() + offset, params.begin() + end);
    }
    if (offset == 0) *chunk.mutable_layout() = LayoutToProto(coordinator_->layout());
    if (!writer->Write(chunk)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "client went away during download");
    }
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetArtifact(grpc::ServerContext* context,
                                             const v1::GetArtifactRequest* request,
                                             grpc::ServerWriter<v1::ArtifactChunk>* writer) {
  absl::StatusOr<Caller> caller = Authorize(*context, request->client_id());
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (artifact_ == nullptr || request->sha256() != artifact_->artifact().sha256()) {
    // The requested name is not echoed: it is whatever the caller sent.
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "this coordinator serves no artifact with that SHA-256");
  }
  const absl::string_view bytes = artifact_->bytes();
  const int64_t total = static_cast<int64_t>(bytes.size());
  if (request->offset() < 0 || request->offset() > total) {
    return grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        absl::StrCat("offset ", request->offset(), " is outside the artifact's ", total, " bytes"));
  }
  absl::StatusOr<std::unique_ptr<OpenStream>> stream = Open(*context, *caller);
  if (!stream.ok()) return ToGrpcStatus(*context, stream.status());
  for (int64_t offset = request->offset(); offset < total; offset += kArtifactChunkBytes) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    (*stream)->watch().Touch();
    v1::ArtifactChunk chunk;
    chunk.set_total_size(total);
    chunk.set_offset(offset);
    chunk.set_data(std::string(bytes.substr(offset, kArtifactChunkBytes)));
    if (!writer->Write(chunk)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "client went away during download");
    }
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Decline(grpc::ServerContext* context,
                                         const v1::DeclineRequest* request,
                                         v1::DeclineResponse* response) {
  absl::StatusOr<Caller> caller = Authorize(*context, request->client_id());
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<v1::DeclineResponse> result = coordinator_->Decline(*request, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *result;
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::UploadUpdate(grpc::ServerContext* context,
                                              grpc::ServerReader<v1::UpdateChunk>* reader,
                                              v1::UploadResponse* response) {
  // Nothing is read before the caller is authenticated, and nothing is allocated before the
  // header names the caller's current assignment. The stream is counted (and watched) from the
  // start: a peer that never sends its header is timed out.
  absl::StatusOr<Caller> caller = Authenticate(*context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<std::unique_ptr<OpenStream>> opened = Open(*context, *caller);
  if (!opened.ok()) return ToGrpcStatus(*context, opened.status());
  std::unique_ptr<OpenStream> stream = *std::move(opened);
  v1::UpdateChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    if (std::optional<grpc::Status> cancelled = CancelledByWatchdog(*stream); cancelled) {
      return *cancelled;
    }
    coordinator_->CountRefusal("malformed_stream");
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "an upload must start with an UpdateHeader chunk");
  }
  stream->watch().Touch();
  const v1::UpdateHeader header = chunk.header();
  if (absl::Status allowed = caller->MayClaim(header.client_id()); !allowed.ok()) {
    return Refuse(*context, allowed, "permission_denied");
  }
  if (absl::Status current = coordinator_->CheckUploadHeader(header); !current.ok()) {
    return ToGrpcStatus(*context, current);  // counted by the coordinator
  }
  // One upload in flight per assignment.
  {
    absl::MutexLock lock(&uploads_mu_);
    if (!uploads_in_flight_.insert(header.assignment_id()).second) {
      return Refuse(*context,
                    ResourceExhaustedRetryAfter(
                        "an upload for this assignment is already in progress", absl::Seconds(5)),
                    "upload_in_flight");
    }
  }
  grpc::Status status = Upload(*context, *reader, header, response, *stream);
  absl::MutexLock lock(&uploads_mu_);
  uploads_in_flight_.erase(header.assignment_id());
  return status;
}

grpc::Status CoordinatorService::Upload(grpc::ServerContext& context,
                                        grpc::ServerReader<v1::UpdateChunk>& reader,
                                        const v1::UpdateHeader& header,
                                        v1::UploadResponse* response, OpenStream& stream) {
  const int64_t model_size = coordinator_->model_size();
  // With secure aggregation every upload is a masked vector of masked_input_length() values.
  if (coordinator_->uses_secure_aggregation()) {
    const int64_t length = coordinator_->masked_input_length();
    if (header.total_size() != length) {
      coordinator_->CountRefusal(header.total_size() > length ? "oversized" : "wrong_shape");
      return grpc::Status(header.total_size() > length ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                                       : grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("masked upload declares ", header.total_size(),
                                       " values; expected ", length));
    }
    std::optional<TransferLimiter::Slot> slot = AcquireTransfer(context);
    if (!slot.has_value()) {
      return Refuse(context,
                    ResourceExhaustedRetryAfter("too many uploads in flight", absl::Seconds(5)),
                    "transfers_busy");
    }
    // At most 8 bytes per value whatever the modulus; the coordinator checks the exact length.
    MaskedUploadAssembler assembler(header.total_size());
    return ReceiveUpload(
        reader, stream, assembler, "masked",
        [&] { return coordinator_->SubmitMaskedUpdate(header, assembler.packed(), clock_()); },
        response);
  }
  if (header.compressed_size() != 0) {
    // Checked against the plan's largest encoding before anything is buffered.
    if (absl::Status checked = coordinator_->CheckCompressedUploadHeader(header); !checked.ok()) {
      return ToGrpcStatus(checked);  // counted by the coordinator
    }
    std::optional<TransferLimiter::Slot> slot = AcquireTransfer(context);
    if (!slot.has_value()) {
      return Refuse(context,
                    ResourceExhaustedRetryAfter("too many uploads in flight", absl::Seconds(5)),
                    "transfers_busy");
    }
    CompressedUploadAssembler assembler(header.compressed_size());
    return ReceiveUpload(
        reader, stream, assembler, "compressed",
        [&] { return coordinator_->SubmitCompressedUpdate(header, assembler.bytes(), clock_()); },
        response);
  }
  if (header.total_size() != model_size) {
    // Refused before allocating anything sized by the client.
    coordinator_->CountRefusal(header.total_size() > model_size ? "oversized" : "wrong_shape");
    return grpc::Status(header.total_size() > model_size ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                                         : grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("update declares ", header.total_size(),
                                     " values; the model has ", model_size));
  }
  // A slot before the model-sized buffer.
  std::optional<TransferLimiter::Slot> slot = AcquireTransfer(context);
  if (!slot.has_value()) {
    return Refuse(context,
                  ResourceExhaustedRetryAfter("too many uploads in flight", absl::Seconds(5)),
                  "transfers_busy");
  }
  PlainUploadAssembler assembler(model_size);
  return ReceiveUpload(
      reader, stream, assembler, "plain",
      [&] { return coordinator_->SubmitUpdate(header, assembler.values(), clock_()); }, response);
}

template <typename Assembler, typename Submit>
grpc::Status CoordinatorService::ReceiveUpload(grpc::ServerReader<v1::UpdateChunk>& reader,
                                               OpenStream& stream, Assembler& assembler,
                                               absl::string_view kind, Submit submit,
                                               v1::UploadResponse* response) {
  if (std::optional<grpc::Status> refused =
          ReadChunks(reader, stream.watch(), *coordinator_, assembler)) {
    return *refused;
  }
  if (std::optional<grpc::Status> cancelled = CancelledByWatchdog(stream); cancelled) {
    return *cancelled;
  }
  if (absl::Status complete = assembler.Finish(); !complete.ok()) {
    coordinator_->CountRefusal(assembler.refusal());
    return ToGrpcStatus(complete);
  }
  const absl::Time started = absl::Now();
  absl::StatusOr<v1::UploadResponse> result = submit();
  if (options_.update_processed) {
    options_.update_processed(kind, absl::Now() - started, result.ok());
  }
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *result;
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::SecureAggregation(grpc::ServerContext* context,
                                                   const v1::SecAggRequest* request,
                                                   v1::SecAggResponse* response) {
  absl::StatusOr<Caller> caller = Authorize(*context, request->client_id());
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<v1::SecAggResponse> result =
      coordinator_->SecureAggregationStep(*request, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetStatus(grpc::ServerContext* context,
                                           const v1::GetStatusRequest* request,
                                           v1::GetStatusResponse* response) {
  // No client id to bind; still only for holders of a token (or a client certificate).
  if (absl::StatusOr<Caller> caller = Authenticate(*context); !caller.ok()) {
    return ToGrpcStatus(caller.status());
  }
  *response = coordinator_->Status(clock_());
  return grpc::Status::OK;
}

}  // namespace fedkit::server
