// The device library against the round engine in one process: FederatedClients over
// InProcessChannel run real rounds of a RoundCoordinator (fewer clients per round than devices,
// over-selection, ids that do not sort like indices), and the committed model is the weighted
// FedAvg of exactly the updates the coordinator accepted.
#include "server/in_process_channel.h"

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "aggregation/aggregator.h"
#include "aggregation/server_optimizer.h"
#include "client/federated_client.h"
#include "client/testing/argmax_examples.h"
#include "compression/download_codec.h"
#include "compression/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/compute_threads.h"
#include "models/flat_params.h"
#include "models/model.h"
#include "privacy/secagg/protocol.h"
#include "proto/compression_conversion.h"
#include "proto/layout_conversion.h"
#include "proto/wire_sizes.h"
#include "server/participation.h"
#include "server/secure_aggregation_round.h"

namespace fedkit::server {
namespace {

const data::DatasetInfo kInfo = testdata::kArgmaxInfo;

data::Examples MakeExamples(int n, uint32_t seed) { return testdata::ArgmaxExamples(n, seed); }

// Every update the coordinator counted (OK and not a duplicate), by round.
struct AcceptedUpdates {
  absl::Mutex mu;
  std::map<int64_t, std::vector<std::pair<int64_t, std::vector<float>>>> by_round
      ABSL_GUARDED_BY(mu);
  std::map<int64_t, std::set<std::string>> assigned ABSL_GUARDED_BY(mu);  // client ids by round
  int64_t compressed_bytes ABSL_GUARDED_BY(mu) = 0;
  // The models devices downloaded (as they decoded them), by round.
  std::map<int64_t, std::vector<std::vector<float>>> downloads ABSL_GUARDED_BY(mu);
};

// A wrapper around a channel, the shape faults and dropouts take: this one records what was
// accepted and forwards everything.
class RecordingChannel final : public client::CoordinatorChannel {
 public:
  RecordingChannel(std::unique_ptr<client::CoordinatorChannel> inner, AcceptedUpdates* accepted)
      : inner_(std::move(inner)), accepted_(accepted) {}
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    absl::StatusOr<v1::CheckInResponse> response = inner_->CheckIn(request);
    if (response.ok() && response->has_assignment()) {
      absl::MutexLock lock(&accepted_->mu);
      accepted_->assigned[response->assignment().round()].insert(request.client_id());
    }
    return response;
  }
  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override {
    absl::Status status = inner_->GetModel(request, expected_size, parameters, layout);
    if (status.ok()) {
      absl::MutexLock lock(&accepted_->mu);
      accepted_->downloads[request.round()].push_back(*parameters);
    }
    return status;
  }
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override {
    absl::StatusOr<v1::UploadResponse> response = inner_->UploadUpdate(header, delta);
    if (response.ok() && !response->duplicate()) {
      absl::MutexLock lock(&accepted_->mu);
      accepted_->by_round[header.round()].emplace_back(
          header.num_examples(), std::vector<float>(delta.begin(), delta.end()));
    }
    return response;
  }
  // Compressed uploads are recorded as the coordinator decodes them (before its clip: these
  // tests run without a clip norm).
  absl::StatusOr<v1::UploadResponse> UploadCompressedUpdate(const v1::UpdateHeader& header,
                                                            const std::string& encoded) override {
    absl::StatusOr<v1::UploadResponse> response = inner_->UploadCompressedUpdate(header, encoded);
    if (response.ok() && !response->duplicate()) {
      absl::StatusOr<std::vector<float>> delta =
          compression::DecodeUpdate(spec_, encoded, header.total_size());
      EXPECT_TRUE(delta.ok()) << delta.status();
      absl::MutexLock lock(&accepted_->mu);
      accepted_->by_round[header.round()].emplace_back(header.num_examples(),
                                                       delta.value_or(std::vector<float>()));
      accepted_->compressed_bytes += static_cast<int64_t>(encoded.size());
    }
    return response;
  }
  void Cancel() override { inner_->Cancel(); }
  void set_spec(const compression::CompressionSpec& spec) { spec_ = spec; }
  std::optional<client::ChannelTraffic> traffic() const override { return inner_->traffic(); }

 private:
  compression::CompressionSpec spec_;
  std::unique_ptr<client::CoordinatorChannel> inner_;
  AcceptedUpdates* accepted_;
};

CoordinatorOptions Options() {
  CoordinatorOptions o;
  o.model_name = "logreg";
  o.rounds = 3;
  o.clients_per_round = 3;
  o.min_clients = 3;
  o.over_select = 0.5;  // 5 of the 7 devices assigned, the first 3 uploads counted
  // Long enough that every round starts at the over-selected target, not with fewer.
  o.selection_timeout = absl::Seconds(60);
  o.retry_interval = absl::Milliseconds(5);
  o.round_timeout = absl::Seconds(120);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(8);
  o.plan.set_learning_rate(0.3);
  o.plan.set_run_seed(42);
  return o;
}

// Runs 7 devices through 3 rounds and checks the committed model against the accepted updates,
// and what the devices downloaded against the global model of each round.
void RunDevicesAndCheckTheModel(
    const compression::CompressionSpec& spec,
    compression::DownloadEncoding download = compression::DownloadEncoding::kFloat32) {
  models::UseSingleThreadedCompute();
  CoordinatorOptions options = Options();
  *options.plan.mutable_compression() = proto::CompressionToProto(spec);
  options.download_encoding = download;
  std::shared_ptr<models::Model> reference = *models::CreateModel("logreg", kInfo, 1);
  const std::vector<float> initial = models::FlattenParameters(*reference);
  auto coordinator =
      RoundCoordinator::Create(options, models::LayoutOf(*reference), initial, CoordinatorHooks{});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();

  AcceptedUpdates accepted;
  // Ids that do not sort like the device indices.
  const std::vector<std::string> ids = {"zeta", "alpha", "mu", "beta", "omega", "kappa", "delta"};
  std::vector<std::unique_ptr<client::FederatedClient>> devices;
  for (size_t i = 0; i < ids.size(); ++i) {
    client::FederatedClientOptions o;
    o.client_id = ids[i];
    o.client_index = static_cast<int64_t>(i);
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.give_up_after = absl::Seconds(120);
    o.jitter_seed = i;
    auto channel = std::make_unique<RecordingChannel>(
        std::make_unique<InProcessChannel>(coordinator->get(), [] { return absl::Now(); }),
        &accepted);
    channel->set_spec(spec);
    devices.push_back(std::make_unique<client::FederatedClient>(
        o, std::move(channel), *models::CreateModel("logreg", kInfo, 100 + i),
        MakeExamples(20 + 7 * static_cast<int>(i), 10 + i)));
  }
  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done.load()) {
      EXPECT_TRUE((*coordinator)->Tick(absl::Now()).ok());
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  std::vector<absl::Status> results(devices.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < devices.size(); ++i) {
    threads.emplace_back([&, i] {
      models::UseSingleThreadedCompute();
      results[i] = devices[i]->Run();
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  ticker.join();
  for (size_t i = 0; i < devices.size(); ++i) EXPECT_TRUE(results[i].ok()) << ids[i] << results[i];
  ASSERT_TRUE((*coordinator)->finished());
  ASSERT_EQ((*coordinator)->rounds_completed(), 3);
  const v1::GetStatusResponse status = (*coordinator)->Status(absl::Now());
  ASSERT_EQ(status.history_size(), 3);
  for (const auto& round : status.history()) {
    EXPECT_EQ(round.participants(), 3);
    // Each accepted upload's telemetry, with the bytes the in-process channel counted: at least
    // the model down and the delta up, 4 bytes a parameter.
    const v1::DeviceTelemetrySummary& t = round.device_telemetry();
    EXPECT_EQ(t.reports(), 3);
    EXPECT_EQ(t.invalid_reports(), 0);
    EXPECT_EQ(t.training_seconds().count(), 3);
    EXPECT_EQ(t.download_bytes().count(), 3);
    const auto n = static_cast<int64_t>(initial.size());
    EXPECT_GE(t.download_bytes().p50(),
              static_cast<double>(compression::DownloadBytes(download, n)));
    // The coordinator counts the encoded stream.
    EXPECT_EQ(round.download_bytes(),
              download == compression::DownloadEncoding::kFloat32
                  ? proto::ModelStreamBytes(round.round(), n, proto::kDefaultModelChunkFloats,
                                            LayoutToProto(models::LayoutOf(*reference)))
                  : proto::EncodedModelStreamBytes(
                        round.round(), n, proto::DownloadEncodingToProto(download),
                        compression::DownloadBytes(download, n), proto::kDefaultModelChunkBytes,
                        LayoutToProto(models::LayoutOf(*reference))));
    EXPECT_GE(t.upload_bytes().p50(), 4.0 * static_cast<double>(initial.size()));
    EXPECT_GT(t.peak_memory_bytes().p50(), 0);
  }

  // The committed model, by hand: weighted FedAvg of the accepted updates, server SGD (lr 1).
  std::vector<float> expected = initial;
  auto optimizer = aggregation::MakeServerOptimizer(options.server_optimizer,
                                                    static_cast<int64_t>(initial.size()));
  ASSERT_TRUE(optimizer.ok());
  absl::MutexLock lock(&accepted.mu);
  ASSERT_EQ(accepted.by_round.size(), 3u);
  // Devices saw assignments of every round (an over-selected device that checks in again only
  // after the third upload closed its round never sees its assignment: no count is pinned).
  ASSERT_EQ(accepted.assigned.size(), 3u);
  for (const auto& [round, clients] : accepted.assigned) EXPECT_GE(clients.size(), 3u) << round;
  for (auto& [round, updates] : accepted.by_round) {
    EXPECT_EQ(updates.size(), 3u) << "round " << round;  // K counted, whatever was over-selected
    auto fedavg = aggregation::WeightedFedAvgAggregator::Create(
        static_cast<int64_t>(initial.size()),
        aggregation::UpdateValueBound(0, options.clip_tolerance, options.max_update_value),
        options.max_examples_per_client);
    ASSERT_TRUE(fedavg.ok());
    for (const auto& [examples, delta] : updates) {
      ASSERT_TRUE((*fedavg)->Accumulate(delta, examples).ok());
    }
    // Every device of the round trained from the global model as the download encodes it.
    const std::vector<float> downloaded =
        download == compression::DownloadEncoding::kFloat32
            ? expected
            : *compression::DecodeDownload(download,
                                           *compression::EncodeDownload(download, expected),
                                           static_cast<int64_t>(expected.size()));
    EXPECT_GE(accepted.downloads[round].size(), 3u) << round;
    for (const std::vector<float>& d : accepted.downloads[round]) {
      EXPECT_TRUE(d == downloaded) << "round " << round;
    }
    if (download != compression::DownloadEncoding::kFloat32) {
      EXPECT_NE(downloaded, expected);
    }
    auto report = (*fedavg)->Report();
    ASSERT_TRUE(report.ok());
    ASSERT_TRUE((*optimizer)->Apply(report->average, absl::MakeSpan(expected)).ok());
  }
  EXPECT_EQ((*coordinator)->global_parameters(), expected);
  EXPECT_NE(expected, initial);
  if (spec.method != compression::CompressionMethod::kNone) {
    EXPECT_GT(accepted.compressed_bytes, 0);
    for (const auto& round : status.history()) EXPECT_GT(round.upload_bytes(), 0.0);
  }
}

TEST(InProcessChannelTest, DevicesRunTheEnginesRoundsAndTheModelIsTheFedAvgOfWhatWasAccepted) {
  RunDevicesAndCheckTheModel(compression::CompressionSpec{});
}

// With plan.compression the devices upload encodings; the model is the FedAvg of their decodings.
TEST(InProcessChannelTest, CompressedUploadsAreTheEncodingsTheCoordinatorDecodes) {
  RunDevicesAndCheckTheModel(*compression::ParseCompressionSpec("quantize-rotate:4"));
  RunDevicesAndCheckTheModel(*compression::ParseCompressionSpec("topk:0.2"));
}

// With --download-compression the devices download (and train from) the encoded model; the
// coordinator keeps the exact one and applies the FedAvg of the deltas to it.
TEST(InProcessChannelTest, EncodedDownloadsAreWhatDevicesTrainFrom) {
  RunDevicesAndCheckTheModel(compression::CompressionSpec{},
                             compression::DownloadEncoding::kQuantize8);
  RunDevicesAndCheckTheModel(*compression::ParseCompressionSpec("quantize-rotate:8"),
                             compression::DownloadEncoding::kFloat16);
}

// Records, when its device declines, how many minibatches the device had trained.
class DeclineWatchingChannel final : public client::CoordinatorChannel {
 public:
  DeclineWatchingChannel(std::unique_ptr<client::CoordinatorChannel> inner,
                         const client::FederatedClient* const* device,
                         std::vector<std::pair<v1::DeclineRequest, int64_t>>* declines)
      : inner_(std::move(inner)), device_(device), declines_(declines) {}
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    return inner_->CheckIn(request);
  }
  absl::Status GetModel(const v1::GetModelRequest& request, int64_t expected_size,
                        std::vector<float>* parameters, v1::ParameterLayout* layout) override {
    return inner_->GetModel(request, expected_size, parameters, layout);
  }
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest& request) override {
    declines_->emplace_back(request, (*device_)->minibatches_trained());
    return inner_->Decline(request);
  }
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float> delta) override {
    return inner_->UploadUpdate(header, delta);
  }
  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override {
    return inner_->SecureAggregation(request);
  }
  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string& packed) override {
    return inner_->UploadMaskedInput(header, packed);
  }
  void Cancel() override { inner_->Cancel(); }

 private:
  std::unique_ptr<client::CoordinatorChannel> inner_;
  const client::FederatedClient* const* device_;
  std::vector<std::pair<v1::DeclineRequest, int64_t>>* declines_;
};

// Device conditions, end to end (the two tests below): one of four devices becomes ineligible
// after its k-th minibatch of round 1. It stops training within a minibatch and declines; the
// coordinator does not wait for it (the round's deadline is an hour away and the coordinator's
// clock never moves: the round can only commit because nobody else is awaited), commits with the
// other three, and the device checks in again once eligible and takes part in round 2.
void RunWithADeviceThatBecomesIneligible(bool secure_aggregation) {
  models::UseSingleThreadedCompute();
  constexpr int64_t kStepsBeforeIneligible = 2;  // k; a round is 5 minibatches (40 examples / 8)
  CoordinatorOptions options = Options();
  options.rounds = 2;
  options.clients_per_round = 4;
  options.min_clients = 3;
  options.over_select = 0;
  options.round_timeout = absl::Hours(1);
  options.selection_timeout = absl::Hours(1);
  if (secure_aggregation) {
    options.plan.set_clip_norm(10.0);
    options.max_examples_per_client = 100;  // the fixed-point encoding's weight range
    SecureAggregationSettings secure;
    secure.variant = secagg::Variant::kSecAgg;
    secure.phase_timeout = absl::Hours(1);  // never reached: the clock does not move
    options.secure_aggregation = secure;
  }
  const absl::Time frozen = absl::FromUnixSeconds(2'000'000);  // the coordinator's clock
  std::shared_ptr<models::Model> reference = *models::CreateModel("logreg", kInfo, 1);
  std::vector<RoundParticipation> participation;
  absl::Mutex participation_mu;
  CoordinatorHooks hooks;
  hooks.round_participation = [&](const RoundParticipation& p) {
    absl::MutexLock lock(&participation_mu);
    participation.push_back(p);
  };
  auto coordinator = RoundCoordinator::Create(options, models::LayoutOf(*reference),
                                              models::FlattenParameters(*reference), hooks);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  RoundCoordinator* engine = coordinator->get();

  const std::vector<std::string> ids = {"phone-a", "phone-b", "phone-c", "phone-d"};
  constexpr size_t kUnplugged = 3;
  std::vector<std::unique_ptr<client::FederatedClient>> devices(ids.size());
  const client::FederatedClient* unplugged = nullptr;
  std::vector<std::pair<v1::DeclineRequest, int64_t>> declines;  // its Run() thread only
  for (size_t i = 0; i < ids.size(); ++i) {
    client::FederatedClientOptions o;
    o.client_id = ids[i];
    o.client_index = static_cast<int64_t>(i);
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.give_up_after = absl::Seconds(600);
    o.jitter_seed = i;
    std::unique_ptr<client::CoordinatorChannel> channel =
        std::make_unique<InProcessChannel>(engine, [frozen] { return frozen; });
    if (i == kUnplugged) {
      // Eligible until its k-th minibatch, then not until round 1 committed.
      o.eligibility = [&unplugged, engine] {
        return unplugged->minibatches_trained() < kStepsBeforeIneligible ||
               engine->rounds_completed() >= 1;
      };
      channel = std::make_unique<DeclineWatchingChannel>(std::move(channel), &unplugged, &declines);
    }
    devices[i] = std::make_unique<client::FederatedClient>(
        o, std::move(channel), *models::CreateModel("logreg", kInfo, 100 + i),
        MakeExamples(40, 20 + static_cast<uint32_t>(i)));
  }
  unplugged = devices[kUnplugged].get();

  std::vector<absl::Status> results(devices.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < devices.size(); ++i) {
    threads.emplace_back([&, i] {
      models::UseSingleThreadedCompute();
      results[i] = devices[i]->Run();
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < devices.size(); ++i) EXPECT_TRUE(results[i].ok()) << ids[i] << results[i];

  // It stopped within one minibatch of becoming ineligible, and said so.
  ASSERT_EQ(declines.size(), 1u);
  EXPECT_EQ(declines[0].first.reason(), v1::DeclineRequest::DEVICE_NOT_ELIGIBLE);
  EXPECT_EQ(declines[0].first.round(), 1);
  EXPECT_LE(declines[0].second, kStepsBeforeIneligible + 1);
  EXPECT_GE(declines[0].second, kStepsBeforeIneligible);

  ASSERT_TRUE(engine->finished());
  const v1::GetStatusResponse status = engine->Status(frozen);
  EXPECT_EQ(status.declines().at("device_not_eligible"), 1);
  EXPECT_EQ(status.rounds_abandoned(), 0);
  ASSERT_EQ(status.history_size(), 2);
  EXPECT_EQ(status.history(0).participants(), 3);
  EXPECT_EQ(status.history(0).assigned(), 4);
  EXPECT_EQ(status.history(0).seconds(), 0);  // the clock never reached the deadline
  EXPECT_EQ(status.history(1).participants(), 4);
  absl::MutexLock lock(&participation_mu);
  ASSERT_EQ(participation.size(), 2u);
  EXPECT_THAT(participation[0].aggregated, ::testing::ElementsAre("phone-a", "phone-b", "phone-c"));
  EXPECT_THAT(participation[1].aggregated,
              ::testing::ElementsAre("phone-a", "phone-b", "phone-c", "phone-d"));
  // Back once eligible: it contributed to round 2 and trained a whole round then.
  EXPECT_EQ(devices[kUnplugged]->rounds_contributed(), 1);
  EXPECT_EQ(devices[kUnplugged]->minibatches_trained(), declines[0].second + 5);
}

TEST(InProcessChannelTest, ADeviceThatBecomesIneligibleDropsOutAndTheRoundDoesNotWaitForIt) {
  RunWithADeviceThatBecomesIneligible(/*secure_aggregation=*/false);
}

// The same under secure aggregation: the device declines after the key exchange, the coordinator
// withdraws it from the protocol (a dropout) and the masked-input phase closes without it.
TEST(InProcessChannelTest, UnderSecureAggregationTheIneligibleDeviceIsADropoutNotWaitedFor) {
  RunWithADeviceThatBecomesIneligible(/*secure_aggregation=*/true);
}

TEST(InProcessChannelTest, RefusesMisdeclaredSizesAndIsCancellable) {
  const CoordinatorOptions options = Options();
  std::shared_ptr<models::Model> reference = *models::CreateModel("logreg", kInfo, 1);
  auto coordinator =
      RoundCoordinator::Create(options, models::LayoutOf(*reference),
                               models::FlattenParameters(*reference), CoordinatorHooks{});
  ASSERT_TRUE(coordinator.ok());
  InProcessChannel channel(coordinator->get(), [] { return absl::Now(); });
  v1::UpdateHeader header;
  header.set_client_id("alpha");
  header.set_total_size(5);
  const std::vector<float> four(4, 0.0f);
  EXPECT_EQ(channel.UploadUpdate(header, four).status().code(), absl::StatusCode::kInvalidArgument);
  v1::CheckInRequest check_in;
  check_in.set_client_id("alpha");
  check_in.set_api_version(1);
  EXPECT_TRUE(channel.CheckIn(check_in).ok());
  channel.Cancel();
  EXPECT_EQ(channel.CheckIn(check_in).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(channel.UploadUpdate(header, four).status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace fedkit::server
