// ConnectGrpc against an in-process gRPC server with fake coordinator behaviour.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/federated_client.h"
#include "client/local_trainer.h"
#include "fedkit/v1/coordinator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/flat_params.h"
#include "models/model.h"

namespace fedkit::client {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  // GetModel behaviour.
  std::vector<float> model;
  int64_t chunk_floats = 100000;
  bool gap = false;             // skip 10 values before the second chunk
  bool wrong_total = false;     // announce one value more than is sent
  bool block_check_in = false;  // CheckIn waits until the call is cancelled (or 20 s)

  v1::ParameterLayout layout;  // sent with the first chunk; default: one entry "w"
  // If set, answers CheckIn instead of the default behaviour.
  std::function<grpc::Status(const v1::CheckInRequest&, v1::CheckInResponse*)> check_in_script;

  absl::Notification check_in_entered;

  grpc::Status CheckIn(grpc::ServerContext* context, const v1::CheckInRequest* request,
                       v1::CheckInResponse* response) override {
    Record(context);
    if (block_check_in) {
      if (!check_in_entered.HasBeenNotified()) check_in_entered.Notify();
      const absl::Time limit = absl::Now() + absl::Seconds(20);
      while (!context->IsCancelled() && absl::Now() < limit) absl::SleepFor(absl::Milliseconds(2));
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gave up waiting");
    }
    if (check_in_script) return check_in_script(*request, response);
    if (request->client_id() == "denied") {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not on the list");
    }
    response->mutable_retry_later()->set_retry_after_seconds(1.5);
    response->mutable_retry_later()->set_reason(request->client_id());
    return grpc::Status::OK;
  }

  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        grpc::ServerWriter<v1::ModelChunk>* writer) override {
    Record(context);
    const int64_t total = static_cast<int64_t>(model.size());
    int64_t offset = 0;
    for (int i = 0; offset < total; ++i) {
      if (gap && i == 1) offset += 10;
      const int64_t n = std::min(chunk_floats, total - offset);
      v1::ModelChunk chunk;
      chunk.set_round(request->round());
      chunk.set_total_size(wrong_total ? total + 1 : total);
      chunk.set_offset(offset);
      chunk.mutable_values()->Assign(model.begin() + offset, model.begin() + offset + n);
      if (i == 0 && layout.entries_size() > 0) {
        *chunk.mutable_layout() = layout;
      } else if (i == 0) {
        auto* entry = chunk.mutable_layout()->add_entries();
        entry->set_name("w");
        entry->add_shape(total);
      }
      if (!writer->Write(chunk)) break;
      offset += n;
    }
    return grpc::Status::OK;
  }

  // GetArtifact behaviour: `artifact` from request.offset in chunks of `artifact_chunk` bytes;
  // the first stream fails (UNAVAILABLE) once `artifact_fail_after` bytes were sent (0 = never);
  // `artifact_extra` bytes more than announced are appended.
  std::string artifact;
  int64_t artifact_chunk = 256;
  int64_t artifact_fail_after = 0;  // under mu once the server runs
  int64_t artifact_extra = 0;       // under mu once the server runs

  grpc::Status GetArtifact(grpc::ServerContext* context, const v1::GetArtifactRequest* request,
                           grpc::ServerWriter<v1::ArtifactChunk>* writer) override {
    Record(context);
    // The test changes the failure and the extra bytes between calls: read (and reset) under mu.
    int64_t extra = 0;
    int64_t fail_after = 0;
    {
      absl::MutexLock lock(&mu);
      artifact_offsets.push_back(request->offset());
      extra = artifact_extra;
      fail_after = artifact_fail_after;
    }
    const std::string sent = artifact + std::string(extra, 'x');
    const int64_t total = static_cast<int64_t>(artifact.size());
    for (int64_t offset = request->offset(); offset < static_cast<int64_t>(sent.size());
         offset += artifact_chunk) {
      if (fail_after > 0 && offset >= fail_after) {
        absl::MutexLock lock(&mu);
        artifact_fail_after = 0;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "link dropped");
      }
      v1::ArtifactChunk chunk;
      chunk.set_total_size(total);
      chunk.set_offset(offset);
      chunk.set_data(sent.substr(offset, artifact_chunk));
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status Decline(grpc::ServerContext* context, const v1::DeclineRequest* request,
                       v1::DeclineResponse* response) override {
    Record(context);
    absl::MutexLock lock(&mu);
    declines.push_back(*request);
    return grpc::Status::OK;
  }

  grpc::Status UploadUpdate(grpc::ServerContext* context,
                            grpc::ServerReader<v1::UpdateChunk>* reader,
                            v1::UploadResponse* response) override {
    Record(context);
    v1::UpdateChunk chunk;
    absl::MutexLock lock(&mu);
    uploaded.clear();
    upload_offsets.clear();
    bool first = true;
    while (reader->Read(&chunk)) {
      if (first) {
        if (!chunk.has_header())
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header");
        header = chunk.header();
        first = false;
        continue;
      }
      if (!chunk.has_values())
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "2nd header");
      upload_offsets.push_back(chunk.values().offset());
      uploaded.insert(uploaded.end(), chunk.values().values().begin(),
                      chunk.values().values().end());
    }
    ++uploads;
    response->set_duplicate(header.round() == 99);
    return grpc::Status::OK;
  }

  void Record(grpc::ServerContext* context) {
    absl::MutexLock lock(&mu);
    const auto& md = context->client_metadata();
    auto it = md.find("authorization");
    authorization.push_back(it == md.end() ? ""
                                           : std::string(it->second.data(), it->second.size()));
  }

  absl::Mutex mu;
  std::vector<std::string> authorization;
  v1::UpdateHeader header;
  std::vector<float> uploaded;
  std::vector<int64_t> upload_offsets;
  int uploads = 0;
  std::vector<int64_t> artifact_offsets;
  std::vector<v1::DeclineRequest> declines;
};

class TestServer {
 public:
  TestServer(FakeCoordinator* service, std::shared_ptr<grpc::ServerCredentials> credentials) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterService(service);
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
  }
  ~TestServer() {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }
  bool ok() const { return server_ != nullptr && port_ > 0; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

ConnectionOptions Insecure(const TestServer& server) {
  ConnectionOptions o;
  o.server = server.address();
  o.insecure = true;
  o.call_timeout = absl::Seconds(20);
  return o;
}

std::unique_ptr<CoordinatorChannel> Connect(const ConnectionOptions& options) {
  auto channel = ConnectGrpc(options);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return channel.ok() ? std::move(*channel) : nullptr;
}

v1::CheckInRequest Request(const std::string& client_id) {
  v1::CheckInRequest r;
  r.set_client_id(client_id);
  r.set_api_version(1);
  return r;
}

TEST(GrpcChannelTest, CheckInRoundTrip) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  auto response = channel->CheckIn(Request("client-000001"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_DOUBLE_EQ(response->retry_later().retry_after_seconds(), 1.5);
  EXPECT_EQ(response->retry_later().reason(), "client-000001");
}

TEST(GrpcChannelTest, ServerErrorsKeepTheirCodeAndMessage) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  auto response = channel->CheckIn(Request("denied"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(response.status().message(), HasSubstr("CheckIn"));
  EXPECT_THAT(response.status().message(), HasSubstr("not on the list"));
}

TEST(GrpcChannelTest, DownloadReassemblesAMillionFloats) {
  FakeCoordinator service;
  service.model.resize(1000000);
  for (size_t i = 0; i < service.model.size(); ++i) service.model[i] = 0.25f * i - 7.0f;
  service.chunk_floats = 262144;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::vector<float> params;
  v1::ParameterLayout layout;
  v1::GetModelRequest request;
  request.set_round(4);
  ASSERT_TRUE(
      channel->GetModel(request, static_cast<int64_t>(service.model.size()), &params, &layout)
          .ok());
  EXPECT_EQ(params, service.model);
  ASSERT_EQ(layout.entries_size(), 1);
  EXPECT_EQ(layout.entries(0).name(), "w");
}

TEST(GrpcChannelTest, DownloadWithAGapIsAnError) {
  FakeCoordinator service;
  service.model.assign(1000, 1.0f);
  service.chunk_floats = 100;
  service.gap = true;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::vector<float> params;
  v1::ParameterLayout layout;
  const absl::Status status = channel->GetModel(
      v1::GetModelRequest(), static_cast<int64_t>(service.model.size()), &params, &layout);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("gap"));
  EXPECT_TRUE(params.empty());
  // The channel stays usable.
  EXPECT_TRUE(channel->CheckIn(Request("c")).ok());
}

TEST(GrpcChannelTest, DownloadShorterThanAnnouncedIsAnError) {
  FakeCoordinator service;
  service.model.assign(1000, 1.0f);
  service.chunk_floats = 300;
  service.wrong_total = true;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::vector<float> params;
  v1::ParameterLayout layout;
  // The assignment agrees with the announced size; the stream then ends short.
  const absl::Status status = channel->GetModel(
      v1::GetModelRequest(), static_cast<int64_t>(service.model.size()) + 1, &params, &layout);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(params.empty());
}

// A server cannot choose how much the device allocates: a total_size other than the assignment's
// is refused on the first chunk.
TEST(GrpcChannelTest, DownloadOfAnotherSizeThanAssignedIsRefusedBeforeAllocating) {
  FakeCoordinator service;
  service.model.assign(1000, 1.0f);
  service.chunk_floats = 300;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::vector<float> params;
  v1::ParameterLayout layout;
  const absl::Status status = channel->GetModel(v1::GetModelRequest(), 999, &params, &layout);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("1000 values but the assignment's has 999"));
  EXPECT_TRUE(params.empty());
  EXPECT_EQ(params.capacity(), 0u);
}

std::string ArtifactBytes(size_t n) {
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 131 + 7) % 251);
  return bytes;
}

TEST(GrpcChannelTest, ArtifactDownloadReassemblesChunks) {
  FakeCoordinator service;
  service.artifact = ArtifactBytes(1000);
  service.artifact_chunk = 300;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::string bytes;
  v1::GetArtifactRequest request;
  request.set_sha256("abc");
  ASSERT_TRUE(channel->GetArtifact(request, 1000, &bytes).ok());
  EXPECT_EQ(bytes, service.artifact);
}

TEST(GrpcChannelTest, ArtifactDownloadBrokenMidwayResumesFromWhatArrived) {
  FakeCoordinator service;
  service.artifact = ArtifactBytes(1000);
  service.artifact_chunk = 300;
  service.artifact_fail_after = 600;  // the first stream breaks after two chunks
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::string bytes;
  v1::GetArtifactRequest request;
  absl::Status status = channel->GetArtifact(request, 1000, &bytes);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(bytes, service.artifact.substr(0, 600));
  request.set_offset(static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(channel->GetArtifact(request, 1000, &bytes).ok());
  EXPECT_EQ(bytes, service.artifact);
  absl::MutexLock lock(&service.mu);
  EXPECT_THAT(service.artifact_offsets, ::testing::ElementsAre(0, 600));
}

TEST(GrpcChannelTest, ArtifactOfAnotherSizeThanAssignedIsRefused) {
  FakeCoordinator service;
  service.artifact = ArtifactBytes(1000);
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::string bytes;
  absl::Status status = channel->GetArtifact(v1::GetArtifactRequest(), 10, &bytes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("1000 bytes but the assignment says 10"));
  EXPECT_TRUE(bytes.empty());
  // More bytes than the (correctly) announced size are refused too.
  {
    absl::MutexLock lock(&service.mu);
    service.artifact_extra = 5;
  }
  bytes.clear();
  status = channel->GetArtifact(v1::GetArtifactRequest(), 1000, &bytes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(bytes.empty());
}

TEST(GrpcChannelTest, DeclineReachesTheServer) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  v1::DeclineRequest request;
  request.set_client_id("c");
  request.set_reason(v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
  ASSERT_TRUE(channel->Decline(request).ok());
  absl::MutexLock lock(&service.mu);
  ASSERT_EQ(service.declines.size(), 1u);
  EXPECT_EQ(service.declines[0].reason(), v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
}

TEST(GrpcChannelTest, UploadArrivesIntact) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  std::vector<float> delta(300000);
  for (size_t i = 0; i < delta.size(); ++i) delta[i] = 1e-3f * static_cast<float>(i % 977) - 0.4f;
  v1::UpdateHeader header;
  header.set_client_id("client-000003");
  header.set_assignment_id("r2-c3");
  header.set_round(2);
  header.set_num_examples(600);
  header.set_total_size(static_cast<int64_t>(delta.size()));
  header.set_train_loss(0.75);
  auto response = channel->UploadUpdate(header, delta);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->duplicate());
  absl::MutexLock lock(&service.mu);
  EXPECT_EQ(service.header.SerializeAsString(), header.SerializeAsString());
  EXPECT_EQ(service.uploaded, delta);
  EXPECT_THAT(service.upload_offsets, ::testing::ElementsAre(0, 262144));
}

TEST(GrpcChannelTest, UploadWithWrongTotalSizeIsRejectedLocally) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  v1::UpdateHeader header;
  header.set_total_size(3);
  std::vector<float> delta(2);
  EXPECT_EQ(channel->UploadUpdate(header, delta).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GrpcChannelTest, BearerTokenIsSentWhenSet) {
  FakeCoordinator service;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  ConnectionOptions options = Insecure(server);
  Connect(options)->CheckIn(Request("a")).IgnoreError();
  options.bearer_token = "s3cret-token";
  auto channel = Connect(options);
  ASSERT_TRUE(channel->CheckIn(Request("b")).ok());
  std::vector<float> params;
  v1::ParameterLayout layout;
  channel
      ->GetModel(v1::GetModelRequest(), static_cast<int64_t>(service.model.size()), &params,
                 &layout)
      .IgnoreError();
  absl::MutexLock lock(&service.mu);
  EXPECT_THAT(service.authorization,
              ::testing::ElementsAre("", "Bearer s3cret-token", "Bearer s3cret-token"));
}

TEST(GrpcChannelTest, CallTimeoutGivesDeadlineExceeded) {
  FakeCoordinator service;
  service.block_check_in = true;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  ConnectionOptions options = Insecure(server);
  options.call_timeout = absl::Milliseconds(300);
  auto response = Connect(options)->CheckIn(Request("a"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded) << response.status();
}

TEST(GrpcChannelTest, CancelStopsTheInFlightCallAndLaterCalls) {
  FakeCoordinator service;
  service.block_check_in = true;
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());
  auto channel = Connect(Insecure(server));
  absl::Status status;
  std::thread caller([&] { status = channel->CheckIn(Request("a")).status(); });
  service.check_in_entered.WaitForNotification();
  channel->Cancel();
  caller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(channel->CheckIn(Request("a")).status().code(), absl::StatusCode::kCancelled);
  std::vector<float> params;
  v1::ParameterLayout layout;
  EXPECT_EQ(channel
                ->GetModel(v1::GetModelRequest(), static_cast<int64_t>(service.model.size()),
                           &params, &layout)
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(channel->UploadUpdate(v1::UpdateHeader(), {}).status().code(),
            absl::StatusCode::kCancelled);
}

TEST(GrpcChannelTest, NoServerIsUnavailable) {
  int port = 0;
  {
    FakeCoordinator service;
    TestServer server(&service, grpc::InsecureServerCredentials());
    ASSERT_TRUE(server.ok());
    port = std::stoi(server.address().substr(server.address().rfind(':') + 1));
  }
  ConnectionOptions options;
  options.server = absl::StrCat("127.0.0.1:", port);
  options.insecure = true;
  options.call_timeout = absl::Seconds(20);
  EXPECT_EQ(Connect(options)->CheckIn(Request("a")).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(GrpcChannelTest, ConnectRejectsBadOptions) {
  ConnectionOptions options;
  options.server = "127.0.0.1:1";
  auto neither = ConnectGrpc(options);
  EXPECT_EQ(neither.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(neither.status().message(), HasSubstr("--tls-ca"));
  EXPECT_THAT(neither.status().message(), HasSubstr("--insecure"));

  options.tls_ca_file = "/nonexistent/fedkit/ca.pem";
  auto missing = ConnectGrpc(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/fedkit/ca.pem"));

  options.insecure = true;
  auto both = ConnectGrpc(options);
  EXPECT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("--insecure"));

  ConnectionOptions no_server;
  no_server.insecure = true;
  EXPECT_THAT(ConnectGrpc(no_server).status().message(), HasSubstr("--server"));
}

// The whole loop over a real gRPC connection: check in, download, train, upload, finish.
TEST(GrpcChannelTest, FederatedClientRunsARoundOverGrpc) {
  const data::DatasetInfo info{{4}, 2};
  data::Examples examples;
  examples.feature_dim = 4;
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 4; ++j) examples.features.push_back(0.1f * ((i * 7 + j * 3) % 11) - 0.5f);
    examples.labels.push_back(i % 2);
  }
  auto reference = *models::CreateModel("logreg", info, 5);
  const ParameterLayout layout = models::LayoutOf(*reference);

  FakeCoordinator service;
  service.model = models::FlattenParameters(*reference);
  service.chunk_floats = 3;
  for (const auto& e : layout.entries) {
    auto* entry = service.layout.add_entries();
    entry->set_name(e.name);
    for (int64_t d : e.shape) entry->add_shape(d);
  }
  std::atomic<int> check_ins{0};
  service.check_in_script = [&](const v1::CheckInRequest& request, v1::CheckInResponse* response) {
    if (check_ins++ > 0) {
      response->mutable_finished()->set_rounds_completed(1);
      return grpc::Status::OK;
    }
    v1::RoundAssignment* a = response->mutable_assignment();
    a->set_round(1);
    a->set_assignment_id("r1");
    a->set_model_name("logreg");
    a->mutable_plan()->set_local_epochs(1);
    a->mutable_plan()->set_batch_size(5);
    a->mutable_plan()->set_learning_rate(0.1);
    a->mutable_plan()->set_run_seed(9);
    a->set_model_size(layout.size());
    *a->mutable_layout() = service.layout;
    return grpc::Status::OK;
  };
  TestServer server(&service, grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.ok());

  FederatedClientOptions options;
  options.client_id = "client-000002";
  options.client_index = 2;
  options.model_name = "logreg";
  FederatedClient client(options, Connect(Insecure(server)),
                         *models::CreateModel("logreg", info, 0), examples);
  ASSERT_TRUE(client.Run().ok());
  EXPECT_EQ(client.rounds_contributed(), 1);

  LocalTrainer trainer(*models::CreateModel("logreg", info, 1));
  TrainingPlan plan{.local_epochs = 1, .batch_size = 5, .learning_rate = 0.1};
  auto expected = trainer.Train(service.model, examples, plan, LocalTrainingSeed(9, 1, 2));
  ASSERT_TRUE(expected.ok()) << expected.status();
  absl::MutexLock lock(&service.mu);
  EXPECT_EQ(service.uploads, 1);
  EXPECT_EQ(service.header.assignment_id(), "r1");
  EXPECT_EQ(service.header.num_examples(), 20);
  EXPECT_EQ(service.uploaded, expected->delta);
}

// TLS with certificates from deploy/make-certs.sh (CA, server for localhost/127.0.0.1, client).
class GrpcTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string((std::filesystem::temp_directory_path() /
                            absl::StrCat("fedkit_grpc_channel_test_", getpid()))
                               .string());
    const std::string command =
        absl::StrCat("bash '", FEDKIT_SOURCE_DIR, "/deploy/make-certs.sh' '", *dir_,
                     "' localhost 127.0.0.1 >/dev/null 2>&1");
    certs_ok_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
  }
  void SetUp() override {
    if (!certs_ok_) GTEST_SKIP() << "deploy/make-certs.sh failed (no openssl?)";
  }

  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }

  static std::shared_ptr<grpc::ServerCredentials> ServerTls(bool require_client_cert) {
    grpc::SslServerCredentialsOptions options(
        require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    options.pem_root_certs = ReadFile(Path("ca.pem"));
    options.pem_key_cert_pairs.push_back(
        {ReadFile(Path("server.key")), ReadFile(Path("server.pem"))});
    return grpc::SslServerCredentials(options);
  }

  static ConnectionOptions Tls(const TestServer& server) {
    ConnectionOptions o;
    o.server = server.address();
    o.tls_ca_file = Path("ca.pem");
    o.call_timeout = absl::Seconds(20);
    return o;
  }

  static std::string* dir_;
  static bool certs_ok_;
};

std::string* GrpcTlsTest::dir_ = nullptr;
bool GrpcTlsTest::certs_ok_ = false;

TEST_F(GrpcTlsTest, TlsWithTheRightCaWorks) {
  FakeCoordinator service;
  TestServer server(&service, ServerTls(false));
  ASSERT_TRUE(server.ok());
  auto response = Connect(Tls(server))->CheckIn(Request("tls"));
  EXPECT_TRUE(response.ok()) << response.status();
}

TEST_F(GrpcTlsTest, ServerNameOverrideIsUsed) {
  FakeCoordinator service;
  TestServer server(&service, ServerTls(false));
  ASSERT_TRUE(server.ok());
  ConnectionOptions options = Tls(server);
  options.tls_server_name = "localhost";
  EXPECT_TRUE(Connect(options)->CheckIn(Request("tls")).ok());
  options.tls_server_name = "not-the-server.example";
  EXPECT_EQ(Connect(options)->CheckIn(Request("tls")).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(GrpcTlsTest, PlaintextToATlsServerIsUnavailable) {
  FakeCoordinator service;
  TestServer server(&service, ServerTls(false));
  ASSERT_TRUE(server.ok());
  ConnectionOptions options;
  options.server = server.address();
  options.insecure = true;
  options.call_timeout = absl::Seconds(20);
  EXPECT_EQ(Connect(options)->CheckIn(Request("a")).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(GrpcTlsTest, MutualTlsNeedsTheClientCertificate) {
  FakeCoordinator service;
  TestServer server(&service, ServerTls(true));
  ASSERT_TRUE(server.ok());
  ConnectionOptions options = Tls(server);
  EXPECT_EQ(Connect(options)->CheckIn(Request("a")).status().code(),
            absl::StatusCode::kUnavailable);
  options.tls_cert_file = Path("client.pem");
  options.tls_key_file = Path("client.key");
  auto response = Connect(options)->CheckIn(Request("a"));
  EXPECT_TRUE(response.ok()) << response.status();
}

TEST_F(GrpcTlsTest, ClientCertificateWithoutKeyIsRejected) {
  ConnectionOptions options;
  options.server = "127.0.0.1:1";
  options.tls_ca_file = Path("ca.pem");
  options.tls_cert_file = Path("client.pem");
  auto channel = ConnectGrpc(options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(channel.status().message(), HasSubstr("--tls-key"));
  options.tls_key_file = Path("missing.key");
  channel = ConnectGrpc(options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(channel.status().message(), HasSubstr("missing.key"));
}

}  // namespace
}  // namespace fedkit::client
