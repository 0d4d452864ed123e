#include "client/fault_injection.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records which calls reached it; every call succeeds.
class RecordingChannel : public CoordinatorChannel {
 public:
  explicit RecordingChannel(std::vector<std::string>* calls) : calls_(calls) {}
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest&) override {
    calls_->push_back("checkin");
    return v1::CheckInResponse();
  }
  absl::Status GetModel(const v1::GetModelRequest&, int64_t, std::vector<float>*,
                        v1::ParameterLayout*) override {
    calls_->push_back("model");
    return absl::OkStatus();
  }
  absl::Status GetArtifact(const v1::GetArtifactRequest&, int64_t, std::string*) override {
    calls_->push_back("artifact");
    return absl::OkStatus();
  }
  absl::StatusOr<v1::DeclineResponse> Decline(const v1::DeclineRequest&) override {
    calls_->push_back("decline");
    return v1::DeclineResponse();
  }
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader& header,
                                                  absl::Span<const float>) override {
    calls_->push_back("upload " + std::to_string(header.round()));
    return v1::UploadResponse();
  }
  absl::StatusOr<v1::SecAggResponse> SecureAggregation(const v1::SecAggRequest& request) override {
    std::string step = request.has_advertise_keys() ? "advertise"
                       : request.has_share_keys()   ? "share"
                       : request.has_unmask()       ? "unmask"
                                                    : "poll";
    calls_->push_back(step + " " + std::to_string(request.round()));
    return v1::SecAggResponse();
  }
  absl::StatusOr<v1::UploadResponse> UploadMaskedInput(const v1::UpdateHeader& header,
                                                       const std::string&) override {
    calls_->push_back("masked " + std::to_string(header.round()));
    return v1::UploadResponse();
  }
  void Cancel() override { cancelled_ = true; }
  bool cancelled_ = false;

 private:
  std::vector<std::string>* calls_;
};

v1::UpdateHeader Header(int64_t round) {
  v1::UpdateHeader header;
  header.set_round(round);
  return header;
}

v1::SecAggRequest Step(int64_t round, absl::string_view step) {
  v1::SecAggRequest request;
  request.set_round(round);
  if (step == "advertise") request.mutable_advertise_keys();
  if (step == "share") request.mutable_share_keys();
  if (step == "unmask") request.mutable_unmask();
  if (step == "poll") request.mutable_poll();
  return request;
}

TEST(ParseFaultTest, ReadsPhaseAndRound) {
  absl::StatusOr<Fault> fault = ParseFault("share@3");
  ASSERT_TRUE(fault.ok()) << fault.status();
  EXPECT_EQ(fault->round, 3);
  EXPECT_EQ(fault->phase, secagg::ClientPhase::kShareKeys);
  fault = ParseFault("upload@1");
  ASSERT_TRUE(fault.ok()) << fault.status();
  EXPECT_EQ(fault->phase, secagg::ClientPhase::kMaskedInput);
}

TEST(ParseFaultTest, RefusesMalformedSpecs) {
  for (const char* spec : {"upload", "upload@", "upload@0", "upload@x", "@2", "train@1"}) {
    absl::StatusOr<Fault> fault = ParseFault(spec);
    ASSERT_FALSE(fault.ok()) << spec;
    EXPECT_EQ(fault.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_THAT(fault.status().message(), HasSubstr(spec));
  }
  EXPECT_THAT(ParseFault("train@1").status().message(), HasSubstr("advertise, share, upload"));
}

TEST(FaultInjectionChannelTest, OtherRoundsAndPhasesPassThrough) {
  std::vector<std::string> calls;
  std::vector<std::string> logged;
  FaultInjectionChannel channel(std::make_unique<RecordingChannel>(&calls),
                                Fault{2, secagg::ClientPhase::kMaskedInput},
                                [&](absl::string_view line) { logged.emplace_back(line); });
  ASSERT_TRUE(channel.CheckIn(v1::CheckInRequest()).ok());
  ASSERT_TRUE(channel.SecureAggregation(Step(2, "advertise")).ok());
  ASSERT_TRUE(channel.SecureAggregation(Step(2, "share")).ok());
  ASSERT_TRUE(channel.SecureAggregation(Step(2, "poll")).ok());
  ASSERT_TRUE(channel.UploadUpdate(Header(1), {}).ok());
  ASSERT_TRUE(channel.UploadMaskedInput(Header(3), "").ok());
  EXPECT_FALSE(channel.silent());
  EXPECT_TRUE(logged.empty());
  EXPECT_THAT(calls,
              ElementsAre("checkin", "advertise 2", "share 2", "poll 2", "upload 1", "masked 3"));
}

TEST(FaultInjectionChannelTest, TheCrossingCallAndEveryLaterOneBlockUntilCancel) {
  std::vector<std::string> calls;
  std::vector<std::string> logged;
  auto inner = std::make_unique<RecordingChannel>(&calls);
  RecordingChannel* inner_view = inner.get();
  std::atomic<bool> went_silent{false};
  FaultInjectionChannel channel(std::move(inner), Fault{1, secagg::ClientPhase::kShareKeys},
                                [&](absl::string_view line) {
                                  logged.emplace_back(line);
                                  went_silent = true;
                                });
  ASSERT_TRUE(channel.SecureAggregation(Step(1, "advertise")).ok());

  std::atomic<bool> returned{false};
  absl::Status share_status;
  absl::Status checkin_status;
  std::thread device([&] {
    share_status = channel.SecureAggregation(Step(1, "share")).status();
    checkin_status = channel.CheckIn(v1::CheckInRequest()).status();
    returned = true;
  });
  // The device blocks in the crossing call: nothing returns before Cancel. (Not timed: the
  // check is only that it has not returned yet once it has gone silent.)
  while (!went_silent.load()) std::this_thread::yield();
  EXPECT_FALSE(returned.load());
  channel.Cancel();
  device.join();
  EXPECT_EQ(share_status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(checkin_status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(channel.silent());
  EXPECT_TRUE(inner_view->cancelled_);
  EXPECT_THAT(logged, ElementsAre("round 1: fault injected: silent from its share on"));
  // Neither the share step nor anything after it reached the coordinator.
  EXPECT_THAT(calls, ElementsAre("advertise 1"));
}

TEST(FaultInjectionChannelTest, UploadFaultCoversPlainAndMaskedUploads) {
  for (bool masked : {false, true}) {
    std::vector<std::string> calls;
    FaultInjectionChannel channel(std::make_unique<RecordingChannel>(&calls),
                                  Fault{1, secagg::ClientPhase::kMaskedInput}, nullptr);
    channel.Cancel();  // so the silent call returns at once
    absl::Status status = masked ? channel.UploadMaskedInput(Header(1), "").status()
                                 : channel.UploadUpdate(Header(1), {}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
    EXPECT_TRUE(channel.silent());
    EXPECT_TRUE(calls.empty());
  }
}

}  // namespace
}  // namespace fedkit::client
