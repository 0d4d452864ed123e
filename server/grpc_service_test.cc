// The coordinator's gRPC service in-process: every kind of bad upload gets the right status, is not
// counted, and the run goes on.
#include "server/grpc_service.h"

#include <grpcpp/generic/generic_stub.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "s3cret-token";        // grants any client id
constexpr char kPhoneToken[] = "phone-1-token";  // grants "phone-1" only

ParameterLayout Layout(int64_t n) {
  ParameterLayout layout;
  layout.Append("w", {n});
  return layout;
}

class GrpcServiceTest : public ::testing::Test {
 protected:
  static constexpr int64_t kModelSize = 1000;

  void SetUp() override {
    CoordinatorOptions o;
    o.model_name = "tiny";
    o.rounds = 3;
    o.clients_per_round = clients_per_round_;
    o.min_clients = 1;
    o.plan.set_clip_norm(5.0);
    o.plan.set_run_seed(1);
    o.max_examples_per_client = 1000;
    o.download_encoding = download_encoding_;
    coordinator_ =
        *RoundCoordinator::Create(o, Layout(kModelSize), std::vector<float>(kModelSize, 0.5f), {});
    CoordinatorServiceOptions options = service_options_;
    options.chunk_floats = 300;
    service_ = std::make_unique<CoordinatorService>(
        coordinator_.get(),
        Authentication{
            .tokens = TokenAuthenticator({TokenAuthenticator::MakeToken(kToken, "*"),
                                          TokenAuthenticator::MakeToken(kPhoneToken, "phone-1")})},
        options);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel_);
  }

  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<grpc::ClientContext> Context(bool with_token = true, const char* token = kToken) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (with_token) context->AddMetadata("authorization", std::string("Bearer ") + token);
    return context;
  }

  v1::RoundAssignment Assign(const std::string& id) {
    v1::CheckInRequest request;
    request.set_client_id(id);
    request.set_api_version(1);
    v1::CheckInResponse response;
    grpc::Status s = stub_->CheckIn(Context().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(response.has_assignment()) << response.DebugString();
    return response.assignment();
  }

  // Uploads header + values in chunks of 400; `declared` overrides total_size.
  grpc::Status Upload(const v1::RoundAssignment& a, const std::string& id,
                      const std::vector<float>& values, v1::UploadResponse* response,
                      std::optional<int64_t> declared = std::nullopt, bool with_token = true) {
    auto context = Context(with_token);
    v1::UploadResponse ignored;
    auto writer = stub_->UploadUpdate(context.get(), response ? response : &ignored);
    v1::UpdateChunk header;
    header.mutable_header()->set_client_id(id);
    header.mutable_header()->set_assignment_id(a.assignment_id());
    header.mutable_header()->set_round(a.round());
    header.mutable_header()->set_num_examples(10);
    header.mutable_header()->set_total_size(declared.value_or(values.size()));
    writer->Write(header);
    for (size_t offset = 0; offset < values.size(); offset += 400) {
      v1::UpdateChunk chunk;
      chunk.mutable_values()->set_offset(offset);
      for (size_t i = offset; i < std::min(values.size(), offset + 400); ++i) {
        chunk.mutable_values()->add_values(values[i]);
      }
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  v1::GetStatusResponse Status() {
    v1::GetStatusResponse status;
    EXPECT_TRUE(stub_->GetStatus(Context().get(), v1::GetStatusRequest(), &status).ok());
    return status;
  }

  int64_t clients_per_round_ = 1;
  compression::DownloadEncoding download_encoding_ = compression::DownloadEncoding::kFloat32;
  CoordinatorServiceOptions service_options_;
  std::unique_ptr<RoundCoordinator> coordinator_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  int port_ = 0;
};

TEST_F(GrpcServiceTest, ModelDownloadsInChunksWithLayout) {
  const auto a = Assign("dev-1");
  v1::GetModelRequest request;
  request.set_client_id("dev-1");
  request.set_assignment_id(a.assignment_id());
  request.set_round(a.round());
  auto context = Context();
  auto reader = stub_->GetModel(context.get(), request);
  v1::ModelChunk chunk;
  std::vector<float> values;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), static_cast<int64_t>(values.size()));
    EXPECT_EQ(chunk.total_size(), kModelSize);
    if (chunks == 0) {
      EXPECT_EQ(chunk.layout().entries(0).name(), "w");
    }
    values.insert(values.end(), chunk.values().begin(), chunk.values().end());
    ++chunks;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks, 4);  // 1000 values in chunks of 300
  EXPECT_EQ(values, std::vector<float>(kModelSize, 0.5f));
}

class EncodedDownloadTest : public GrpcServiceTest {
 protected:
  EncodedDownloadTest() { download_encoding_ = compression::DownloadEncoding::kFloat16; }
};

TEST_F(EncodedDownloadTest, TheModelTravelsEncodedInByteChunksAndTheRoundCountsThem) {
  const auto a = Assign("dev-1");
  v1::GetModelRequest request;
  request.set_client_id("dev-1");
  request.set_assignment_id(a.assignment_id());
  request.set_round(a.round());
  auto context = Context();
  auto reader = stub_->GetModel(context.get(), request);
  v1::ModelChunk chunk;
  std::string bytes;
  int64_t wire = 0;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    wire += static_cast<int64_t>(chunk.ByteSizeLong());
    EXPECT_EQ(chunk.encoding(), v1::MODEL_ENCODING_FLOAT16);
    EXPECT_EQ(chunk.encoded_size(), 2 * kModelSize);
    EXPECT_EQ(chunk.total_size(), kModelSize);
    EXPECT_EQ(chunk.offset(), static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(chunk.values_size(), 0);
    EXPECT_EQ(chunk.has_layout(), chunks == 0);
    bytes += chunk.encoded();
    ++chunks;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks, 2);  // 2000 bytes in chunks of 4 x 300
  EXPECT_EQ(
      *compression::DecodeDownload(compression::DownloadEncoding::kFloat16, bytes, kModelSize),
      std::vector<float>(kModelSize, 0.5f));
  // The round reports the stream at the default chunk size (one chunk here) as its download.
  ASSERT_TRUE(Upload(a, "dev-1", std::vector<float>(kModelSize, 0.01f), nullptr).ok());
  const v1::GetStatusResponse status = Status();
  ASSERT_EQ(status.history_size(), 1);
  EXPECT_GT(status.history(0).download_bytes(), 2.0 * kModelSize);
  EXPECT_LT(status.history(0).download_bytes(), static_cast<double>(wire));  // one chunk, not two
}

TEST_F(GrpcServiceTest, BadUploadsGetTheRightStatusAndTheRunGoesOn) {
  const auto a = Assign("dev-1");
  std::vector<float> good(kModelSize, 0.01f);
  std::vector<float> nan = good;
  nan[17] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> inf = good;
  inf[999] = -std::numeric_limits<float>::infinity();
  std::vector<float> over_norm(kModelSize, 1.0f);  // norm sqrt(1000) > 5

  EXPECT_EQ(Upload(a, "dev-1", good, nullptr, std::nullopt, /*with_token=*/false).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Upload(a, "dev-1", std::vector<float>(999, 0.0f), nullptr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Upload(a, "dev-1", std::vector<float>(1001, 0.0f), nullptr).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Declares the right size but sends more values than it declared.
  EXPECT_EQ(Upload(a, "dev-1", std::vector<float>(1400, 0.0f), nullptr, kModelSize).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Upload(a, "dev-1", nan, nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Upload(a, "dev-1", inf, nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status over = Upload(a, "dev-1", over_norm, nullptr);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(over.error_message(), HasSubstr("clip norm"));
  EXPECT_EQ(Upload(a, "someone-else", good, nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // Garbage: random bytes as the request stream of UploadUpdate.
  grpc::GenericStub generic(channel_);
  std::mt19937 rng(3);
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  grpc::Slice slice(garbage);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::CompletionQueue cq;
  auto context = Context();
  auto call =
      generic.PrepareUnaryCall(context.get(), "/fedkit.v1.Coordinator/UploadUpdate", request, &cq);
  call->StartCall();
  grpc::Status garbage_status;
  call->Finish(&reply, &garbage_status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_FALSE(garbage_status.ok());
  cq.Shutdown();

  EXPECT_EQ(Status().received(), 0);  // nothing was counted

  v1::UploadResponse response;
  ASSERT_TRUE(Upload(a, "dev-1", good, &response).ok());
  EXPECT_FALSE(response.duplicate());
  EXPECT_EQ(coordinator_->rounds_completed(), 1);
  // The same upload again (a client retrying after a lost response) is acknowledged, not recounted.
  grpc::Status late = Upload(a, "dev-1", good, &response);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // round 1 is closed: late
  EXPECT_THAT(late.error_message(), HasSubstr("late"));

  // The run goes on: round 2 assigns as usual.
  const auto a2 = Assign("dev-1");
  EXPECT_EQ(a2.round(), 2);
  auto status = Status();
  EXPECT_EQ(status.history_size(), 1);
  EXPECT_EQ(status.history(0).participants(), 1);
  std::map<std::string, int64_t> refusals(status.refusals().begin(), status.refusals().end());
  EXPECT_EQ(refusals["wrong_shape"], 1);
  EXPECT_EQ(refusals["oversized"], 2);
  EXPECT_EQ(refusals["not_finite"], 2);
  EXPECT_EQ(refusals["over_norm"], 1);
  EXPECT_EQ(refusals["unassigned"], 1);
  EXPECT_EQ(refusals["late"], 1);

  // Parameters moved by exactly the one accepted delta.
  EXPECT_FLOAT_EQ(coordinator_->global_parameters()[0], 0.51f);
}

// Two clients per round, so the round stays open after one upload.
class GrpcServiceTwoClientTest : public GrpcServiceTest {
 protected:
  void SetUp() override {
    clients_per_round_ = 2;
    GrpcServiceTest::SetUp();
  }
};

TEST_F(GrpcServiceTwoClientTest, RetriedUploadIsIdempotentAndADifferentSecondUploadIsRefused) {
  v1::CheckInRequest request;
  request.set_client_id("dev-2");
  v1::CheckInResponse ignored;
  ASSERT_TRUE(stub_->CheckIn(Context().get(), request, &ignored).ok());  // 1 of 2 waiting
  const auto a = Assign("dev-1");                                        // starts the round
  std::vector<float> good(kModelSize, 0.01f);
  v1::UploadResponse response;
  ASSERT_TRUE(Upload(a, "dev-1", good, &response).ok());
  EXPECT_FALSE(response.duplicate());
  ASSERT_TRUE(Upload(a, "dev-1", good, &response).ok());
  EXPECT_TRUE(response.duplicate());
  std::vector<float> other(kModelSize, -0.01f);
  EXPECT_EQ(Upload(a, "dev-1", other, &response).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  auto status = Status();
  EXPECT_EQ(status.received(), 1);
  EXPECT_EQ(status.refusals().at("duplicate"), 1);
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
}

TEST_F(GrpcServiceTest, UnauthenticatedCallsAreRefused) {
  v1::CheckInRequest request;
  request.set_client_id("dev-1");
  v1::CheckInResponse response;
  auto context = Context(false);
  EXPECT_EQ(stub_->CheckIn(context.get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext wrong;
  wrong.AddMetadata("authorization", "Bearer wrong");
  EXPECT_EQ(stub_->CheckIn(&wrong, request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::GetStatusResponse status;
  grpc::ClientContext status_context;
  EXPECT_EQ(stub_->GetStatus(&status_context, v1::GetStatusRequest(), &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// A token for phone-1 cannot act as phone-2 on any RPC, even holding phone-2's assignment id.
TEST_F(GrpcServiceTest, ACallerClaimingAnotherClientIdIsRefusedOnEveryRpc) {
  const v1::RoundAssignment a = Assign("phone-2");
  const auto phone = [&] { return Context(true, kPhoneToken); };

  v1::CheckInRequest check_in;
  check_in.set_client_id("phone-2");
  v1::CheckInResponse check_in_response;
  EXPECT_EQ(stub_->CheckIn(phone().get(), check_in, &check_in_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  v1::GetModelRequest get_model;
  get_model.set_client_id("phone-2");
  get_model.set_assignment_id(a.assignment_id());
  get_model.set_round(a.round());
  auto model_context = phone();
  auto reader = stub_->GetModel(model_context.get(), get_model);
  v1::ModelChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  v1::GetArtifactRequest get_artifact;
  get_artifact.set_client_id("phone-2");
  auto artifact_context = phone();
  auto artifact_reader = stub_->GetArtifact(artifact_context.get(), get_artifact);
  v1::ArtifactChunk artifact_chunk;
  EXPECT_FALSE(artifact_reader->Read(&artifact_chunk));
  EXPECT_EQ(artifact_reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  v1::DeclineRequest decline;
  decline.set_client_id("phone-2");
  decline.set_assignment_id(a.assignment_id());
  decline.set_round(a.round());
  decline.set_reason(v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
  v1::DeclineResponse decline_response;
  EXPECT_EQ(stub_->Decline(phone().get(), decline, &decline_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  v1::SecAggRequest secagg;
  secagg.set_client_id("phone-2");
  secagg.set_assignment_id(a.assignment_id());
  secagg.set_round(a.round());
  v1::SecAggResponse secagg_response;
  EXPECT_EQ(stub_->SecureAggregation(phone().get(), secagg, &secagg_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  {
    auto upload_context = phone();
    v1::UploadResponse upload_response;
    auto writer = stub_->UploadUpdate(upload_context.get(), &upload_response);
    v1::UpdateChunk header;
    header.mutable_header()->set_client_id("phone-2");
    header.mutable_header()->set_assignment_id(a.assignment_id());
    header.mutable_header()->set_round(a.round());
    header.mutable_header()->set_num_examples(10);
    header.mutable_header()->set_total_size(kModelSize);
    writer->Write(header);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }

  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.refusals().at("permission_denied"), 6);
  EXPECT_EQ(status.declines_size(), 0);
  // The token still works for its own id, and phone-2's assignment is untouched.
  check_in.set_client_id("phone-1");
  EXPECT_TRUE(stub_->CheckIn(phone().get(), check_in, &check_in_response).ok());
  v1::UploadResponse uploaded;
  EXPECT_TRUE(Upload(a, "phone-2", std::vector<float>(kModelSize, 0.01f), &uploaded).ok());
  EXPECT_EQ(coordinator_->rounds_completed(), 1);
}

// Assignment ids are 128-bit random capabilities; a guess names nothing, and an upload under a
// guessed id is refused at its header, before anything is allocated for the size it declares.
TEST_F(GrpcServiceTest, AGuessedAssignmentIdGetsNothing) {
  const v1::RoundAssignment a = Assign("dev-1");
  ASSERT_EQ(a.assignment_id().size(), 32u);
  EXPECT_EQ(a.assignment_id().find_first_not_of("0123456789abcdef"), std::string::npos);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string guess;
    for (int j = 0; j < 32; ++j) guess += "0123456789abcdef"[rng() % 16];
    v1::GetModelRequest request;
    request.set_client_id("dev-1");
    request.set_assignment_id(guess);
    request.set_round(a.round());
    auto context = Context();
    auto reader = stub_->GetModel(context.get(), request);
    v1::ModelChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  v1::RoundAssignment guessed = a;
  guessed.set_assignment_id(std::string(32, '0'));
  // Declares 10^12 values: the assignment is checked first, so this is not even "oversized".
  EXPECT_EQ(Upload(guessed, "dev-1", {}, nullptr, int64_t{1000000000000}).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Another client's real assignment id is no better.
  EXPECT_EQ(Upload(a, "dev-2", std::vector<float>(kModelSize, 0.01f), nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.refusals().at("unassigned"), 2);  // the two uploads (downloads are not counted)
  EXPECT_EQ(status.refusals().count("oversized"), 0u);
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
}

TEST_F(GrpcServiceTest, OneUploadInFlightPerAssignmentAndTheRefusalCarriesARetryHint) {
  const v1::RoundAssignment a = Assign("dev-1");
  v1::UpdateChunk header;
  header.mutable_header()->set_client_id("dev-1");
  header.mutable_header()->set_assignment_id(a.assignment_id());
  header.mutable_header()->set_round(a.round());
  header.mutable_header()->set_num_examples(10);
  header.mutable_header()->set_total_size(kModelSize);
  std::unique_ptr<grpc::ClientContext> first_context;
  v1::UploadResponse first_response;
  std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> first;
  auto open_first = [&] {
    first_context = Context();
    first = stub_->UploadUpdate(first_context.get(), &first_response);
    return first->Write(header);
  };
  ASSERT_TRUE(open_first());
  // Whichever stream's header the server reads first holds the assignment. Until the first
  // stream's header is in, a second stream is just a short upload (INVALID_ARGUMENT); but if a
  // second stream's header is read first, it is the first stream that is refused (counted as
  // upload_in_flight), and it is opened again. (Without that, a loaded machine made this loop spin
  // forever: the first stream had been refused and every second stream was a short upload.)
  int64_t first_refused = 0;
  for (;;) {
    auto context = Context();
    v1::UploadResponse response;
    auto second = stub_->UploadUpdate(context.get(), &response);
    second->Write(header);
    second->WritesDone();
    const grpc::Status status = second->Finish();
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      const auto refusals = Status().refusals();
      const auto refused = refusals.find("upload_in_flight");
      if (refused != refusals.end() && refused->second > first_refused) {
        ++first_refused;
        first->WritesDone();
        EXPECT_EQ(first->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
        ASSERT_TRUE(open_first());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("already in progress"));
    const auto& trailers = context->GetServerTrailingMetadata();
    auto hint = trailers.find("fedkit-retry-after-ms");
    ASSERT_NE(hint, trailers.end());
    EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "5000");
    break;
  }
  // The first upload completes and counts.
  for (int64_t offset = 0; offset < kModelSize; offset += 500) {
    v1::UpdateChunk chunk;
    chunk.mutable_values()->set_offset(offset);
    for (int64_t i = 0; i < 500; ++i) chunk.mutable_values()->add_values(0.01f);
    ASSERT_TRUE(first->Write(chunk));
  }
  first->WritesDone();
  EXPECT_TRUE(first->Finish().ok());
  EXPECT_EQ(coordinator_->rounds_completed(), 1);
  EXPECT_EQ(Status().refusals().at("upload_in_flight"), 1 + first_refused);
}

class GrpcServiceIdleStreamTest : public GrpcServiceTest {
 protected:
  void SetUp() override {
    service_options_.stream_idle_timeout = absl::Milliseconds(200);
    GrpcServiceTest::SetUp();
  }
};

TEST_F(GrpcServiceIdleStreamTest, AnUploadThatSendsNothingIsCancelledAndCounted) {
  auto context = Context();
  v1::UploadResponse response;
  auto writer = stub_->UploadUpdate(context.get(), &response);
  // Sends nothing, not even its header; the server gives up on it without any help from us.
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  while (Status().refusals().count("stream_idle") == 0) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(Status().refusals().at("stream_idle"), 1);
  // The service still works.
  const v1::RoundAssignment a = Assign("dev-1");
  EXPECT_TRUE(Upload(a, "dev-1", std::vector<float>(kModelSize, 0.01f), nullptr).ok());
}

class GrpcServiceStreamCapTest : public GrpcServiceTest {
 protected:
  void SetUp() override {
    service_options_.max_streams = 2;
    GrpcServiceTest::SetUp();
  }
};

TEST_F(GrpcServiceStreamCapTest, StreamsBeyondTheCapAreRefusedAtOnce) {
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<v1::UploadResponse> responses(3);
  std::vector<std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>>> writers;
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(Context());
    writers.push_back(stub_->UploadUpdate(contexts.back().get(), &responses[i]));
  }
  // Both open streams are counted by the time the server reports them busy.
  for (;;) {
    auto context = Context();
    v1::UploadResponse response;
    auto third = stub_->UploadUpdate(context.get(), &response);
    third->WritesDone();
    const grpc::Status status = third->Finish();
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) continue;  // not yet
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    break;
  }
  for (auto& writer : writers) {
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_GE(Status().refusals().at("streams_busy"), 1);
}

TEST_F(GrpcServiceTest, DeclinesAreCountedOncePerAssignmentByReason) {
  const v1::RoundAssignment a = Assign("c1");
  v1::DeclineRequest request;
  request.set_client_id("c1");
  request.set_assignment_id(a.assignment_id());
  request.set_round(a.round());
  request.set_reason(v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
  v1::DeclineResponse response;
  ASSERT_TRUE(stub_->Decline(Context().get(), request, &response).ok());
  EXPECT_FALSE(response.duplicate());
  ASSERT_TRUE(stub_->Decline(Context().get(), request, &response).ok());
  EXPECT_TRUE(response.duplicate());
  EXPECT_EQ(Status().declines().at("artifact_not_approved"), 1);

  // Not the caller's assignment, an unknown reason, no token: refused, not counted.
  v1::DeclineRequest other = request;
  other.set_client_id("c2");
  EXPECT_EQ(stub_->Decline(Context().get(), other, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  other = request;
  other.set_reason(static_cast<v1::DeclineRequest::Reason>(99));
  EXPECT_EQ(stub_->Decline(Context().get(), other, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  other.set_reason(v1::DeclineRequest::REASON_UNSPECIFIED);
  EXPECT_EQ(stub_->Decline(Context().get(), other, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  other = request;
  other.set_assignment_id(std::string(32, 'f'));
  EXPECT_EQ(stub_->Decline(Context().get(), other, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(stub_->Decline(Context(false).get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.declines_size(), 1);
  EXPECT_EQ(status.declines().at("artifact_not_approved"), 1);
}

TEST_F(GrpcServiceTest, WithoutAnArtifactGetArtifactIsNotFound) {
  v1::GetArtifactRequest request;
  request.set_sha256(std::string(64, 'a'));
  auto context = Context();
  auto reader = stub_->GetArtifact(context.get(), request);
  v1::ArtifactChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// A coordinator serving a model file: the assignment names it, GetArtifact streams it in chunks
// from any offset, and nothing else is served.
TEST(GrpcServiceArtifactTest, TheAssignedArtifactIsServedInChunksFromAnyOffset) {
  std::string bytes(CoordinatorService::kArtifactChunkBytes * 2 + 12345, '\0');
  std::mt19937 rng(7);
  for (char& c : bytes) c = static_cast<char>(rng());
  absl::StatusOr<artifacts::KeyPair> key = artifacts::GenerateKeyPair();
  ASSERT_TRUE(key.ok());
  absl::StatusOr<artifacts::SignatureFile> signature =
      artifacts::MakeSignatureFile(bytes, key->private_key);
  ASSERT_TRUE(signature.ok());
  absl::StatusOr<std::unique_ptr<ModelArtifactStore>> store =
      ModelArtifactStore::Create(bytes, *signature);
  ASSERT_TRUE(store.ok()) << store.status();

  CoordinatorOptions o;
  o.model_name = "torchscript:sha256:" + (*store)->artifact().sha256();
  o.artifact = (*store)->artifact();
  o.plan.set_run_seed(1);
  auto coordinator = *RoundCoordinator::Create(o, Layout(10), std::vector<float>(10, 0.f), {});
  CoordinatorService service(coordinator.get(), Authentication(), CoordinatorServiceOptions(),
                             store->get());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  v1::CheckInRequest check_in;
  check_in.set_client_id("c1");
  v1::CheckInResponse assigned;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->CheckIn(&context, check_in, &assigned).ok());
  }
  ASSERT_TRUE(assigned.has_assignment());
  const v1::ModelArtifact& artifact = assigned.assignment().artifact();
  EXPECT_EQ(artifact.sha256(), artifacts::Sha256Hex(bytes));
  EXPECT_EQ(artifact.size_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(artifact.format(), "torchscript");
  EXPECT_EQ(artifact.key_fingerprint(), artifacts::Fingerprint(key->public_key));
  EXPECT_EQ(artifact.signature(),
            std::string(signature->signature.begin(), signature->signature.end()));

  auto download = [&](int64_t offset, const std::string& sha, std::string* out, int* chunks) {
    v1::GetArtifactRequest request;
    request.set_sha256(sha);
    request.set_offset(offset);
    grpc::ClientContext context;
    auto reader = stub->GetArtifact(&context, request);
    v1::ArtifactChunk chunk;
    *chunks = 0;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.total_size(), static_cast<int64_t>(bytes.size()));
      EXPECT_EQ(chunk.offset(), offset + static_cast<int64_t>(out->size()));
      out->append(chunk.data());
      ++*chunks;
    }
    return reader->Finish();
  };
  std::string whole;
  int chunks = 0;
  ASSERT_TRUE(download(0, artifact.sha256(), &whole, &chunks).ok());
  EXPECT_EQ(whole, bytes);
  EXPECT_EQ(chunks, 3);
  std::string tail;
  ASSERT_TRUE(download(1000001, artifact.sha256(), &tail, &chunks).ok());
  EXPECT_EQ(tail, bytes.substr(1000001));
  std::string none;
  EXPECT_EQ(download(0, std::string(64, '0'), &none, &chunks).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(download(static_cast<int64_t>(bytes.size()) + 1, artifact.sha256(), &none, &chunks)
                .error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(download(-1, artifact.sha256(), &none, &chunks).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(none.empty());
  server->Shutdown();
}

TEST(ModelArtifactStoreTest, ASignatureOfOtherBytesIsRefused) {
  absl::StatusOr<artifacts::KeyPair> key = artifacts::GenerateKeyPair();
  ASSERT_TRUE(key.ok());
  absl::StatusOr<artifacts::SignatureFile> signature =
      artifacts::MakeSignatureFile("version 1", key->private_key);
  ASSERT_TRUE(signature.ok());
  absl::StatusOr<std::unique_ptr<ModelArtifactStore>> store =
      ModelArtifactStore::Create("version 2", *signature);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("the signature is for SHA-256"));
  EXPECT_EQ(ModelArtifactStore::Create("", std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<ModelArtifactStore>> unsigned_store =
      ModelArtifactStore::Create("version 2", std::nullopt);
  ASSERT_TRUE(unsigned_store.ok());
  EXPECT_FALSE((*unsigned_store)->is_signed());
  EXPECT_TRUE((*unsigned_store)->artifact().signature().empty());
}

}  // namespace
}  // namespace fedkit::server

namespace fedkit::server {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Mutual TLS: the certificate's identity is the client id (deploy/make-certs.sh --client).
TEST(GrpcServiceMutualTlsTest, ADeviceCertificateActsOnlyAsItsOwnClientId) {
  const std::string dir = ::testing::TempDir() + "/fedkit_mtls_identity";
  std::filesystem::remove_all(dir);
  const std::string command =
      absl::StrCat("bash '", FEDKIT_SOURCE_DIR, "/deploy/make-certs.sh' --client alice '", dir,
                   "' localhost 127.0.0.1 >/dev/null 2>&1");
  if (std::system(command.c_str()) != 0) GTEST_SKIP() << "make-certs.sh failed (no openssl?)";

  CoordinatorOptions o;
  o.model_name = "tiny";
  o.clients_per_round = 2;
  o.min_clients = 2;
  o.plan.set_run_seed(1);
  auto coordinator = *RoundCoordinator::Create(o, Layout(10), std::vector<float>(10, 0.f), {});
  CoordinatorService service(coordinator.get(), Authentication{.client_certificates = true});
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = ReadText(dir + "/ca.pem");
  ssl.pem_key_cert_pairs.push_back({ReadText(dir + "/server.key"), ReadText(dir + "/server.pem")});
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  const auto stub_for = [&](const std::string& cert) {
    grpc::SslCredentialsOptions client;
    client.pem_root_certs = ReadText(dir + "/ca.pem");
    client.pem_private_key = ReadText(dir + "/" + cert + ".key");
    client.pem_cert_chain = ReadText(dir + "/" + cert + ".pem");
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return v1::Coordinator::NewStub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                                              grpc::SslCredentials(client), args));
  };
  const auto check_in = [](v1::Coordinator::Stub& stub, const std::string& id) {
    v1::CheckInRequest request;
    request.set_client_id(id);
    request.set_api_version(1);
    v1::CheckInResponse response;
    grpc::ClientContext context;
    return stub.CheckIn(&context, request, &response);
  };
  auto alice = stub_for("client-alice");
  EXPECT_TRUE(check_in(*alice, "alice").ok());
  const grpc::Status as_bob = check_in(*alice, "bob");
  EXPECT_EQ(as_bob.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(as_bob.error_message(), HasSubstr("\"alice\""));
  // The generic client certificate (common name "fedkit-client") proves that id only.
  auto generic = stub_for("client");
  EXPECT_TRUE(check_in(*generic, "fedkit-client").ok());
  EXPECT_EQ(check_in(*generic, "alice").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fedkit::server
