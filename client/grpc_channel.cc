// ConnectGrpc: the CoordinatorChannel over a gRPC channel (TLS, or plaintext when asked for).
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/federated_client.h"
#include "client/model_stream.h"
#include "core/retry_after.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "proto/wire_sizes.h"

namespace fedkit::client {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;
constexpr int64_t kMaxArtifactBytes = int64_t{1} << 32;  // a ModelSource sets the real limit
// Uploads are cut as proto/wire_sizes.h says, so their reported sizes match.
constexpr size_t kUploadChunkFloats = static_cast<size_t>(proto::kUploadChunkFloats);

// The call's status, with the coordinator's retry hint (core/retry_after.h) when it sent one.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view rpc,
                      const grpc::ClientContext& context) {
  if (status.ok()) return absl::OkStatus();
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, ": ", status.error_message()));
  const auto& trailers = context.GetServerTrailingMetadata();
  if (auto it = trailers.find(kRetryAfterMetadata); it != trailers.end()) {
    int64_t ms = 0;
    // At most a day: a hint is advice, never a way for a server to park a device for good.
    if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) && ms > 0) {
      result =
          WithRetryAfter(std::move(result), absl::Milliseconds(std::min<int64_t>(ms, 86400000)));
    }
  }
  return result;
}

// The whole file, or INVALID_ARGUMENT naming the flag and the file.
absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag) {
  std::error_code error;
  std::ifstream in;
  if (std::filesystem::is_regular_file(path, error)) in.open(path, std::ios::binary);
  std::stringstream contents;
  if (in.is_open()) contents << in.rdbuf();
  if (!in.is_open() || in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read '", path, "' (no such file or not readable)"));
  }
  std::string text = std::move(contents).str();
  if (text.empty())
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", path, "' is empty"));
  return text;
}

class GrpcCoordinatorChannel final : public CoordinatorChannel {
 public:
  GrpcCoordinatorChannel(std::shared_ptr<grpc::Channel> channel, ConnectionOptions options)
      : stub_(v1::Coordinator::NewStub(channel)), options_(std::move(options)) {}

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    constexpr absl::string_view kRpc = "CheckIn";
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    v1::CheckInResponse response;
    traffic_.Sent(request.ByteSizeLong());
    const grpc::Status status = stub_->CheckIn(&context, request, &response);
    if (IsCancelled()) return Cancelled(kRpc);
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    traffic_.Received(response.ByteSizeLong());
    return response;
  }

  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override {
    constexpr absl::string_view kRpc = "GetModel";
    parameters->clear();
    layout->Clear();
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    traffic_.Sent(request.ByteSizeLong());
    std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader = stub_->GetModel(&context, request);
    v1::ModelChunk chunk;
    ModelStreamAssembler assembler(expected_size);
    absl::Status stream_error;
    while (reader->Read(&chunk)) {
      traffic_.Received(chunk.ByteSizeLong());
      stream_error = assembler.Add(chunk);
      if (!stream_error.ok()) break;
    }
    if (!stream_error.ok()) context.TryCancel();  // stop the stream; Finish then returns at once
    const grpc::Status status = reader->Finish();
    if (IsCancelled()) return Cancelled(kRpc);
    if (!stream_error.ok()) return stream_error;
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    return assembler.Finish(parameters, layout);
  }

  absl::Status GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                           std::string* bytes) override {
    constexpr absl::string_view kRpc = "GetArtifact";
    if (request.offset() != static_cast<int64_t>(bytes->size())) {
      return absl::InvalidArgumentError(absl::StrCat("GetArtifact: offset ", request.offset(),
                                                     " but ", bytes->size(), " bytes held"));
    }
    if (expected_size < 0 || expected_size > kMaxArtifactBytes) {
      return absl::FailedPreconditionError(absl::StrCat("GetArtifact: an artifact of ",
                                                        expected_size, " bytes is out of [0, ",
                                                        kMaxArtifactBytes, "]"));
    }
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    traffic_.Sent(request.ByteSizeLong());
    std::unique_ptr<grpc::ClientReader<v1::ArtifactChunk>> reader =
        stub_->GetArtifact(&context, request);
    bytes->reserve(static_cast<size_t>(expected_size));
    v1::ArtifactChunk chunk;
    absl::Status stream_error;
    while (reader->Read(&chunk)) {
      traffic_.Received(chunk.ByteSizeLong());
      const int64_t held = static_cast<int64_t>(bytes->size());
      if (chunk.total_size() != expected_size) {
        stream_error = absl::FailedPreconditionError(
            absl::StrCat("GetArtifact: the server sends an artifact of ", chunk.total_size(),
                         " bytes but the assignment says ", expected_size));
      } else if (chunk.offset() != held) {
        stream_error = absl::DataLossError(absl::StrCat(
            "GetArtifact: chunk at offset ", chunk.offset(), " but ", held, " bytes held"));
      } else if (static_cast<int64_t>(chunk.data().size()) > expected_size - held) {
        stream_error = absl::FailedPreconditionError(
            absl::StrCat("GetArtifact: the stream carries more than the assignment's ",
                         expected_size, " bytes"));
      }
      if (!stream_error.ok()) break;
      bytes->append(chunk.data());
    }
    if (!stream_error.ok()) context.TryCancel();
    const grpc::Status status = reader->Finish();
    if (IsCancelled()) return Cancelled(kRpc);
    if (!stream_error.ok()) {
      bytes->clear();  // nothing from a stream that broke the rules is kept for a resume
      return stream_error;
    }
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    if (static_cast<int64_t>(bytes->size()) != expected_size) {
      return absl::DataLossError(absl::StrCat("GetArtifact: stream ended after ", bytes->size(),
                                              " of ", expected_size, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override {
    constexpr absl::string_view kRpc = "Decline";
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    v1::DeclineResponse response;
    traffic_.Sent(request.ByteSizeLong());
    const grpc::Status status = stub_->Decline(&context, request, &response);
    if (IsCancelled()) return Cancelled(kRpc);
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    traffic_.Received(response.ByteSizeLong());
    return response;
  }

  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override {
    constexpr absl::string_view kRpc = "UploadUpdate";
    if (header.total_size() != static_cast<int64_t>(delta.size())) {
      return absl::InvalidArgumentError(absl::StrCat("UploadUpdate: header.total_size is ",
                                                     header.total_size(), " but the delta has ",
                                                     delta.size(), " values"));
    }
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    v1::UploadResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer =
        stub_->UploadUpdate(&context, &response);
    v1::UpdateChunk chunk;
    *chunk.mutable_header() = header;
    // A failed Write means the stream is broken; Finish reports why.
    traffic_.Sent(chunk.ByteSizeLong());
    bool open = writer->Write(chunk);
    for (size_t offset = 0; open && offset < delta.size(); offset += kUploadChunkFloats) {
      const size_t n = std::min(kUploadChunkFloats, delta.size() - offset);
      v1::DeltaValues* values = chunk.mutable_values();  // clears the header
      values->set_offset(static_cast<int64_t>(offset));
      values->mutable_values()->Assign(delta.begin() + offset, delta.begin() + offset + n);
      traffic_.Sent(chunk.ByteSizeLong());
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (IsCancelled()) return Cancelled(kRpc);
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    traffic_.Received(response.ByteSizeLong());
    return response;
  }

  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override {
    constexpr absl::string_view kRpc = "SecureAggregation";
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(kRpc);
    v1::SecAggResponse response;
    traffic_.Sent(request.ByteSizeLong());
    const grpc::Status status = stub_->SecureAggregation(&context, request, &response);
    if (IsCancelled()) return Cancelled(kRpc);
    if (!status.ok()) return FromGrpc(status, kRpc, context);
    traffic_.Received(response.ByteSizeLong());
    return response;
  }

  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string& packed) override {
    return UploadBytes(header, packed, /*compressed=*/false);
  }

  absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded) override {
    if (header.compressed_size() != static_cast<int64_t>(encoded.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "UploadUpdate (compressed): header.compressed_size is ", header.compressed_size(),
          " but the encoding has ", encoded.size(), " bytes"));
    }
    return UploadBytes(header, encoded, /*compressed=*/true);
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }

  // Counted as each message is handed to or taken from gRPC (a written chunk that a broken stream
  // never delivered included).
  std::optional<ChannelTraffic> traffic() const override { return traffic_.Get(); }

 private:
  // The header, then `bytes` in MaskedValues or CompressedValues chunks of
  // proto::kUploadChunkBytes.
  absl::StatusOr<v1::UploadResponse> UploadBytes(const v1::UpdateHeader& header,
                                                 const std::string& bytes, bool compressed) {
    const absl::string_view rpc =
        compressed ? "UploadUpdate (compressed)" : "UploadUpdate (masked)";
    grpc::ClientContext context;
    Prepare(context);
    ActiveCall call(this, &context);
    if (!call.started()) return Cancelled(rpc);
    v1::UploadResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer =
        stub_->UploadUpdate(&context, &response);
    v1::UpdateChunk chunk;
    *chunk.mutable_header() = header;
    traffic_.Sent(chunk.ByteSizeLong());
    bool open = writer->Write(chunk);
    const size_t chunk_bytes = static_cast<size_t>(proto::kUploadChunkBytes);
    for (size_t offset = 0; open && offset < bytes.size(); offset += chunk_bytes) {
      if (compressed) {
        v1::CompressedValues* values = chunk.mutable_compressed();  // clears the header
        values->set_byte_offset(static_cast<int64_t>(offset));
        values->set_data(bytes.substr(offset, chunk_bytes));
      } else {
        v1::MaskedValues* masked = chunk.mutable_masked();  // clears the header
        masked->set_byte_offset(static_cast<int64_t>(offset));
        masked->set_packed(bytes.substr(offset, chunk_bytes));
      }
      traffic_.Sent(chunk.ByteSizeLong());
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (IsCancelled()) return Cancelled(rpc);
    if (!status.ok()) return FromGrpc(status, rpc, context);
    traffic_.Received(response.ByteSizeLong());
    return response;
  }

  // Registers the call's context so Cancel() can reach it; unregisters before the context dies.
  class ActiveCall {
   public:
    ActiveCall(GrpcCoordinatorChannel* channel, grpc::ClientContext* context) : channel_(channel) {
      absl::MutexLock lock(&channel_->mu_);
      started_ = !channel_->cancelled_;
      if (started_) channel_->active_ = context;
    }
    ~ActiveCall() {
      absl::MutexLock lock(&channel_->mu_);
      channel_->active_ = nullptr;
    }
    ActiveCall(const ActiveCall&) = delete;
    ActiveCall& operator=(const ActiveCall&) = delete;
    bool started() const { return started_; }

   private:
    GrpcCoordinatorChannel* channel_;
    bool started_ = false;
  };

  void Prepare(grpc::ClientContext& context) const {
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    if (!options_.bearer_token.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
    }
  }

  bool IsCancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

  static absl::Status Cancelled(absl::string_view rpc) {
    return absl::CancelledError(absl::StrCat(rpc, ": cancelled"));
  }

  std::unique_ptr<v1::Coordinator::Stub> stub_;
  const ConnectionOptions options_;
  TrafficCounter traffic_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorChannel>> ConnectGrpc(const ConnectionOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("--server: HOST:PORT is required");
  if (!(options.call_timeout > absl::ZeroDuration()) ||
      options.call_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("call_timeout must be positive and finite");
  }
  for (const char c : options.bearer_token) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError("--token: only printable ASCII characters are allowed");
    }
  }
  const bool any_tls = !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
                       !options.tls_key_file.empty() || !options.tls_server_name.empty();
  if (options.insecure && any_tls) {
    return absl::InvalidArgumentError(
        "--insecure: plaintext cannot be combined with --tls-ca/--tls-cert/--tls-key/"
        "--tls-server-name");
  }
  if (!options.insecure && options.tls_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-ca: a CA certificate is required (or --insecure for plaintext)");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(options.tls_cert_file.empty()
                                          ? "--tls-cert: required with --tls-key"
                                          : "--tls-key: required with --tls-cert");
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.insecure) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadPem(options.tls_ca_file, "--tls-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadPem(options.tls_cert_file, "--tls-cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadPem(options.tls_key_file, "--tls-key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetString(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, options.tls_server_name);
    }
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.server, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--server: cannot use '", options.server, "'"));
  }
  return std::make_unique<GrpcCoordinatorChannel>(std::move(channel), options);
}

}  // namespace fedkit::client
