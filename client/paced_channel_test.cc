#include "client/paced_channel.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace fedkit::client {
namespace {

// Every call succeeds; a check-in returns an assignment of `epochs` local epochs; records uploads.
class AssigningChannel : public CoordinatorChannel {
 public:
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest&) override {
    v1::CheckInResponse response;
    response.mutable_assignment()->mutable_plan()->set_local_epochs(epochs);
    return response;
  }
  absl::Status GetModel(const v1::GetModelRequest&, int64_t, std::vector<float>*,
                        v1::ParameterLayout*) override {
    return model_status;
  }
  absl::Status GetArtifact(const v1::GetArtifactRequest&, int64_t, std::string*) override {
    return absl::OkStatus();
  }
  absl::StatusOr<v1::UploadResponse> UploadUpdate(const v1::UpdateHeader&,
                                                  absl::Span<const float>) override {
    ++uploads;
    return v1::UploadResponse();
  }
  void Cancel() override { cancelled = true; }

  int epochs = 1;
  absl::Status model_status;
  int uploads = 0;
  bool cancelled = false;
};

v1::UpdateHeader Examples(int64_t n) {
  v1::UpdateHeader header;
  header.set_num_examples(n);
  return header;
}

struct Clock {
  absl::Time now = absl::UnixEpoch();
  std::vector<absl::Duration> waits;
  bool wake_early = false;
};

std::unique_ptr<PacedChannel> Paced(AssigningChannel** inner, Clock* clock, double seconds) {
  auto channel = std::make_unique<AssigningChannel>();
  *inner = channel.get();
  return std::make_unique<PacedChannel>(
      std::move(channel), seconds, [clock] { return clock->now; },
      [clock](absl::Duration d) {
        clock->waits.push_back(d);
        clock->now += d;
        return !clock->wake_early;
      });
}

TEST(PacedChannelTest, HoldsTheUploadForSecondsPerExampleAndEpochLessTheTimeSpent) {
  Clock clock;
  AssigningChannel* inner = nullptr;
  auto paced = Paced(&inner, &clock, 0.01);
  inner->epochs = 2;
  ASSERT_TRUE(paced->CheckIn(v1::CheckInRequest()).ok());
  ASSERT_TRUE(paced->GetModel(v1::GetModelRequest(), 0, nullptr, nullptr).ok());
  clock.now += absl::Seconds(1);  // training took 1 s of the 0.01 x 300 x 2 = 6 s
  ASSERT_TRUE(paced->UploadUpdate(Examples(300), {}).ok());
  ASSERT_EQ(clock.waits.size(), 1u);
  EXPECT_EQ(clock.waits[0], absl::Seconds(5));
  EXPECT_EQ(inner->uploads, 1);

  // A retried upload of the same round is not held again.
  ASSERT_TRUE(paced->UploadUpdate(Examples(300), {}).ok());
  EXPECT_EQ(clock.waits.size(), 1u);
  EXPECT_EQ(inner->uploads, 2);
}

TEST(PacedChannelTest, ASlowRealRoundOrNoDownloadIsNotHeld) {
  Clock clock;
  AssigningChannel* inner = nullptr;
  auto paced = Paced(&inner, &clock, 0.001);
  // No download yet (e.g. the model failed to arrive): nothing to pace from.
  ASSERT_TRUE(paced->UploadUpdate(Examples(100), {}).ok());
  inner->model_status = absl::UnavailableError("link down");
  ASSERT_TRUE(paced->CheckIn(v1::CheckInRequest()).ok());
  EXPECT_FALSE(paced->GetModel(v1::GetModelRequest(), 0, nullptr, nullptr).ok());
  ASSERT_TRUE(paced->UploadUpdate(Examples(100), {}).ok());
  // Training already took longer than 0.001 x 100 s.
  inner->model_status = absl::OkStatus();
  ASSERT_TRUE(paced->GetModel(v1::GetModelRequest(), 0, nullptr, nullptr).ok());
  clock.now += absl::Seconds(2);
  ASSERT_TRUE(paced->UploadUpdate(Examples(100), {}).ok());
  EXPECT_TRUE(clock.waits.empty());
  EXPECT_EQ(inner->uploads, 3);
}

TEST(PacedChannelTest, CancelEndsTheWaitWithoutUploading) {
  Clock clock;
  clock.wake_early = true;
  AssigningChannel* inner = nullptr;
  auto paced = Paced(&inner, &clock, 1.0);
  ASSERT_TRUE(paced->CheckIn(v1::CheckInRequest()).ok());
  ASSERT_TRUE(paced->GetModel(v1::GetModelRequest(), 0, nullptr, nullptr).ok());
  EXPECT_EQ(paced->UploadUpdate(Examples(10), {}).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(inner->uploads, 0);
  paced->Cancel();
  EXPECT_TRUE(inner->cancelled);
}

TEST(PacedChannelTest, TheRealWaitReturnsAtOnceOnCancel) {
  auto channel = std::make_unique<AssigningChannel>();
  PacedChannel paced(std::move(channel), /*seconds_per_example=*/3600.0);
  ASSERT_TRUE(paced.CheckIn(v1::CheckInRequest()).ok());
  ASSERT_TRUE(paced.GetModel(v1::GetModelRequest(), 0, nullptr, nullptr).ok());
  std::thread canceller([&] { paced.Cancel(); });
  // Held for an hour unless Cancel ends it (the test would time out otherwise).
  EXPECT_EQ(paced.UploadUpdate(Examples(10), {}).status().code(), absl::StatusCode::kCancelled);
  canceller.join();
}

}  // namespace
}  // namespace fedkit::client
