#include "client/federated_client.h"

#include <atomic>
#include <deque>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "artifacts/artifact_files.h"
#include "artifacts/signing.h"
#include "client/local_trainer.h"
#include "client/model_source.h"
#include "client/testing/argmax_examples.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "models/torchscript_model.h"
#include "proto/layout_conversion.h"
#include "torch/torch.h"

namespace fedkit::client {
namespace {

const data::DatasetInfo kInfo = testdata::kArgmaxInfo;
constexpr uint64_t kRunSeed = 42;
constexpr int64_t kClientIndex = 7;

data::Examples MakeExamples(int n, uint32_t seed) { return testdata::ArgmaxExamples(n, seed); }

std::shared_ptr<models::Model> MakeModel(const std::string& name, uint64_t seed) {
  return *models::CreateModel(name, kInfo, seed);
}

v1::CheckInResponse RetryLaterResponse(double seconds) {
  v1::CheckInResponse r;
  r.mutable_retry_later()->set_retry_after_seconds(seconds);
  r.mutable_retry_later()->set_reason("waiting for clients");
  return r;
}

v1::CheckInResponse FinishedResponse() {
  v1::CheckInResponse r;
  r.mutable_finished()->set_rounds_completed(1);
  return r;
}

v1::TrainingPlan Plan() {
  v1::TrainingPlan plan;
  plan.set_local_epochs(2);
  plan.set_batch_size(8);
  plan.set_learning_rate(0.3);
  plan.set_run_seed(kRunSeed);
  return plan;
}

v1::CheckInResponse AssignmentResponse(int64_t round, const models::Model& model) {
  v1::CheckInResponse r;
  v1::RoundAssignment* a = r.mutable_assignment();
  a->set_round(round);
  a->set_assignment_id("a" + std::to_string(round));
  a->set_model_name("logreg");
  *a->mutable_plan() = Plan();
  const ParameterLayout layout = models::LayoutOf(model);
  a->set_model_size(layout.size());
  *a->mutable_layout() = LayoutToProto(layout);
  a->set_seconds_to_deadline(60);
  return r;
}

struct Upload {
  std::string header_bytes;
  v1::UpdateHeader header;
  std::vector<float> delta;
};

// A scripted coordinator: check-in answers and upload results are consumed in order; when a script
// runs out, check-in says "finished" and uploads succeed.
class FakeChannel : public CoordinatorChannel {
 public:
  explicit FakeChannel(std::vector<float> global) : global_(std::move(global)) {}

  std::deque<absl::StatusOr<v1::CheckInResponse>> check_ins;
  std::deque<absl::Status> get_model_results;
  std::deque<absl::StatusOr<v1::UploadResponse>> upload_results;
  v1::ParameterLayout download_layout;
  std::vector<v1::CheckInRequest> check_in_requests;
  std::vector<v1::GetModelRequest> get_model_requests;
  std::vector<Upload> uploads;
  absl::Notification first_check_in;
  bool cancel_called = false;

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    check_in_requests.push_back(request);
    if (!first_check_in.HasBeenNotified()) first_check_in.Notify();
    if (check_ins.empty()) return FinishedResponse();
    auto r = std::move(check_ins.front());
    check_ins.pop_front();
    return r;
  }

  // When not empty, successful downloads serve these in order (then the constructor's).
  std::deque<std::vector<float>> globals;

  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override {
    get_model_requests.push_back(request);
    if (!get_model_results.empty()) {
      absl::Status s = get_model_results.front();
      get_model_results.pop_front();
      if (!s.ok()) {
        // A stream broken mid-way leaves what had arrived, garbage as far as the device knows.
        parameters->assign(global_.size() / 2, 1e6f);
        return s;
      }
    }
    if (!globals.empty()) {
      *parameters = globals.front();
      globals.pop_front();
      *layout = download_layout;
      return absl::OkStatus();
    }
    *parameters = global_;
    *layout = download_layout;
    return absl::OkStatus();
  }

  // GetArtifact serves `artifact`; each status in artifact_failures breaks one stream after
  // half of what is left.
  std::string artifact;
  std::deque<absl::Status> artifact_failures;
  std::vector<v1::GetArtifactRequest> get_artifact_requests;
  std::vector<v1::DeclineRequest> declines;

  absl::Status GetArtifact(const v1::GetArtifactRequest& request, int64_t expected_size,
                           std::string* bytes) override {
    get_artifact_requests.push_back(request);
    EXPECT_EQ(request.offset(), static_cast<int64_t>(bytes->size()));
    EXPECT_EQ(expected_size, static_cast<int64_t>(artifact.size()));
    const std::string rest = artifact.substr(request.offset());
    if (!artifact_failures.empty()) {
      absl::Status s = artifact_failures.front();
      artifact_failures.pop_front();
      bytes->append(rest.substr(0, rest.size() / 2));
      return s;
    }
    bytes->append(rest);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override {
    declines.push_back(request);
    return v1::DeclineResponse();
  }

  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override {
    uploads.push_back(
        Upload{header.SerializeAsString(), header, std::vector<float>(delta.begin(), delta.end())});
    if (upload_results.empty()) return v1::UploadResponse();
    auto r = std::move(upload_results.front());
    upload_results.pop_front();
    return r;
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancel_called = true;
  }

 private:
  absl::Mutex mu_;
  std::vector<float> global_;
};

class FederatedClientTest : public ::testing::Test {
 protected:
  void SetUp() override { models::UseSingleThreadedCompute(); }

  FederatedClientOptions Options() const {
    FederatedClientOptions o;
    o.client_id = "client-000007";
    o.client_index = kClientIndex;
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.give_up_after = absl::Seconds(30);
    o.jitter_seed = 3;
    return o;
  }

  // The fake and a client that owns it; `fake` stays valid while `client` lives.
  std::unique_ptr<FederatedClient> MakeClient(FederatedClientOptions options,
                                              std::shared_ptr<models::Model> model = nullptr) {
    auto channel = std::make_unique<FakeChannel>(global_);
    fake = channel.get();
    return std::make_unique<FederatedClient>(std::move(options), std::move(channel),
                                             model ? model : MakeModel("logreg", 99), examples_);
  }

  ClientUpdate Expected(int64_t round) {
    LocalTrainer trainer(MakeModel("logreg", 5));
    TrainingPlan plan{.local_epochs = 2, .batch_size = 8, .learning_rate = 0.3};
    auto update =
        trainer.Train(global_, examples_, plan, LocalTrainingSeed(kRunSeed, round, kClientIndex));
    EXPECT_TRUE(update.ok()) << update.status();
    return *update;
  }

  data::Examples examples_ = MakeExamples(40, 1);
  std::vector<float> global_ = models::FlattenParameters(*MakeModel("logreg", 11));
  std::shared_ptr<models::Model> reference_ = MakeModel("logreg", 0);
  FakeChannel* fake = nullptr;
};

TEST_F(FederatedClientTest, RetryLaterThenAssignmentThenFinished) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(RetryLaterResponse(0.001));
  fake->check_ins.push_back(AssignmentResponse(3, *reference_));
  fake->check_ins.push_back(FinishedResponse());
  fake->download_layout = LayoutToProto(models::LayoutOf(*reference_));

  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->rounds_contributed(), 1);

  ASSERT_EQ(fake->check_in_requests.size(), 3u);
  const v1::CheckInRequest& req = fake->check_in_requests[0];
  EXPECT_EQ(req.client_id(), "client-000007");
  EXPECT_EQ(req.api_version(), 1);
  EXPECT_EQ(req.capabilities().num_examples(), 40);

  ASSERT_EQ(fake->get_model_requests.size(), 1u);
  EXPECT_EQ(fake->get_model_requests[0].assignment_id(), "a3");
  EXPECT_EQ(fake->get_model_requests[0].round(), 3);

  ASSERT_EQ(fake->uploads.size(), 1u);
  const ClientUpdate expected = Expected(3);
  const Upload& up = fake->uploads[0];
  EXPECT_EQ(up.header.client_id(), "client-000007");
  EXPECT_EQ(up.header.assignment_id(), "a3");
  EXPECT_EQ(up.header.round(), 3);
  EXPECT_EQ(up.header.num_examples(), 40);
  EXPECT_EQ(up.header.total_size(), static_cast<int64_t>(expected.delta.size()));
  EXPECT_DOUBLE_EQ(up.header.train_loss(), expected.train_loss);
  EXPECT_EQ(up.delta, expected.delta);  // bit for bit: same seed, same data, same global model
}

TEST_F(FederatedClientTest, UploadRetriedWithSameBytesAfterTransportErrorsAndCountedOnce) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->upload_results.push_back(absl::UnavailableError("link down"));
  fake->upload_results.push_back(absl::UnavailableError("link down"));
  v1::UploadResponse duplicate;
  duplicate.set_duplicate(true);  // the first attempt had arrived after all
  fake->upload_results.push_back(duplicate);

  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->rounds_contributed(), 1);
  ASSERT_EQ(fake->uploads.size(), 3u);
  for (const Upload& up : fake->uploads) {
    EXPECT_EQ(up.header_bytes, fake->uploads[0].header_bytes);
    EXPECT_EQ(up.delta, fake->uploads[0].delta);
  }
  EXPECT_EQ(fake->uploads[0].delta, Expected(1).delta);
  EXPECT_EQ(fake->get_model_requests.size(), 1u);  // no re-download, no re-training
}

TEST_F(FederatedClientTest, FailedPreconditionOnUploadGivesUpTheRoundAndChecksInAgain) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->check_ins.push_back(RetryLaterResponse(0));
  fake->upload_results.push_back(absl::FailedPreconditionError("round 1 is closed"));

  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->rounds_contributed(), 0);
  EXPECT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->check_in_requests.size(), 3u);  // assignment, retry-later, finished
}

TEST_F(FederatedClientTest, InvalidArgumentOnUploadChecksInAgainAndLaterRoundsCount) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->check_ins.push_back(AssignmentResponse(2, *reference_));
  fake->upload_results.push_back(absl::InvalidArgumentError("bad update"));

  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->rounds_contributed(), 1);
  ASSERT_EQ(fake->uploads.size(), 2u);
  EXPECT_EQ(fake->uploads[1].header.round(), 2);
  EXPECT_EQ(fake->uploads[1].delta, Expected(2).delta);
}

TEST_F(FederatedClientTest, ModelSizeMismatchIsFailedPreconditionWithoutUpload) {
  auto client = MakeClient(Options());
  v1::CheckInResponse a = AssignmentResponse(1, *reference_);
  a.mutable_assignment()->set_model_size(a.assignment().model_size() + 1);
  fake->check_ins.push_back(a);

  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(fake->uploads.empty());
  EXPECT_EQ(client->rounds_contributed(), 0);
}

TEST_F(FederatedClientTest, LayoutMismatchIsFailedPreconditionWithoutUpload) {
  auto client = MakeClient(Options());
  v1::CheckInResponse a = AssignmentResponse(1, *reference_);
  // Same number of values, different shapes: [3, 6] + [3] -> [6, 3] + [3].
  auto* entry = a.mutable_assignment()->mutable_layout()->mutable_entries(0);
  ASSERT_EQ(entry->shape_size(), 2);
  std::swap(*entry->mutable_shape()->Mutable(0), *entry->mutable_shape()->Mutable(1));
  fake->check_ins.push_back(a);

  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(fake->uploads.empty());
  EXPECT_TRUE(fake->get_model_requests.empty());
}

TEST_F(FederatedClientTest, OtherModelNameIsFailedPrecondition) {
  FederatedClientOptions options = Options();
  options.model_name = "mlp";
  auto client = MakeClient(options);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));  // names logreg

  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(fake->uploads.empty());
  ASSERT_FALSE(fake->check_in_requests.empty());
  EXPECT_THAT(fake->check_in_requests[0].capabilities().model_names(),
              ::testing::ElementsAre("mlp"));
}

TEST_F(FederatedClientTest, UnauthenticatedIsReturned) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(absl::UnauthenticatedError("bad token"));
  EXPECT_EQ(client->Run().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(fake->check_in_requests.size(), 1u);
}

TEST_F(FederatedClientTest, PermissionDeniedOnUploadIsReturned) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->upload_results.push_back(absl::PermissionDeniedError("not enrolled"));
  EXPECT_EQ(client->Run().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client->rounds_contributed(), 0);
}

TEST_F(FederatedClientTest, TransportErrorsOnCheckInAndDownloadAreRetried) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(absl::UnavailableError("connection refused"));
  fake->check_ins.push_back(absl::DeadlineExceededError("slow"));
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->get_model_results.push_back(absl::UnavailableError("reset"));
  fake->get_model_results.push_back(absl::DataLossError("gap"));

  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->rounds_contributed(), 1);
  EXPECT_EQ(fake->get_model_requests.size(), 3u);
  EXPECT_EQ(fake->uploads.size(), 1u);
}

TEST_F(FederatedClientTest, CancelInterruptsALongRetryLaterWait) {
  auto client = MakeClient(Options());
  fake->check_ins.push_back(RetryLaterResponse(3600));
  absl::Status status;
  std::thread runner([&] { status = client->Run(); });
  fake->first_check_in.WaitForNotification();
  client->Cancel();
  client->Cancel();  // idempotent
  runner.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_TRUE(fake->cancel_called);
}

TEST_F(FederatedClientTest, CancelBeforeRunReturnsCancelled) {
  auto client = MakeClient(Options());
  client->Cancel();
  EXPECT_EQ(client->Run().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(fake->check_in_requests.empty());
}

TEST_F(FederatedClientTest, GivesUpWithTheLastErrorWhenNothingSucceeds) {
  FederatedClientOptions options = Options();
  options.give_up_after = absl::Milliseconds(50);
  auto client = MakeClient(options);
  for (int i = 0; i < 100000; ++i) fake->check_ins.push_back(absl::UnavailableError("down"));
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_GT(fake->check_in_requests.size(), 1u);
}

TEST_F(FederatedClientTest, ReportedExampleCountIsCappedByTheAssignment) {
  auto client = MakeClient(Options());
  v1::CheckInResponse a = AssignmentResponse(1, *reference_);
  a.mutable_assignment()->set_max_examples(25);
  fake->check_ins.push_back(a);
  ASSERT_TRUE(client->Run().ok());
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->uploads[0].header.num_examples(), 25);
}

// A probe whose clock advances one second per reading, with fixed CPU, memory and no RAPL.
class SteppingProbe final : public DeviceProbe {
 public:
  double MonotonicSeconds() override { return seconds_++; }
  std::optional<double> ProcessCpuSeconds() override { return cpu_ += 0.75; }
  std::optional<int64_t> PeakResidentBytes() override { return int64_t{64} << 20; }
  std::optional<EnergyReading> Energy() override { return std::nullopt; }

 private:
  double seconds_ = 0;
  double cpu_ = 0;
};

TEST_F(FederatedClientTest, TheUploadCarriesTheRoundsTelemetry) {
  FederatedClientOptions options = Options();
  options.telemetry_probe = std::make_shared<SteppingProbe>();
  auto client = MakeClient(options);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  ASSERT_TRUE(client->Run().ok());
  ASSERT_EQ(fake->uploads.size(), 1u);
  ASSERT_TRUE(fake->uploads[0].header.has_telemetry());
  const v1::DeviceTelemetry& t = fake->uploads[0].header.telemetry();
  // Clock readings: assigned 0, model ready 1, training 2 to 3.
  EXPECT_DOUBLE_EQ(t.model_load_seconds(), 1);
  EXPECT_DOUBLE_EQ(t.training_seconds(), 1);
  EXPECT_DOUBLE_EQ(t.examples_per_second(), 40 * 2);  // 40 examples, 2 epochs
  EXPECT_DOUBLE_EQ(t.cpu_seconds(), 0.75);
  EXPECT_EQ(t.peak_memory_bytes(), int64_t{64} << 20);
  EXPECT_FALSE(t.has_energy_joules());
  EXPECT_FALSE(t.has_upload_bytes());  // the fake channel does not count bytes
}

TEST_F(FederatedClientTest, TelemetryCanBeSwitchedOff) {
  FederatedClientOptions options = Options();
  options.send_telemetry = false;
  auto client = MakeClient(options);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  ASSERT_TRUE(client->Run().ok());
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_FALSE(fake->uploads[0].header.has_telemetry());
  EXPECT_EQ(fake->uploads[0].delta, Expected(1).delta);
}

// ---- A device without a model of its own: the coordinator's artifact ----

// The model's outputs on a fixed batch with `snapshot`'s parameters loaded into a fresh instance of
// the architecture: what an app's inference would give.
std::vector<float> Predictions(const GlobalModelSnapshot& snapshot, models::Model& model,
                               const data::Examples& batch) {
  EXPECT_TRUE(LoadGlobalModel(snapshot, model).ok());
  torch::NoGradGuard no_grad;
  model.eval();
  const torch::Tensor x = torch::from_blob(const_cast<float*>(batch.features.data()),
                                           {batch.size(), batch.feature_dim}, torch::kFloat32);
  const torch::Tensor out = model.forward(x).contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

// Predictions from LatestModel() (empty when there is none yet).
std::vector<float> LatestPredictions(const FederatedClient& client, models::Model& model,
                                     const data::Examples& batch) {
  absl::StatusOr<GlobalModelSnapshot> latest = client.LatestModel();
  if (!latest.ok()) {
    EXPECT_EQ(latest.status().code(), absl::StatusCode::kNotFound);
    return {};
  }
  return Predictions(*latest, model, batch);
}

// The app's conditions go false in the middle of a round's training: the client stops after the
// current minibatch, declines DEVICE_NOT_ELIGIBLE, uploads nothing for that round, and checks in
// again once eligible. Before each check-in it asks first and does not call the coordinator while
// the device is not eligible.
TEST_F(FederatedClientTest, IneligibleMidTrainingStopsWithinAMinibatchAndDropsOut) {
  constexpr int64_t kRoundOneSteps = 10;  // 40 examples, batch 8, 2 epochs
  constexpr int64_t kStepsBeforeIneligible = 3;
  FederatedClient* self = nullptr;
  FederatedClientOptions options = Options();
  // Unplugged after round 2's third minibatch, until the coordinator was told.
  options.eligibility = [&] {
    return self->minibatches_trained() < kRoundOneSteps + kStepsBeforeIneligible ||
           !fake->declines.empty();
  };
  auto client = MakeClient(options);
  self = client.get();
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->check_ins.push_back(AssignmentResponse(2, *reference_));
  fake->check_ins.push_back(RetryLaterResponse(0));
  fake->check_ins.push_back(FinishedResponse());
  ASSERT_TRUE(client->Run().ok());

  // Stopped right after the minibatch during which it became ineligible.
  EXPECT_EQ(client->minibatches_trained(), kRoundOneSteps + kStepsBeforeIneligible);
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->uploads[0].header.round(), 1);
  ASSERT_EQ(fake->declines.size(), 1u);
  EXPECT_EQ(fake->declines[0].reason(), v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  EXPECT_EQ(fake->declines[0].assignment_id(), "a2");
  EXPECT_EQ(fake->declines[0].round(), 2);
  EXPECT_EQ(fake->check_in_requests.size(), 4u);  // it went on after dropping out
  EXPECT_EQ(client->rounds_contributed(), 1);
}

TEST_F(FederatedClientTest, NotEligibleBeforeCheckInDoesNotCallTheCoordinator) {
  int polls = 0;
  FederatedClientOptions options = Options();
  options.eligibility = [&] {
    ++polls;
    EXPECT_TRUE(fake->check_in_requests.empty() || polls > 5);
    return polls > 5;
  };
  auto client = MakeClient(options);
  fake->check_ins.push_back(FinishedResponse());
  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(polls, 6);
  EXPECT_EQ(fake->check_in_requests.size(), 1u);
}

TEST_F(FederatedClientTest, CancelInterruptsTheWaitForEligibility) {
  FederatedClientOptions options = Options();
  options.initial_backoff = absl::Hours(1);
  options.max_backoff = absl::Hours(1);
  absl::Notification polled;
  options.eligibility = [&] {
    if (!polled.HasBeenNotified()) polled.Notify();
    return false;
  };
  auto client = MakeClient(options);
  std::thread canceller([&] {
    polled.WaitForNotification();
    client->Cancel();
  });
  EXPECT_EQ(client->Run().code(), absl::StatusCode::kCancelled);
  canceller.join();
  EXPECT_TRUE(fake->check_in_requests.empty());
}

// The plan's budget reaches LocalTrainer: the upload is the update of the steps done, weighted by
// the examples they used.
TEST_F(FederatedClientTest, ThePlansStepBudgetIsHonoured) {
  auto client = MakeClient(Options());
  v1::CheckInResponse assignment = AssignmentResponse(1, *reference_);
  assignment.mutable_assignment()->mutable_plan()->set_max_steps(3);
  fake->check_ins.push_back(assignment);
  ASSERT_TRUE(client->Run().ok());
  EXPECT_EQ(client->minibatches_trained(), 3);
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->uploads[0].header.num_examples(), 24);
  LocalTrainer trainer(MakeModel("logreg", 5));
  TrainingPlan plan{.local_epochs = 2, .batch_size = 8, .learning_rate = 0.3, .max_steps = 3};
  auto expected =
      trainer.Train(global_, examples_, plan, LocalTrainingSeed(kRunSeed, 1, kClientIndex));
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(fake->uploads[0].delta, expected->delta);
}

// Limits are advertised, and an assignment over max_model_bytes is refused before any download.
TEST_F(FederatedClientTest, AModelOverTheDevicesLimitIsRefusedAndDeclined) {
  FederatedClientOptions options = Options();
  const int64_t model_bytes = 4 * models::LayoutOf(*reference_).size();
  options.max_model_bytes = model_bytes - 1;
  options.memory_bytes = 1 << 20;
  auto client = MakeClient(options);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::StartsWith("round 1: "));
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("max_model_bytes"));
  ASSERT_EQ(fake->check_in_requests.size(), 1u);
  EXPECT_EQ(fake->check_in_requests[0].capabilities().max_model_bytes(), model_bytes - 1);
  EXPECT_EQ(fake->check_in_requests[0].capabilities().memory_bytes(), 1 << 20);
  ASSERT_EQ(fake->declines.size(), 1u);
  EXPECT_EQ(fake->declines[0].reason(), v1::DeclineRequest::ARTIFACT_TOO_LARGE);
  EXPECT_TRUE(fake->get_model_requests.empty());
  EXPECT_TRUE(fake->uploads.empty());

  // At the limit it fits.
  options.max_model_bytes = model_bytes;
  auto fits = MakeClient(options);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  EXPECT_TRUE(fits->Run().ok());
  EXPECT_EQ(fake->uploads.size(), 1u);
}

TEST(ModelBytesTest, FourBytesPerParameterOrTheArtifactIfLarger) {
  EXPECT_EQ(ModelBytes(1000, 0), 4000);
  EXPECT_EQ(ModelBytes(1000, 5000), 5000);
  EXPECT_EQ(ModelBytes(int64_t{1} << 62, 0), std::numeric_limits<int64_t>::max());
}

// LatestModel() is the last verified download, whatever happens after it: a download corrupted
// mid-stream and an interrupted round (the device unplugged mid-training, then Cancel()) leave the
// predictions an app gets from it exactly as they were; the half-trained model is never exposed.
TEST_F(FederatedClientTest, LatestModelSurvivesACorruptDownloadAndAnInterruptedRound) {
  const data::Examples batch = MakeExamples(6, 77);
  auto inference = MakeModel("logreg", 1234);
  std::vector<float> g1 = global_;
  std::vector<float> g3 = global_;
  for (float& v : g3) v = v * 0.5f + 0.01f;
  GlobalModelSnapshot s1{"logreg", 1, models::LayoutOf(*reference_),
                         std::make_shared<const std::vector<float>>(g1)};
  GlobalModelSnapshot s3 = s1;
  s3.round = 3;
  s3.parameters = std::make_shared<const std::vector<float>>(g3);
  const std::vector<float> p1 = Predictions(s1, *inference, batch);
  const std::vector<float> p3 = Predictions(s3, *inference, batch);
  ASSERT_NE(p1, p3);

  FederatedClient* self = nullptr;
  std::shared_ptr<models::Model> trained = MakeModel("logreg", 99);
  // What the app saw, keyed by the check-ins made so far and the minibatches trained.
  std::vector<std::pair<size_t, std::vector<float>>> before_check_in;
  std::vector<float> during_round_3;
  FederatedClientOptions options = Options();
  options.eligibility = [&] {
    const int64_t steps = self->minibatches_trained();
    if (steps == 0 || fake->get_model_requests.size() != 4) {
      // Not training round 3: record what a check-in would see.
      before_check_in.emplace_back(fake->check_in_requests.size(),
                                   LatestPredictions(*self, *inference, batch));
      return true;
    }
    // Round 3's training: one minibatch, then the device is unplugged and the app quits.
    if (steps >= 11) {
      during_round_3 = LatestPredictions(*self, *inference, batch);
      self->Cancel();
    }
    return true;
  };
  auto client = MakeClient(options, trained);
  self = client.get();
  fake->download_layout = LayoutToProto(models::LayoutOf(*reference_));
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));
  fake->check_ins.push_back(AssignmentResponse(2, *reference_));
  fake->check_ins.push_back(AssignmentResponse(3, *reference_));
  fake->get_model_results = {absl::OkStatus(), absl::DataLossError("stream broken"),
                             absl::FailedPreconditionError("round closed"), absl::OkStatus()};
  fake->globals = {g1, g3};
  EXPECT_EQ(client->Run().code(), absl::StatusCode::kCancelled);

  // Before the first download: none. After round 1: g1. After round 2's corrupt download (and its
  // refused retry): still g1.
  ASSERT_GE(before_check_in.size(), 3u);
  EXPECT_EQ(before_check_in[0].first, 0u);
  EXPECT_TRUE(before_check_in[0].second.empty());
  bool saw_after_corrupt = false;
  for (const auto& [check_ins, predictions] : before_check_in) {
    if (check_ins == 0) continue;
    EXPECT_EQ(predictions, p1) << "after " << check_ins << " check-ins";
    saw_after_corrupt |= check_ins == 2 && fake->get_model_requests.size() >= 3;
  }
  EXPECT_TRUE(saw_after_corrupt);
  ASSERT_EQ(fake->get_model_requests.size(), 4u);
  // Round 3 downloaded g3, then training was interrupted: before and after, g3's predictions.
  EXPECT_EQ(during_round_3, p3);
  EXPECT_EQ(LatestPredictions(*client, *inference, batch), p3);
  EXPECT_EQ(client->LatestModel()->round, 3);
  // The trained instance moved away from g3; the app never gets those parameters.
  EXPECT_NE(models::FlattenParameters(*trained), g3);
  EXPECT_EQ(fake->uploads.size(), 1u);  // round 1 only
}

class ArtifactClientTest : public FederatedClientTest {
 protected:
  void SetUp() override {
    FederatedClientTest::SetUp();
    bytes_ = *artifacts::ReadFileBytes(std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/tiny_2nn.pt");
    key_ = *artifacts::GenerateKeyPair();
    file_model_ = *models::TorchScriptModel::Load(
        std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/tiny_2nn.pt", kInfo);
    artifact_global_ = models::FlattenParameters(*file_model_);
    cache_dir_ = (std::filesystem::path(::testing::TempDir()) /
                  ("fedkit_client_cache_" +
                   std::string(::testing::UnitTest::GetInstance()->current_test_info()->name())))
                     .string();
    std::filesystem::remove_all(cache_dir_);
  }

  // Announces `announced` (hash and size) signed by `signer` (null: unsigned).
  v1::CheckInResponse ArtifactAssignmentResponse(
      const std::string& announced, const artifacts::KeyPair* signer,
      const artifacts::Sha256Digest* signed_digest = nullptr) {
    v1::CheckInResponse r = AssignmentResponse(1, *file_model_);
    v1::RoundAssignment* a = r.mutable_assignment();
    const std::string sha = artifacts::Sha256Hex(announced);
    a->set_model_name("torchscript:sha256:" + sha);
    v1::ModelArtifact* artifact = a->mutable_artifact();
    artifact->set_sha256(sha);
    artifact->set_size_bytes(static_cast<int64_t>(announced.size()));
    artifact->set_format("torchscript");
    if (signer != nullptr) {
      const artifacts::Sha256Digest digest =
          signed_digest != nullptr ? *signed_digest : artifacts::Sha256(announced);
      const artifacts::Signature sig = *artifacts::SignArtifactDigest(digest, signer->private_key);
      artifact->set_signature(std::string(sig.begin(), sig.end()));
      artifact->set_key_fingerprint(artifacts::Fingerprint(signer->public_key));
    }
    return r;
  }

  std::unique_ptr<FederatedClient> MakeArtifactClient(const artifacts::PublicKey& trusted,
                                                      const std::string& served) {
    auto channel = std::make_unique<FakeChannel>(artifact_global_);
    fake = channel.get();
    fake->artifact = served;
    AssignedModelOptions o;
    o.dataset = kInfo;
    o.trust.trusted_keys = {trusted};
    o.cache_dir = cache_dir_;
    return std::make_unique<FederatedClient>(Options(), std::move(channel),
                                             std::make_unique<AssignedModelSource>(o), examples_);
  }

  std::string bytes_;
  artifacts::KeyPair key_;
  std::shared_ptr<models::TorchScriptModel> file_model_;
  std::vector<float> artifact_global_;
  std::string cache_dir_;
};

TEST_F(ArtifactClientTest, DownloadsVerifiesAndTrainsTheAssignedArtifactThenUsesTheCache) {
  auto client = MakeArtifactClient(key_.public_key, bytes_);
  fake->check_ins.push_back(ArtifactAssignmentResponse(bytes_, &key_));
  fake->artifact_failures.push_back(absl::UnavailableError("link dropped"));
  ASSERT_TRUE(client->Run().ok());
  // One interrupted download, resumed where it broke.
  ASSERT_EQ(fake->get_artifact_requests.size(), 2u);
  EXPECT_EQ(fake->get_artifact_requests[0].offset(), 0);
  EXPECT_EQ(fake->get_artifact_requests[1].offset(), static_cast<int64_t>(bytes_.size() / 2));
  EXPECT_EQ(fake->get_artifact_requests[0].sha256(), artifacts::Sha256Hex(bytes_));
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_TRUE(fake->declines.empty());
  // What was trained is the file's model, exactly as a device holding the file trains it.
  LocalTrainer trainer(file_model_);
  TrainingPlan plan{.local_epochs = 2, .batch_size = 8, .learning_rate = 0.3};
  auto expected = trainer.Train(artifact_global_, examples_, plan,
                                LocalTrainingSeed(kRunSeed, 1, kClientIndex));
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(fake->uploads[0].delta, expected->delta);

  // The same device restarted: the artifact is in its cache, only the parameters travel.
  auto restarted = MakeArtifactClient(key_.public_key, bytes_);
  fake->check_ins.push_back(ArtifactAssignmentResponse(bytes_, &key_));
  ASSERT_TRUE(restarted->Run().ok());
  EXPECT_TRUE(fake->get_artifact_requests.empty());
  EXPECT_EQ(fake->get_model_requests.size(), 1u);
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->uploads[0].delta, expected->delta);
}

TEST_F(ArtifactClientTest, TamperedArtifactIsDeclinedAndNothingIsTrained) {
  std::string tampered = bytes_;
  tampered[tampered.size() / 3] ^= 0x20;
  const artifacts::Sha256Digest original = artifacts::Sha256(bytes_);
  auto client = MakeArtifactClient(key_.public_key, tampered);
  fake->check_ins.push_back(ArtifactAssignmentResponse(tampered, &key_, &original));
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::StartsWith("round 1: "));
  EXPECT_THAT(status.message(), ::testing::HasSubstr("signature does not verify"));
  ASSERT_EQ(fake->declines.size(), 1u);
  EXPECT_EQ(fake->declines[0].reason(), v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
  EXPECT_EQ(fake->declines[0].assignment_id(), "a1");
  EXPECT_EQ(fake->declines[0].client_id(), "client-000007");
  EXPECT_TRUE(fake->get_model_requests.empty());
  EXPECT_TRUE(fake->uploads.empty());
  EXPECT_FALSE(std::filesystem::exists(cache_dir_));
}

TEST_F(ArtifactClientTest, BytesOtherThanAnnouncedAreDeclinedAsAHashMismatch) {
  std::string substituted = bytes_;
  substituted[10] ^= 0x01;
  auto client = MakeArtifactClient(key_.public_key, substituted);
  fake->check_ins.push_back(ArtifactAssignmentResponse(bytes_, &key_));  // announces the original
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  ASSERT_EQ(fake->declines.size(), 1u);
  EXPECT_EQ(fake->declines[0].reason(), v1::DeclineRequest::ARTIFACT_HASH_MISMATCH);
  EXPECT_TRUE(fake->uploads.empty());
}

TEST_F(ArtifactClientTest, AnotherOperatorsKeyIsDeclinedWithoutDownloading) {
  const artifacts::KeyPair other = *artifacts::GenerateKeyPair();
  auto client = MakeArtifactClient(other.public_key, bytes_);
  fake->check_ins.push_back(ArtifactAssignmentResponse(bytes_, &key_));
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr("does not trust"));
  EXPECT_TRUE(fake->get_artifact_requests.empty());
  ASSERT_EQ(fake->declines.size(), 1u);
  EXPECT_EQ(fake->declines[0].reason(), v1::DeclineRequest::ARTIFACT_NOT_APPROVED);
  EXPECT_TRUE(fake->uploads.empty());
}

// A refused artifact (signed by a key the device does not trust) leaves LatestModel() as it was,
// and the app gets a clear status. The model is kept in model_dir: the app restarted offline has
// it at construction; a corrupted file is ignored (with a log line), never trusted.
TEST_F(ArtifactClientTest, RefusedArtifactKeepsTheLastGoodModelWhichSurvivesARestart) {
  const std::string model_dir = cache_dir_ + "_models";
  std::filesystem::remove_all(model_dir);
  const data::Examples batch = MakeExamples(5, 78);
  auto inference = [&] {
    return *models::TorchScriptModel::Load(
        std::string(FEDKIT_TORCHSCRIPT_FIXTURES) + "/tiny_2nn.pt", kInfo);
  };
  auto model = inference();
  FederatedClient* self = nullptr;
  std::vector<std::vector<float>> at_check_in;
  auto make = [&](std::function<void(absl::string_view)> log) {
    auto channel = std::make_unique<FakeChannel>(artifact_global_);
    fake = channel.get();
    fake->artifact = bytes_;
    AssignedModelOptions o;
    o.dataset = kInfo;
    o.trust.trusted_keys = {key_.public_key};
    o.cache_dir = cache_dir_;
    FederatedClientOptions options = Options();
    options.model_dir = model_dir;
    options.log = std::move(log);
    options.eligibility = [&] {
      if (self != nullptr) at_check_in.push_back(LatestPredictions(*self, *model, batch));
      return true;
    };
    return std::make_unique<FederatedClient>(options, std::move(channel),
                                             std::make_unique<AssignedModelSource>(o), examples_);
  };
  auto client = make(nullptr);
  self = client.get();
  EXPECT_EQ(client->LatestModel().status().code(), absl::StatusCode::kNotFound);
  fake->check_ins.push_back(ArtifactAssignmentResponse(bytes_, &key_));
  const artifacts::KeyPair stranger = *artifacts::GenerateKeyPair();
  // Another model (the same bytes would be the artifact a trusted key already approved).
  std::string other_bytes = bytes_;
  other_bytes[10] ^= 0x01;
  v1::CheckInResponse refused = ArtifactAssignmentResponse(other_bytes, &stranger);
  refused.mutable_assignment()->set_round(2);
  refused.mutable_assignment()->set_assignment_id("a2");
  fake->check_ins.push_back(refused);
  const absl::Status status = client->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::StartsWith("round 2: "));
  ASSERT_EQ(fake->uploads.size(), 1u);

  GlobalModelSnapshot downloaded{"torchscript:sha256:" + artifacts::Sha256Hex(bytes_), 1,
                                 models::LayoutOf(*model),
                                 std::make_shared<const std::vector<float>>(artifact_global_)};
  const std::vector<float> expected = Predictions(downloaded, *model, batch);
  // Asked before each check-in and during training: none before the first download, then the
  // downloaded model's predictions, also before the refused assignment and after it.
  ASSERT_GE(at_check_in.size(), 3u);
  EXPECT_TRUE(at_check_in[0].empty());
  for (size_t i = 1; i < at_check_in.size(); ++i) EXPECT_EQ(at_check_in[i], expected) << i;
  EXPECT_EQ(LatestPredictions(*client, *model, batch), expected);
  EXPECT_EQ(client->LatestModel()->model_name, downloaded.model_name);
  client.reset();
  self = nullptr;

  // Restarted without a network: the stored model, before any call.
  auto restarted = make(nullptr);
  absl::StatusOr<GlobalModelSnapshot> stored = restarted->LatestModel();
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->round, 1);
  EXPECT_EQ(stored->model_name, downloaded.model_name);
  EXPECT_EQ(Predictions(*stored, *inference(), batch), expected);
  restarted.reset();

  // A flipped byte: refused at load, logged, not trusted.
  const std::string path = GlobalModelStore(model_dir).path();
  std::string contents = *artifacts::ReadFileBytes(path);
  contents[contents.size() - 7] ^= 0x04;
  ASSERT_TRUE(artifacts::WriteFileBytes(path, contents, 0600, true).ok());
  std::vector<std::string> lines;
  auto corrupt = make([&](absl::string_view line) { lines.emplace_back(line); });
  EXPECT_EQ(corrupt->LatestModel().status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(lines, ::testing::Contains(::testing::HasSubstr("ignoring the stored global model")));
}

TEST_F(ArtifactClientTest, ARegistryModelIsBuiltFromTheAssignment) {
  auto channel = std::make_unique<FakeChannel>(global_);
  fake = channel.get();
  AssignedModelOptions o;
  o.dataset = kInfo;
  FederatedClient client(Options(), std::move(channel), std::make_unique<AssignedModelSource>(o),
                         examples_);
  fake->check_ins.push_back(AssignmentResponse(1, *reference_));  // logreg
  ASSERT_TRUE(client.Run().ok());
  EXPECT_TRUE(fake->check_in_requests[0].capabilities().model_names().empty());
  ASSERT_EQ(fake->uploads.size(), 1u);
  EXPECT_EQ(fake->uploads[0].delta, Expected(1).delta);
}

}  // namespace
}  // namespace fedkit::client
