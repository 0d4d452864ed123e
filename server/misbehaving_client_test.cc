// What one misbehaving client can do to a plain (not secure) round, and what the coordinator
// does about it: a delta beyond the value range without a clip norm is refused and its client
// named; a global model that would not be finite is never committed; the start-up warnings say
// what one client can do under the options. (Secure rounds: secure_round_coordinator_test.cc.)
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/round_coordinator.h"
#include "server/testing/coordinator_requests.h"

namespace fedkit::server {
namespace {

using ::fedkit::server::coordinator_testing::CheckInOf;

using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kStart = absl::FromUnixSeconds(3'000'000);

ParameterLayout TinyLayout() {
  ParameterLayout layout;
  layout.Append("w", {3});
  return layout;
}

// K = 2 of 3 assigned (over-selection), no clip norm: the defaults a deployment starts with.
CoordinatorOptions PlainOptions() {
  CoordinatorOptions o;
  o.model_name = "tiny";
  o.rounds = 2;
  o.clients_per_round = 2;
  o.min_clients = 2;
  o.over_select = 0.5;
  o.round_timeout = absl::Seconds(60);
  o.plan.set_local_epochs(1);
  o.plan.set_batch_size(10);
  o.plan.set_learning_rate(0.1);
  o.plan.set_run_seed(7);
  return o;
}

class MisbehavingClientTest : public ::testing::Test {
 protected:
  void Start(const CoordinatorOptions& options) {
    CoordinatorHooks hooks;
    hooks.log = [this](const std::string& line) { log_.push_back(line); };
    auto c = RoundCoordinator::Create(options, TinyLayout(), {1, 2, 3}, hooks);
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    for (const char* id : {"a", "b", "c"}) {
      ASSERT_TRUE(coordinator_->CheckIn(CheckInOf(id), kStart).ok());
    }
    for (const char* id : {"a", "b", "c"}) {
      auto r = coordinator_->CheckIn(CheckInOf(id), kStart);
      ASSERT_TRUE(r.ok() && r->has_assignment()) << id;
      assigned_[id] = r->assignment();
    }
  }
  absl::StatusOr<v1::UploadResponse> Submit(const std::string& id, int64_t examples,
                                            const std::vector<float>& delta) {
    const v1::RoundAssignment& a = assigned_.at(id);
    v1::UpdateHeader h;
    h.set_client_id(id);
    h.set_assignment_id(a.assignment_id());
    h.set_round(a.round());
    h.set_num_examples(examples);
    h.set_total_size(3);
    return coordinator_->SubmitUpdate(h, delta, kStart);
  }
  bool Logged(const std::string& text) const {
    for (const std::string& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  int64_t Refusals(const std::string& reason) const {
    const auto status = coordinator_->Status(kStart);
    auto it = status.refusals().find(reason);
    return it == status.refusals().end() ? 0 : it->second;
  }

  std::unique_ptr<RoundCoordinator> coordinator_;
  std::map<std::string, v1::RoundAssignment> assigned_;
  std::vector<std::string> log_;
};

TEST_F(MisbehavingClientTest, AHugeDeltaWithoutClippingIsRefusedNamedAndTheOthersCommit) {
  Start(PlainOptions());
  // Beyond max_update_value (1e6 by default): refused, whatever its weight.
  auto refused = Submit("a", 1 << 20, {5e6f, 0, 0});
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_EQ(Refusals("out_of_range"), 1);
  EXPECT_TRUE(Logged("update of client a refused (out_of_range)")) << testing::PrintToString(log_);
  ASSERT_TRUE(Submit("b", 1, {1, 0, -1}).ok());
  ASSERT_TRUE(Submit("c", 3, {-1, 4, 1}).ok());
  ASSERT_EQ(coordinator_->rounds_completed(), 1);
  // (1 x b + 3 x c) / 4 added to {1, 2, 3}.
  EXPECT_EQ(coordinator_->global_parameters(), (std::vector<float>{0.5f, 5.0f, 3.5f}));
}

TEST_F(MisbehavingClientTest, AnAllowedButHugeUpdateIsBoundedAsTheWarningSays) {
  const CoordinatorOptions options = PlainOptions();
  Start(options);
  // At max_update_value with the largest weight: it holds 2^20 / (2^20 + 1) of the average.
  ASSERT_TRUE(Submit("a", options.max_examples_per_client, {1e6f, 0, 0}).ok());
  ASSERT_TRUE(Submit("b", 1, {0, 0, 0}).ok());
  const std::vector<float> global = coordinator_->global_parameters();
  const double share = 1048576.0 / 1048577.0;
  EXPECT_NEAR(global[0], 1 + 1e6 * share, 1e-1);
  EXPECT_LE(global[0] - 1, options.max_update_value);
  const std::vector<std::string> warnings = SingleClientInfluenceWarnings(options);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("`clip_norm` is 0"));
  EXPECT_THAT(warnings[0], HasSubstr("`max_update_value` (1e+06 per coordinate)"));
  EXPECT_THAT(warnings[0], HasSubstr("99.9999%"));  // against 1 other client of one example
  EXPECT_THAT(warnings[1], HasSubstr("`max_examples_per_client` = 1048576"));
}

TEST(SingleClientInfluenceWarningsTest, AFedBuffBufferIsTheAverageOneClientSharesIn) {
  CoordinatorOptions o = PlainOptions();
  o.clients_per_round = 2;
  o.fedbuff = aggregation::FedBuffSettings{.buffer_size = 11, .concurrency = 20};
  const std::vector<std::string> warnings = SingleClientInfluenceWarnings(o);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[1], HasSubstr("against 10 clients of one example each"));
}

TEST(SingleClientInfluenceWarningsTest, NoneWithAClipNormAndASmallWeightCapOrUnderDp) {
  CoordinatorOptions o = PlainOptions();
  o.plan.set_clip_norm(1.0);
  o.max_examples_per_client = 1000;
  EXPECT_THAT(SingleClientInfluenceWarnings(o), IsEmpty());
  o.max_examples_per_client = kLargeWeightCap;
  EXPECT_EQ(SingleClientInfluenceWarnings(o).size(), 1u);
  o.dp = privacy::DpSettings{};
  EXPECT_THAT(SingleClientInfluenceWarnings(o), IsEmpty());
}

TEST_F(MisbehavingClientTest, ANonFiniteGlobalModelIsNeverCommitted) {
  CoordinatorOptions options = PlainOptions();
  options.server_optimizer.learning_rate = 1e38;  // 1e38 x an average of 10 overflows a float
  options.server_optimizer.momentum = 0.5;
  Start(options);
  ASSERT_TRUE(Submit("a", 1, {10, 0, 0}).ok());
  ASSERT_TRUE(Submit("b", 1, {10, 0, 0}).ok());
  EXPECT_EQ(coordinator_->rounds_completed(), 0);
  EXPECT_EQ(coordinator_->global_parameters(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(Refusals("non_finite_model"), 1);
  EXPECT_TRUE(Logged("abandoned (non_finite_model)")) << testing::PrintToString(log_);
  EXPECT_EQ(coordinator_->Status(kStart).phase(), "waiting");
}

}  // namespace
}  // namespace fedkit::server
