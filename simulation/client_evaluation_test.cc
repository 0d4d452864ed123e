#include "simulation/client_evaluation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "data/federated_dataset.h"
#include "data/local_eval_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluate.h"
#include "simulation/simulator.h"
#include "simulation/test_support.h"

namespace fedkit::simulation {
namespace {

using ::testing::HasSubstr;

TEST(SummarizeClientAccuraciesTest, NearestRankPercentilesAndTheWorstDecile) {
  // 0.1 .. 1.0, shuffled: p10 is the 1st value, p50 the 5th, p90 the 9th; the worst decile is
  // ceil(10 / 10) = 1 value.
  const std::vector<double> ten = {0.5, 0.9, 0.1, 1.0, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6};
  auto s = SummarizeClientAccuracies(ten);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->clients, 10);
  EXPECT_NEAR(s->mean, 0.55, 1e-12);
  EXPECT_EQ(s->p10, 0.1);
  EXPECT_EQ(s->p50, 0.5);
  EXPECT_EQ(s->p90, 0.9);
  EXPECT_EQ(s->worst10, 0.1);

  // 30 values k / 30: p10 = 3rd, p50 = 15th, p90 = 27th; worst decile = mean of the 3 lowest.
  std::vector<double> thirty;
  for (int k = 30; k >= 1; --k) thirty.push_back(k / 30.0);
  s = SummarizeClientAccuracies(thirty);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->p10, 3 / 30.0);
  EXPECT_EQ(s->p50, 15 / 30.0);
  EXPECT_EQ(s->p90, 27 / 30.0);
  EXPECT_NEAR(s->worst10, 2 / 30.0, 1e-12);
  EXPECT_NEAR(s->mean, 15.5 / 30.0, 1e-12);

  // 5 values: p10 = 1st, p50 = 3rd, p90 = 5th; the worst decile is the lowest.
  s = SummarizeClientAccuracies({0.9, 0.2, 0.6, 0.4, 0.8});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->p10, 0.2);
  EXPECT_EQ(s->p50, 0.6);
  EXPECT_EQ(s->p90, 0.9);
  EXPECT_EQ(s->worst10, 0.2);

  // 11 values: the worst decile is 2 values.
  s = SummarizeClientAccuracies({1, 1, 1, 1, 1, 1, 1, 1, 1, 0.25, 0.75});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->worst10, 0.5);
  EXPECT_EQ(s->p10, 0.75);  // ceil(1.1) = 2nd

  s = SummarizeClientAccuracies({0.7});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->clients, 1);
  EXPECT_EQ(std::vector<double>({s->mean, s->p10, s->p50, s->p90, s->worst10}),
            std::vector<double>(5, 0.7));
}

TEST(SummarizeClientAccuraciesTest, TheOrderOfTheValuesDoesNotMatter) {
  std::vector<double> values;
  for (int i = 0; i < 97; ++i) values.push_back(std::fmod(i * 0.377, 1.0));
  auto a = SummarizeClientAccuracies(values);
  std::reverse(values.begin(), values.end());
  auto b = SummarizeClientAccuracies(values);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->mean, b->mean);  // bit for bit: summed in sorted order
  EXPECT_EQ(a->p10, b->p10);
  EXPECT_EQ(a->worst10, b->worst10);
}

TEST(SummarizeClientAccuraciesTest, RefusesNothingAndNonFiniteValues) {
  EXPECT_EQ(SummarizeClientAccuracies({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      SummarizeClientAccuracies({0.5, std::numeric_limits<double>::quiet_NaN()}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

std::unique_ptr<data::FederatedDataset> Synthetic(int64_t clients) {
  return test_support::SmallSynthetic(clients, 20);
}

// The synthetic data without its per-device test splits, as Fashion-MNIST partitions are: the
// evaluator then splits each client's training examples.
class WithoutClientTests : public data::FederatedDataset {
 public:
  explicit WithoutClientTests(std::unique_ptr<data::FederatedDataset> base)
      : base_(std::move(base)) {}
  int64_t num_clients() const override { return base_->num_clients(); }
  const data::DatasetInfo& info() const override { return base_->info(); }
  int64_t NumTrainExamples(int64_t c) const override { return base_->NumTrainExamples(c); }
  data::Examples TrainExamples(int64_t c) const override { return base_->TrainExamples(c); }
  const data::Examples& EvalExamples() const override { return base_->EvalExamples(); }

 private:
  std::unique_ptr<data::FederatedDataset> base_;
};

SimulationOptions SmallRun(int threads, int64_t finetune_steps) {
  SimulationOptions options;
  options.model = "logreg";
  options.clients_per_round = 6;
  options.rounds = 2;
  options.plan = {.local_epochs = 1, .batch_size = 10, .learning_rate = 0.05};
  options.seed = 11;
  options.threads = threads;
  options.eval_every = 1;
  options.client_evaluation =
      ClientEvaluationOptions{.local_eval_fraction = 0.25, .finetune_steps = finetune_steps};
  return options;
}

using test_support::RunAll;

TEST(ClientEvaluationTest, SameNumbersForOneAndTwoThreadsAndFineTuningChangesThem) {
  for (bool split : {false, true}) {
    std::unique_ptr<data::FederatedDataset> dataset = Synthetic(12);
    if (split) dataset = std::make_unique<WithoutClientTests>(std::move(dataset));
    auto one = Simulator::Create(SmallRun(1, 5), dataset.get());
    auto two = Simulator::Create(SmallRun(2, 5), dataset.get());
    ASSERT_TRUE(one.ok() && two.ok()) << one.status() << two.status();
    const auto a = RunAll(**one, 2);
    const auto b = RunAll(**two, 2);
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE(a[r].client_eval.has_value() && b[r].client_eval.has_value());
      const ClientEvaluation& x = *a[r].client_eval;
      const ClientEvaluation& y = *b[r].client_eval;
      EXPECT_EQ(x.clients.size(), 12u) << "every client of the population, by default";
      EXPECT_EQ(x.clients, y.clients);
      EXPECT_EQ(x.accuracies, y.accuracies) << "split " << split << " round " << r + 1;
      EXPECT_EQ(x.finetuned_accuracies, y.finetuned_accuracies);
      EXPECT_EQ(x.summary.mean, y.summary.mean);
      ASSERT_TRUE(x.finetuned_summary.has_value());
      EXPECT_EQ(x.finetuned_summary->p50, y.finetuned_summary->p50);
      // Five local steps move every client's model: some accuracy changes.
      EXPECT_NE(x.finetuned_accuracies, x.accuracies) << "split " << split;
      for (double v : x.accuracies) EXPECT_TRUE(v >= 0 && v <= 1) << v;
    }
    EXPECT_NE(a[0].client_eval->accuracies, a[1].client_eval->accuracies)
        << "a round of training changes the clients' accuracies";
    EXPECT_EQ((*one)->global_parameters(), (*two)->global_parameters());
  }
}

TEST(ClientEvaluationTest, AccuraciesAreTheGlobalModelsOnEachClientsHeldOutExamples) {
  auto dataset = std::make_unique<WithoutClientTests>(Synthetic(12));
  auto sim = Simulator::Create(SmallRun(2, 0), dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const auto results = RunAll(**sim, 1);
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0].client_eval.has_value());
  const ClientEvaluation& eval = *results[0].client_eval;
  EXPECT_TRUE(eval.finetuned_accuracies.empty());
  EXPECT_FALSE(eval.finetuned_summary.has_value());
  auto split = data::LocalEvalDataset::Create(dataset.get(), {.fraction = 0.25, .seed = 11});
  ASSERT_TRUE(split.ok());
  auto model = (*sim)->GlobalModel();
  ASSERT_TRUE(model.ok());
  std::vector<double> expected;
  for (int64_t c : eval.clients) {
    const data::Examples held_out = (*split)->ClientTestExamples(c);
    ASSERT_EQ(held_out.size(), data::LocalHeldOutCount(dataset->NumTrainExamples(c), 0.25));
    auto sums = models::EvaluateRange(**model, held_out, 0, held_out.size());
    ASSERT_TRUE(sums.ok());
    expected.push_back(sums->accuracy());
  }
  EXPECT_EQ(eval.accuracies, expected);
  auto summary = SummarizeClientAccuracies(expected);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(eval.summary.p90, summary->p90);
  EXPECT_EQ(eval.summary.worst10, summary->worst10);
}

TEST(ClientEvaluationTest, SplitClientsTrainOnTheirTrainingPartOnly) {
  auto dataset = std::make_unique<WithoutClientTests>(Synthetic(6));
  auto options = SmallRun(2, 0);
  options.rounds = 1;  // every client, one epoch: the round trains on every training part once
  auto sim = Simulator::Create(options, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const auto results = RunAll(**sim, 1);
  ASSERT_EQ(results.size(), 1u);
  int64_t train_parts = 0;
  int64_t all = 0;
  for (int64_t c = 0; c < 6; ++c) {
    const int64_t n = dataset->NumTrainExamples(c);
    all += n;
    train_parts += n - data::LocalHeldOutCount(n, 0.25);
  }
  EXPECT_EQ(results[0].examples, train_parts);
  EXPECT_LT(train_parts, all);
}

TEST(ClientEvaluationTest, ASeededSampleOfClientsTheSameAtEveryRound) {
  auto dataset = Synthetic(20);
  auto options = SmallRun(2, 0);
  options.client_evaluation->local_eval_clients = 7;
  auto sim = Simulator::Create(options, dataset.get());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const auto results = RunAll(**sim, 2);
  ASSERT_EQ(results.size(), 2u);
  const std::vector<int64_t>& clients = results[0].client_eval->clients;
  EXPECT_EQ(clients.size(), 7u);
  EXPECT_TRUE(std::is_sorted(clients.begin(), clients.end()));
  EXPECT_EQ(results[1].client_eval->clients, clients);
  EXPECT_NE(clients.back(), 6) << "a sample of the population, not its first clients";
  options.seed = 12;
  auto other = Simulator::Create(options, dataset.get());
  ASSERT_TRUE(other.ok());
  const auto other_results = RunAll(**other, 1);
  ASSERT_EQ(other_results.size(), 1u);
  EXPECT_NE(other_results[0].client_eval->clients, clients);
}

TEST(ClientEvaluationTest, BadOptionsNameTheirField) {
  auto dataset = Synthetic(10);
  const std::vector<std::pair<ClientEvaluationOptions, const char*>> cases = {
      {{.local_eval_fraction = 0.0}, "`local_eval_fraction`"},
      {{.local_eval_fraction = 1.0}, "`local_eval_fraction`"},
      {{.local_eval_clients = 11}, "`local_eval_clients`"},
      {{.local_eval_clients = -1}, "`local_eval_clients`"},
      {{.finetune_steps = -2}, "`finetune_steps`"},
  };
  for (const auto& [bad, field] : cases) {
    auto options = SmallRun(1, 0);
    options.client_evaluation = bad;
    auto sim = Simulator::Create(options, dataset.get());
    EXPECT_EQ(sim.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(sim.status().message(), HasSubstr(field));
  }
}

}  // namespace
}  // namespace fedkit::simulation
