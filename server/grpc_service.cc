#include "server/grpc_service.h"

#include <openssl/crypto.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "proto/layout_conversion.h"

namespace fedkit::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", path));
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    absl::string_view token = absl::StripAsciiWhitespace(line);
    if (token.empty() || token[0] == '#') continue;
    tokens.emplace_back(token);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds no tokens"));
  }
  return TokenAuthenticator(std::move(tokens));
}

grpc::Status TokenAuthenticator::Check(const grpc::ServerContext& context) const {
  if (tokens_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing authorization metadata");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "Bearer ";
  if (value.substr(0, kPrefix.size()) != kPrefix) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authorization is not a bearer token");
  }
  const absl::string_view presented = value.substr(kPrefix.size());
  bool match = false;
  for (const std::string& token : tokens_) {
    // Constant-time comparison, so response timing does not reveal a token's prefix.
    if (token.size() == presented.size() &&
        CRYPTO_memcmp(token.data(), presented.data(), token.size()) == 0) {
      match = true;
    }
  }
  if (!match) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown bearer token");
  return grpc::Status::OK;
}

CoordinatorService::CoordinatorService(RoundCoordinator* coordinator, TokenAuthenticator auth,
                                       std::function<absl::Time()> clock, int64_t chunk_floats,
                                       const ModelArtifactStore* artifact,
                                       int64_t max_concurrent_transfers,
                                       absl::Duration transfer_wait)
    : coordinator_(coordinator),
      auth_(std::move(auth)),
      clock_(std::move(clock)),
      chunk_floats_(chunk_floats),
      artifact_(artifact),
      transfers_(std::max<int64_t>(1, max_concurrent_transfers)),
      transfer_wait_(transfer_wait) {}

std::optional<TransferLimiter::Slot> CoordinatorService::AcquireTransfer(
    const grpc::ServerContext& context) {
  const absl::Time deadline =
      std::min(absl::Now() + transfer_wait_, absl::FromChrono(context.deadline()));
  return transfers_.Acquire(deadline);
}

grpc::Status CoordinatorService::CheckIn(grpc::ServerContext* context,
                                         const v1::CheckInRequest* request,
                                         v1::CheckInResponse* response) {
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  absl::StatusOr<v1::CheckInResponse> result = coordinator_->CheckIn(*request, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetModel(grpc::ServerContext* context,
                                          const v1::GetModelRequest* request,
                                          grpc::ServerWriter<v1::ModelChunk>* writer) {
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  absl::StatusOr<RoundCoordinator::ModelSnapshot> snapshot =
      coordinator_->GetModel(*request, clock_());
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
  // Checked first (cheap), then a slot: at most max_concurrent_transfers model copies in flight.
  std::optional<TransferLimiter::Slot> slot = AcquireTransfer(*context);
  if (!slot.has_value()) {
    coordinator_->CountRefusal("transfers_busy");
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many model transfers in flight; retry later");
  }
  const std::vector<float>& params = *snapshot->parameters;
  const int64_t total = static_cast<int64_t>(params.size());
  for (int64_t offset = 0; offset < total; offset += chunk_floats_) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    v1::ModelChunk chunk;
    chunk.set_round(snapshot->round);
    chunk.set_total_size(total);
    chunk.set_offset(offset);
    const int64_t end = std::min(total, offset + chunk_floats_);
    chunk.mutable_values()->Add(params.begin() + offset, params.begin() + end);
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
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
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
  for (int64_t offset = request->offset(); offset < total; offset += kArtifactChunkBytes) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
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
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  absl::StatusOr<v1::DeclineResponse> result = coordinator_->Decline(*request, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *result;
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::UploadUpdate(grpc::ServerContext* context,
                                              grpc::ServerReader<v1::UpdateChunk>* reader,
                                              v1::UploadResponse* response) {
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  const int64_t model_size = coordinator_->model_size();
  v1::UpdateChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    coordinator_->CountRefusal("malformed_stream");
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "an upload must start with an UpdateHeader chunk");
  }
  const v1::UpdateHeader header = chunk.header();
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
    std::optional<TransferLimiter::Slot> slot = AcquireTransfer(*context);
    if (!slot.has_value()) {
      coordinator_->CountRefusal("transfers_busy");
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many uploads in flight; retry later");
    }
    return UploadMasked(*reader, header, response);
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
  std::optional<TransferLimiter::Slot> slot = AcquireTransfer(*context);
  if (!slot.has_value()) {
    coordinator_->CountRefusal("transfers_busy");
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many uploads in flight; retry later");
  }
  std::vector<float> delta(static_cast<size_t>(model_size));
  int64_t received = 0;
  while (reader->Read(&chunk)) {
    if (!chunk.has_values()) {
      coordinator_->CountRefusal("malformed_stream");
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "only value chunks may follow the header");
    }
    const v1::DeltaValues& values = chunk.values();
    if (values.offset() != received) {
      coordinator_->CountRefusal("malformed_stream");
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("value chunk at offset ", values.offset(), ", expected ", received));
    }
    if (received + values.values_size() > model_size) {
      coordinator_->CountRefusal("oversized");
      return grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("update has more than the declared ", model_size, " values"));
    }
    std::copy(values.values().begin(), values.values().end(), delta.begin() + received);
    received += values.values_size();
  }
  if (received != model_size) {
    coordinator_->CountRefusal("wrong_shape");
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("update ended after ", received, " of ", model_size, " values"));
  }
  absl::StatusOr<v1::UploadResponse> result = coordinator_->SubmitUpdate(header, delta, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *result;
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::UploadMasked(grpc::ServerReader<v1::UpdateChunk>& reader,
                                              const v1::UpdateHeader& header,
                                              v1::UploadResponse* response) {
  // At most 8 bytes per value whatever the modulus; the coordinator checks the exact length.
  const int64_t max_bytes = 8 * header.total_size();
  std::string packed;
  v1::UpdateChunk chunk;
  while (reader.Read(&chunk)) {
    if (!chunk.has_masked()) {
      coordinator_->CountRefusal("malformed_stream");
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "only masked chunks may follow a masked upload's header");
    }
    const v1::MaskedValues& masked = chunk.masked();
    if (masked.byte_offset() != static_cast<int64_t>(packed.size())) {
      coordinator_->CountRefusal("malformed_stream");
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("masked chunk at byte offset ", masked.byte_offset(),
                                       ", expected ", packed.size()));
    }
    if (static_cast<int64_t>(packed.size() + masked.packed().size()) > max_bytes) {
      coordinator_->CountRefusal("oversized");
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("masked upload exceeds ", max_bytes, " bytes"));
    }
    packed += masked.packed();
  }
  absl::StatusOr<v1::UploadResponse> result =
      coordinator_->SubmitMaskedUpdate(header, packed, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *result;
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::SecureAggregation(grpc::ServerContext* context,
                                                   const v1::SecAggRequest* request,
                                                   v1::SecAggResponse* response) {
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  absl::StatusOr<v1::SecAggResponse> result =
      coordinator_->SecureAggregationStep(*request, clock_());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetStatus(grpc::ServerContext* context,
                                           const v1::GetStatusRequest* request,
                                           v1::GetStatusResponse* response) {
  if (grpc::Status auth = auth_.Check(*context); !auth.ok()) return auth;
  *response = coordinator_->Status(clock_());
  return grpc::Status::OK;
}

}  // namespace fedkit::server
