#include "aggregation/robust.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {
namespace {

using ::testing::HasSubstr;

constexpr double kBound = kDefaultMaxUpdateValue;
constexpr int64_t kMaxWeight = 1000;

struct Update {
  std::vector<float> delta;
  int64_t examples = 1;
};

std::unique_ptr<Aggregator> Make(absl::string_view spec, int64_t d) {
  absl::StatusOr<AggregatorSpec> parsed = ParseAggregatorSpec(spec);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<std::unique_ptr<Aggregator>> made =
      MakeAggregator(parsed.value(), d, kBound, kMaxWeight);
  EXPECT_TRUE(made.ok()) << made.status();
  return std::move(made).value();
}

AggregateReport Aggregate(absl::string_view spec, int64_t d, const std::vector<Update>& updates) {
  auto agg = Make(spec, d);
  for (const Update& u : updates) {
    absl::Status status = agg->Accumulate(u.delta, u.examples);
    EXPECT_TRUE(status.ok()) << status;
  }
  absl::StatusOr<AggregateReport> report = agg->Report();
  EXPECT_TRUE(report.ok()) << spec << ": " << report.status();
  return std::move(report).value();
}

std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits;
  for (float v : values) bits.push_back(std::bit_cast<uint32_t>(v));
  return bits;
}

double Norm(const std::vector<float>& v) {
  double squared = 0;
  for (float x : v) squared += static_cast<double>(x) * x;
  return std::sqrt(squared);
}

double Distance(const std::vector<float>& a, const std::vector<double>& b) {
  double squared = 0;
  for (size_t i = 0; i < a.size(); ++i) squared += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(squared);
}

std::vector<double> WeightedMean(const std::vector<Update>& updates) {
  std::vector<long double> sum(updates[0].delta.size(), 0);
  long double total = 0;
  for (const Update& u : updates) {
    for (size_t j = 0; j < sum.size(); ++j) {
      sum[j] += static_cast<long double>(u.delta[j]) * u.examples;
    }
    total += u.examples;
  }
  std::vector<double> mean(sum.size());
  for (size_t j = 0; j < sum.size(); ++j) mean[j] = static_cast<double>(sum[j] / total);
  return mean;
}

// ---------------------------------------------------------------------------------------------
// Honest updates clustered around a vector, and attackers.

enum class Attack { kSignFlip, kHuge, kNoise };
const char* AttackName(Attack attack) {
  switch (attack) {
    case Attack::kSignFlip:
      return "sign-flipped x10";
    case Attack::kHuge:
      return "scaled x100";
    case Attack::kNoise:
      return "gaussian noise (stddev 20)";
  }
  return "";
}

struct Scenario {
  std::vector<Update> honest;
  std::vector<Update> attackers;
  std::vector<Update> All() const {
    std::vector<Update> all = honest;
    all.insert(all.end(), attackers.begin(), attackers.end());
    return all;
  }
};

constexpr int kD = 20;

Scenario MakeScenario(Attack attack, int num_honest, int num_attackers, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  std::normal_distribution<float> spread(0.0f, 0.05f);
  std::normal_distribution<float> noise(0.0f, 20.0f);
  std::uniform_int_distribution<int64_t> examples(1, 600);
  std::vector<float> center(kD);
  for (float& c : center) c = unit(rng);
  auto honest_like = [&] {
    Update u;
    for (float c : center) u.delta.push_back(c + spread(rng));
    u.examples = examples(rng);
    return u;
  };
  Scenario s;
  for (int i = 0; i < num_honest; ++i) s.honest.push_back(honest_like());
  for (int i = 0; i < num_attackers; ++i) {
    Update u = honest_like();
    for (float& v : u.delta) {
      switch (attack) {
        case Attack::kSignFlip:
          v *= -10.0f;
          break;
        case Attack::kHuge:
          v *= 100.0f;
          break;
        case Attack::kNoise:
          v = noise(rng);
          break;
      }
    }
    s.attackers.push_back(u);
  }
  return s;
}

// Krum scores computed the plain way (long double, full matrix), and the updates ranked by them.
std::vector<size_t> ReferenceKrumRanking(const std::vector<Update>& updates, int f) {
  const size_t n = updates.size();
  std::vector<long double> scores(n);
  for (size_t i = 0; i < n; ++i) {
    std::vector<long double> distances;
    for (size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      long double squared = 0;
      for (size_t k = 0; k < updates[i].delta.size(); ++k) {
        const long double diff =
            static_cast<long double>(updates[i].delta[k]) - updates[j].delta[k];
        squared += diff * diff;
      }
      distances.push_back(squared);
    }
    std::sort(distances.begin(), distances.end());
    scores[i] = std::accumulate(distances.begin(), distances.begin() + (n - f - 2), 0.0L);
  }
  std::vector<size_t> ranking(n);
  std::iota(ranking.begin(), ranking.end(), 0);
  std::sort(ranking.begin(), ranking.end(),
            [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  return ranking;
}

// 15 honest and 6 attackers (n = 21): median (6 < 10.5), trimmed mean with beta = 0.3 (trims
// floor(6.3) = 6 per end), Krum and Multi-Krum with F = 6 (21 >= 15) all tolerate them.
TEST(RobustAggregatorTest, StaysNearTheHonestMeanWhileTheMeanIsPulledAway) {
  constexpr int kHonest = 15;
  constexpr int kAttackers = 6;
  for (Attack attack : {Attack::kSignFlip, Attack::kHuge, Attack::kNoise}) {
    const Scenario s = MakeScenario(attack, kHonest, kAttackers, 17);
    const std::vector<double> honest_mean = WeightedMean(s.honest);
    const AggregateReport mean = Aggregate("mean", kD, s.All());
    EXPECT_GT(Distance(mean.average, honest_mean), 3.0) << AttackName(attack);
    for (const char* spec : {"median", "trimmed-mean:0.3", "krum:6", "multi-krum:6,5"}) {
      const AggregateReport robust = Aggregate(spec, kD, s.All());
      // The honest updates lie about 0.05 * sqrt(20) ~ 0.22 from their mean.
      EXPECT_LT(Distance(robust.average, honest_mean), 0.5) << spec << ", " << AttackName(attack);
      EXPECT_EQ(robust.num_inputs, kHonest + kAttackers);
      EXPECT_EQ(robust.total_examples, mean.total_examples);
    }
  }
}

TEST(KrumTest, PicksTheHonestUpdateWithTheLowestScoreBitForBit) {
  for (Attack attack : {Attack::kSignFlip, Attack::kHuge, Attack::kNoise}) {
    const Scenario s = MakeScenario(attack, 13, 5, 23);
    const std::vector<Update> all = s.All();
    const std::vector<size_t> ranking = ReferenceKrumRanking(all, 5);
    ASSERT_LT(ranking[0], s.honest.size()) << AttackName(attack);
    const AggregateReport report = Aggregate("krum:5", kD, all);
    EXPECT_EQ(Bits(report.average), Bits(all[ranking[0]].delta)) << AttackName(attack);
    EXPECT_EQ(report.total_weight, all[ranking[0]].examples);
    EXPECT_EQ(report.num_inputs, 18);
  }
}

TEST(KrumTest, MultiKrumAveragesTheMHonestUpdatesWithTheLowestScoresByExampleCount) {
  constexpr int kM = 6;
  for (Attack attack : {Attack::kSignFlip, Attack::kHuge, Attack::kNoise}) {
    const Scenario s = MakeScenario(attack, 13, 5, 29);
    const std::vector<Update> all = s.All();
    const std::vector<size_t> ranking = ReferenceKrumRanking(all, 5);
    auto fedavg = *WeightedFedAvgAggregator::Create(kD, kBound, kMaxWeight);
    int64_t weight = 0;
    for (int k = 0; k < kM; ++k) {
      ASSERT_LT(ranking[k], s.honest.size()) << AttackName(attack);
      const Update& u = all[ranking[k]];
      ASSERT_TRUE(fedavg->Accumulate(u.delta, u.examples).ok());
      weight += u.examples;
    }
    const AggregateReport expected = *fedavg->Report();
    const AggregateReport report = Aggregate("multi-krum:5,6", kD, all);
    // The same exact sum as WeightedFedAvgAggregator: the same bits.
    EXPECT_EQ(Bits(report.average), Bits(expected.average)) << AttackName(attack);
    EXPECT_EQ(report.total_weight, weight);
  }
}

TEST(KrumTest, MultiKrumSelectsAtMostNMinusF) {
  const Scenario s = MakeScenario(Attack::kNoise, 7, 0, 31);  // n = 7, F = 2: n - F = 5
  const std::vector<size_t> ranking = ReferenceKrumRanking(s.honest, 2);
  int64_t weight = 0;
  for (int k = 0; k < 5; ++k) weight += s.honest[ranking[k]].examples;
  EXPECT_EQ(Aggregate("multi-krum:2,100", kD, s.honest).total_weight, weight);
  EXPECT_EQ(Bits(Aggregate("multi-krum:2,100", kD, s.honest).average),
            Bits(Aggregate("multi-krum:2,5", kD, s.honest).average));
}

TEST(KrumTest, MultiKrumWithOneSelectedIsKrum) {
  const Scenario s = MakeScenario(Attack::kSignFlip, 9, 2, 37);
  const AggregateReport krum = Aggregate("krum:2", kD, s.All());
  const AggregateReport multi = Aggregate("multi-krum:2,1", kD, s.All());
  EXPECT_EQ(Bits(krum.average), Bits(multi.average));
  EXPECT_EQ(krum.total_weight, multi.total_weight);
}

// All four points of a square score the same: the canonical order decides (lexicographic on the
// values, -1 before +1), whatever the order they arrive in.
TEST(KrumTest, EqualScoresFallToTheCanonicallyFirstUpdate) {
  const std::vector<Update> square = {{{1, 0}, 4}, {{0, 1}, 3}, {{-1, 0}, 2}, {{0, -1}, 1}};
  EXPECT_EQ(Aggregate("krum:0", 2, square).average, (std::vector<float>{-1, 0}));
  EXPECT_EQ(Aggregate("krum:0", 2, square).total_weight, 2);
  // Two pairs of identical points: all four score 4; the weight breaks the tie between twins.
  const std::vector<Update> twins = {{{0, 1}, 7}, {{0, 1}, 3}, {{0, -1}, 9}, {{0, -1}, 1}};
  std::vector<int> order = {0, 1, 2, 3};
  do {
    std::vector<Update> permuted;
    for (int i : order) permuted.push_back(twins[i]);
    const AggregateReport krum = Aggregate("krum:0", 2, permuted);
    EXPECT_EQ(krum.average, (std::vector<float>{0, -1}));
    EXPECT_EQ(krum.total_weight, 1);
    const AggregateReport multi = Aggregate("multi-krum:0,2", 2, permuted);
    EXPECT_EQ(multi.average, (std::vector<float>{0, -1}));
    EXPECT_EQ(multi.total_weight, 10);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(KrumTest, ReportNeedsTwoFPlusThreeUpdates) {
  for (const char* spec : {"krum:1", "multi-krum:1,2"}) {
    auto agg = Make(spec, 2);
    for (int i = 0; i < 4; ++i)
      ASSERT_TRUE(agg->Accumulate(std::vector<float>{1.0f * i, 0}, 1).ok());
    EXPECT_FALSE(agg->CanReport());
    absl::StatusOr<AggregateReport> early = agg->Report();
    EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(early.status().message(), HasSubstr("n = 4"));
    EXPECT_THAT(early.status().message(), HasSubstr("F = 1"));
    EXPECT_THAT(early.status().message(), HasSubstr("2F + 3 = 5"));
    ASSERT_TRUE(agg->Accumulate(std::vector<float>{4, 0}, 1).ok());  // the refusal changed nothing
    EXPECT_TRUE(agg->CanReport());
    EXPECT_TRUE(agg->Report().ok()) << spec;
  }
}

// ---------------------------------------------------------------------------------------------
// Median and trimmed mean

const std::vector<Update> kFive = {{{1, -2, 0.5f}, 3},
                                   {{3, 7, -0.25f}, 100},
                                   {{-4, 0, 8}, 1},
                                   {{2, 1, 0.125f}, 9},
                                   {{0.75f, -9, 100}, 2}};

TEST(MedianTest, OddCountReleasesTheMiddleValueExactlyIgnoringWeights) {
  const AggregateReport report = Aggregate("median", 3, kFive);
  EXPECT_EQ(report.average, (std::vector<float>{1, 0, 0.5f}));
  EXPECT_EQ(report.num_inputs, 5);
  EXPECT_EQ(report.total_weight, 1);
  EXPECT_EQ(report.total_examples, 115);

  // Random data: each coordinate is the sorted middle, bit for bit.
  const Scenario s = MakeScenario(Attack::kNoise, 31, 0, 41);
  const AggregateReport random = Aggregate("median", kD, s.honest);
  for (int j = 0; j < kD; ++j) {
    std::vector<float> column;
    for (const Update& u : s.honest) column.push_back(u.delta[j]);
    std::sort(column.begin(), column.end());
    EXPECT_EQ(random.average[j], column[15]) << j;
  }
}

TEST(MedianTest, EvenCountReleasesTheMeanOfTheTwoMiddleValues) {
  std::vector<Update> six = kFive;
  six.push_back({{10, 10, 10}, 5});
  const AggregateReport report = Aggregate("median", 3, six);
  EXPECT_EQ(report.average, (std::vector<float>{1.5f, 0.5f, 4.25f}));
  EXPECT_EQ(report.total_weight, 2);
}

TEST(TrimmedMeanTest, DropsTheExtremesOfEachCoordinate) {
  // beta = 0.2 of 5 trims one value from each end.
  const AggregateReport report = Aggregate("trimmed-mean:0.2", 3, kFive);
  EXPECT_EQ(report.average, (std::vector<float>{1.25f, static_cast<float>(-1.0 / 3), 2.875f}));
  EXPECT_EQ(report.total_weight, 3);
  EXPECT_EQ(report.total_examples, 115);
}

TEST(TrimmedMeanTest, TrimsFloorOfBetaTimesNDespiteDecimalRounding) {
  // 0.29 * 100 is 28.999999999999996 in double; the trim is 29 per end, leaving 42 values.
  std::vector<Update> hundred;
  for (int i = 0; i < 100; ++i) hundred.push_back({{static_cast<float>(i)}, 1});
  const AggregateReport report = Aggregate("trimmed-mean:0.29", 1, hundred);
  EXPECT_EQ(report.total_weight, 42);
  EXPECT_EQ(report.average[0], 49.5f);
}

TEST(TrimmedMeanTest, BetaZeroIsTheUnweightedMean) {
  const Scenario s = MakeScenario(Attack::kHuge, 40, 9, 43);
  std::vector<Update> all = s.All();
  const AggregateReport trimmed = Aggregate("trimmed-mean:0", kD, all);
  for (Update& u : all) u.examples = 7;  // FedAvg with equal weights is the unweighted mean
  const AggregateReport mean = Aggregate("mean", kD, all);
  ASSERT_EQ(trimmed.average.size(), mean.average.size());
  for (size_t j = 0; j < mean.average.size(); ++j) {
    EXPECT_NEAR(trimmed.average[j], mean.average[j], 2.4e-7 * std::abs(mean.average[j]) + 1e-12)
        << j;
  }
  EXPECT_EQ(trimmed.total_weight, 49);
}

// ---------------------------------------------------------------------------------------------
// Norm bounding

TEST(NormBoundTest, UpdatesWithinTheBoundAreUntouched) {
  const Scenario s = MakeScenario(Attack::kNoise, 25, 0, 47);
  double largest = 0;
  for (const Update& u : s.honest) largest = std::max(largest, Norm(u.delta));
  auto agg = *NormBoundAggregator::Create(kD, kBound, kMaxWeight, largest);
  for (const Update& u : s.honest) ASSERT_TRUE(agg->Accumulate(u.delta, u.examples).ok());
  EXPECT_EQ(agg->num_scaled(), 0);
  const AggregateReport report = *agg->Report();
  const AggregateReport mean = Aggregate("mean", kD, s.honest);
  EXPECT_EQ(Bits(report.average), Bits(mean.average));
  EXPECT_EQ(report.total_weight, mean.total_weight);
  EXPECT_EQ(report.total_examples, mean.total_examples);
}

TEST(NormBoundTest, LargerUpdatesAreScaledToNormCExactly) {
  std::mt19937 rng(53);
  std::normal_distribution<float> value(0.0f, 3.0f);
  for (double c : {1.5, 0.01, 7.0}) {
    std::vector<float> big(100);
    for (float& v : big) v = value(rng);
    const double norm = Norm(big);
    ASSERT_GT(norm, c);
    auto agg = *NormBoundAggregator::Create(100, kBound, kMaxWeight, c);
    ASSERT_TRUE(agg->Accumulate(big, 17).ok());
    EXPECT_EQ(agg->num_scaled(), 1);
    const AggregateReport report = *agg->Report();
    EXPECT_NEAR(Norm(report.average), c, 1e-6 * c);
    for (size_t j = 0; j < big.size(); ++j) {  // the same direction
      EXPECT_NEAR(report.average[j], big[j] * (c / norm), 1.2e-7 * std::abs(big[j] * (c / norm)))
          << j;
    }
  }
  // A small and a big update: the big one's pull on the weighted mean is bounded by C.
  auto agg = *NormBoundAggregator::Create(2, kBound, kMaxWeight, 1.0);
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{0.5f, 0}, 3).ok());
  ASSERT_TRUE(agg->Accumulate(std::vector<float>{0, 300}, 1).ok());
  const AggregateReport report = *agg->Report();
  EXPECT_EQ(report.average, (std::vector<float>{0.375f, 0.25f}));  // (3 * 0.5, 1 * 1) / 4
  EXPECT_EQ(report.total_weight, 4);
}

TEST(NormBoundTest, BoundsEachAttackersPull) {
  for (Attack attack : {Attack::kSignFlip, Attack::kHuge, Attack::kNoise}) {
    const Scenario s = MakeScenario(attack, 15, 3, 59);
    double largest = 0;
    for (const Update& u : s.honest) largest = std::max(largest, Norm(u.delta));
    const double c = 1.1 * largest;  // every honest update passes untouched
    int64_t honest_weight = 0, attacker_weight = 0;
    for (const Update& u : s.honest) honest_weight += u.examples;
    for (const Update& u : s.attackers) attacker_weight += u.examples;
    const std::vector<double> honest_mean = WeightedMean(s.honest);
    double honest_mean_norm = 0;
    for (double v : honest_mean) honest_mean_norm += v * v;
    honest_mean_norm = std::sqrt(honest_mean_norm);
    // result - honest mean = (sum_a w_a (a' - honest mean)) / W with |a'| <= C.
    const double bound = static_cast<double>(attacker_weight) * (c + honest_mean_norm) /
                         static_cast<double>(honest_weight + attacker_weight);
    AggregatorSpec spec;
    spec.kind = AggregatorKind::kNormBound;
    spec.norm_bound = c;
    const AggregateReport robust = Aggregate(FormatAggregatorSpec(spec), kD, s.All());
    const AggregateReport mean = Aggregate("mean", kD, s.All());
    const double robust_distance = Distance(robust.average, honest_mean);
    EXPECT_LE(robust_distance, bound * (1 + 1e-6)) << AttackName(attack);
    EXPECT_GT(Distance(mean.average, honest_mean), 3 * robust_distance) << AttackName(attack);
  }
}

// ---------------------------------------------------------------------------------------------
// Specs

TEST(AggregatorSpecTest, ParsesFormatsAndRoundTrips) {
  for (const char* text :
       {"mean", "median", "trimmed-mean:0", "trimmed-mean:0.1", "trimmed-mean:0.49", "krum:0",
        "krum:3", "multi-krum:2,5", "multi-krum:0,1", "norm-bound:2.5", "norm-bound:1e-05",
        "norm-bound:1e+20"}) {
    absl::StatusOr<AggregatorSpec> spec = ParseAggregatorSpec(text);
    ASSERT_TRUE(spec.ok()) << text << ": " << spec.status();
    EXPECT_EQ(FormatAggregatorSpec(*spec), text);
    EXPECT_EQ(*ParseAggregatorSpec(FormatAggregatorSpec(*spec)), *spec) << text;
  }
  const AggregatorSpec multi = *ParseAggregatorSpec("multi-krum:2,5");
  EXPECT_EQ(multi.kind, AggregatorKind::kMultiKrum);
  EXPECT_EQ(multi.attackers, 2);
  EXPECT_EQ(multi.selected, 5);
  EXPECT_EQ(ParseAggregatorSpec("trimmed-mean:.25")->beta, 0.25);
  EXPECT_EQ(FormatAggregatorSpec(*ParseAggregatorSpec("norm-bound:0.0010")), "norm-bound:0.001");
  EXPECT_EQ(FormatAggregatorSpec(*ParseAggregatorSpec("krum:007")), "krum:7");

  // Random parameters: the formatted spec parses back to the same doubles.
  std::mt19937_64 rng(61);
  std::uniform_real_distribution<double> beta(0.0, 0.5);
  std::uniform_real_distribution<double> exponent(-30, 30);
  for (int i = 0; i < 200; ++i) {
    AggregatorSpec trimmed;
    trimmed.kind = AggregatorKind::kTrimmedMean;
    trimmed.beta = beta(rng);
    EXPECT_EQ(*ParseAggregatorSpec(FormatAggregatorSpec(trimmed)), trimmed);
    AggregatorSpec bounded;
    bounded.kind = AggregatorKind::kNormBound;
    bounded.norm_bound = std::pow(10.0, exponent(rng));
    EXPECT_EQ(*ParseAggregatorSpec(FormatAggregatorSpec(bounded)), bounded);
  }
}

TEST(AggregatorSpecTest, RefusesAnythingElseQuotingItAndListingTheForms) {
  for (const char* text : {"",
                           "fedavg",
                           "Mean",
                           "median:3",
                           "mean:",
                           "mean:1",
                           "trimmed-mean",
                           "trimmed-mean:",
                           "trimmed-mean:0.5",
                           "trimmed-mean:0.7",
                           "trimmed-mean:-0.1",
                           "trimmed-mean:nan",
                           "trimmed-mean:inf",
                           "trimmed-mean:0.1x",
                           "trimmed-mean: 0.1",
                           "trimmed-mean:+0.1",
                           "trimmed-mean:0x1p-3",
                           "krum",
                           "krum:",
                           "krum:-1",
                           "krum:1.5",
                           "krum:1e2",
                           "krum: 1",
                           "krum:1 ",
                           " krum:1",
                           "krum:+1",
                           "krum:4294967297",
                           "krum:99999999999999999999",
                           "multi-krum",
                           "multi-krum:1",
                           "multi-krum:1,",
                           "multi-krum:,2",
                           "multi-krum:1,0",
                           "multi-krum:1,2,3",
                           "multi-krum:-1,2",
                           "multi-krum:1;2",
                           "norm-bound",
                           "norm-bound:0",
                           "norm-bound:-1",
                           "norm-bound:inf",
                           "norm-bound:nan",
                           "norm-bound:1e999",
                           "norm-bound:0e5",
                           "krum:1:2"}) {
    absl::StatusOr<AggregatorSpec> spec = ParseAggregatorSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << text << "\"";
    EXPECT_THAT(spec.status().message(), HasSubstr(absl::StrCat("\"", text, "\"")));
    EXPECT_THAT(spec.status().message(), HasSubstr(AcceptedAggregatorSpecs()));
  }
  EXPECT_TRUE(ParseAggregatorSpec("krum:4294967296").ok());  // kMaxSpecCount
}

TEST(AggregatorSpecTest, MakeAggregatorBuildsEachKindAndChecksItsArguments) {
  EXPECT_NE(dynamic_cast<WeightedFedAvgAggregator*>(Make("mean", 4).get()), nullptr);
  EXPECT_NE(dynamic_cast<CoordinateMedianAggregator*>(Make("median", 4).get()), nullptr);
  EXPECT_NE(dynamic_cast<TrimmedMeanAggregator*>(Make("trimmed-mean:0.1", 4).get()), nullptr);
  EXPECT_NE(dynamic_cast<KrumAggregator*>(Make("krum:1", 4).get()), nullptr);
  EXPECT_NE(dynamic_cast<KrumAggregator*>(Make("multi-krum:1,2", 4).get()), nullptr);
  EXPECT_NE(dynamic_cast<NormBoundAggregator*>(Make("norm-bound:1", 4).get()), nullptr);

  for (const char* text : {"mean", "median", "trimmed-mean:0.1", "krum:1", "norm-bound:1"}) {
    const AggregatorSpec spec = *ParseAggregatorSpec(text);
    EXPECT_EQ(MakeAggregator(spec, 0, kBound, kMaxWeight).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_EQ(MakeAggregator(spec, 4, std::numeric_limits<double>::infinity(), kMaxWeight)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_EQ(MakeAggregator(spec, 4, kBound, 0).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_EQ(MakeAggregator(spec, 4, kBound, kMaxWeightLimit + 1).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
  AggregatorSpec bad;
  bad.kind = AggregatorKind::kTrimmedMean;
  bad.beta = 0.5;
  EXPECT_EQ(MakeAggregator(bad, 4, kBound, kMaxWeight).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = AggregatorSpec{};
  bad.kind = AggregatorKind::kMultiKrum;
  bad.attackers = 1;  // selected = 0: not a multi-krum spec
  EXPECT_EQ(MakeAggregator(bad, 4, kBound, kMaxWeight).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = AggregatorSpec{};
  bad.kind = AggregatorKind::kKrum;
  bad.attackers = -1;
  EXPECT_EQ(MakeAggregator(bad, 4, kBound, kMaxWeight).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = AggregatorSpec{};
  bad.kind = AggregatorKind::kMedian;
  bad.norm_bound = 3;  // a parameter median does not use
  EXPECT_EQ(MakeAggregator(bad, 4, kBound, kMaxWeight).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = AggregatorSpec{};
  bad.kind = AggregatorKind::kNormBound;
  bad.norm_bound = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(MakeAggregator(bad, 4, kBound, kMaxWeight).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// The Aggregator contract

const char* const kRobustSpecs[] = {"median",         "trimmed-mean:0.2", "krum:1",
                                    "multi-krum:1,3", "norm-bound:3",     "mean"};

TEST(RobustAggregatorTest, BadUpdatesAreRefusedAndLeaveTheAggregateUnchanged) {
  const std::vector<Update> good = {
      {{1, 2, 3}, 5}, {{-1, 0.5f, 2}, 1}, {{0, 0, 1}, 9}, {{4, 4, 4}, 2}, {{2, -3, 0}, 7}};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Update> bad = {
      {{1, 2}, 1},      {{1, 2, 3, 4}, 1}, {{1, nan, 3}, 1},
      {{inf, 2, 3}, 1}, {{1, -inf, 3}, 1}, {{1, 2, static_cast<float>(2 * kBound)}, 1},
      {{1, 2, 3}, 0},   {{1, 2, 3}, -4},   {{1, 2, 3}, kMaxWeight + 1}};
  for (const char* spec : kRobustSpecs) {
    auto agg = Make(spec, 3);
    for (size_t i = 0; i < good.size(); ++i) {
      ASSERT_TRUE(agg->Accumulate(good[i].delta, good[i].examples).ok());
      for (const Update& u : bad) {
        EXPECT_EQ(agg->Accumulate(u.delta, u.examples).code(), absl::StatusCode::kInvalidArgument)
            << spec;
      }
      EXPECT_EQ(agg->num_inputs(), static_cast<int64_t>(i + 1));
    }
    const AggregateReport report = *agg->Report();
    const AggregateReport clean = Aggregate(spec, 3, good);
    EXPECT_EQ(Bits(report.average), Bits(clean.average)) << spec;
    EXPECT_EQ(report.total_weight, clean.total_weight) << spec;
    EXPECT_EQ(report.total_examples, 24) << spec;
  }
}

TEST(RobustAggregatorTest, ReportNeedsInputsAndHappensOnce) {
  for (const char* spec : kRobustSpecs) {
    auto agg = Make(spec, 2);
    EXPECT_FALSE(agg->CanReport());
    EXPECT_EQ(agg->Report().status().code(), absl::StatusCode::kFailedPrecondition) << spec;
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(agg->Accumulate(std::vector<float>{1.0f * i, 1}, 1).ok());
    ASSERT_TRUE(agg->CanReport()) << spec;
    ASSERT_TRUE(agg->Report().ok()) << spec;
    EXPECT_FALSE(agg->CanReport());
    absl::StatusOr<AggregateReport> again = agg->Report();
    EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << spec;
    EXPECT_THAT(again.status().message(), HasSubstr("already reported"));
    EXPECT_EQ(agg->Accumulate(std::vector<float>{0, 0}, 1).code(),
              absl::StatusCode::kFailedPrecondition)
        << spec;
    auto other = agg->CloneEmpty();
    EXPECT_EQ(agg->MergeWith(*other).code(), absl::StatusCode::kFailedPrecondition) << spec;
    EXPECT_EQ(agg->MergeSerialized(other->Serialize()).code(),
              absl::StatusCode::kFailedPrecondition)
        << spec;
  }
}

TEST(RobustAggregatorTest, MergesOnlyTheSameKindAndConfiguration) {
  const std::vector<std::pair<const char*, const char*>> pairs = {
      {"median", "trimmed-mean:0"},
      {"trimmed-mean:0.1", "trimmed-mean:0.2"},
      {"krum:1", "krum:2"},
      {"krum:1", "multi-krum:1,1"},
      {"multi-krum:1,2", "multi-krum:1,3"},
      {"norm-bound:1", "norm-bound:2"},
      {"median", "mean"},
      {"norm-bound:1", "mean"}};
  for (const auto& [a, b] : pairs) {
    for (const auto& [into, from] : {std::pair(a, b), std::pair(b, a)}) {
      auto target = Make(into, 2);
      auto source = Make(from, 2);
      ASSERT_TRUE(target->Accumulate(std::vector<float>{1, 2}, 3).ok());
      ASSERT_TRUE(source->Accumulate(std::vector<float>{3, 4}, 5).ok());
      EXPECT_EQ(target->MergeWith(*source).code(), absl::StatusCode::kFailedPrecondition)
          << from << " into " << into;
      EXPECT_EQ(target->MergeSerialized(source->Serialize()).code(),
                absl::StatusCode::kFailedPrecondition)
          << from << " into " << into;
      EXPECT_EQ(target->num_inputs(), 1);
    }
  }
  for (const char* spec : kRobustSpecs) {  // another dimension
    auto target = Make(spec, 2);
    auto source = Make(spec, 3);
    ASSERT_TRUE(source->Accumulate(std::vector<float>{1, 2, 3}, 1).ok());
    EXPECT_FALSE(target->MergeWith(*source).ok()) << spec;
    EXPECT_FALSE(target->MergeSerialized(source->Serialize()).ok()) << spec;
    EXPECT_EQ(target->num_inputs(), 0);
  }
  for (const char* spec : kRobustSpecs) {  // another value bound or weight cap
    auto target = Make(spec, 2);
    auto source = *MakeAggregator(*ParseAggregatorSpec(spec), 2, kBound / 2, kMaxWeight);
    auto heavier = *MakeAggregator(*ParseAggregatorSpec(spec), 2, kBound, kMaxWeight + 1);
    EXPECT_EQ(target->MergeWith(*source).code(), absl::StatusCode::kFailedPrecondition) << spec;
    EXPECT_EQ(target->MergeWith(*heavier).code(), absl::StatusCode::kFailedPrecondition) << spec;
  }
}

TEST(RobustAggregatorTest, SerializedPartialsMergeAndMalformedBytesAreRefused) {
  const Scenario s = MakeScenario(Attack::kSignFlip, 10, 3, 67);
  const std::vector<Update> all = s.All();
  for (const char* spec : kRobustSpecs) {
    const AggregateReport whole = Aggregate(spec, kD, all);
    auto first = Make(spec, kD);
    auto second = first->CloneEmpty();
    for (size_t i = 0; i < all.size(); ++i) {
      ASSERT_TRUE((i % 3 == 0 ? *first : *second).Accumulate(all[i].delta, all[i].examples).ok());
    }
    const std::string bytes = second->Serialize();
    const std::vector<absl::int128> before = first->sum().fixed_point_sums();
    const int64_t inputs = first->num_inputs();
    EXPECT_EQ(first->MergeSerialized(bytes.substr(0, bytes.size() - 1)).code(),
              absl::StatusCode::kInvalidArgument)
        << spec;
    EXPECT_EQ(first->MergeSerialized("").code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_EQ(first->MergeSerialized(bytes + "x").code(), absl::StatusCode::kInvalidArgument)
        << spec;
    // The buffering aggregators' bytes end with the updates, each a 64-bit weight and kD floats:
    // a NaN as the last value, and a weight outside [1, kMaxWeight], are refused.
    const std::string spec_name = spec;
    if (spec_name != "mean" && spec_name != "norm-bound:3") {
      std::string tampered = bytes;
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(tampered.data() + tampered.size() - sizeof(float), &nan, sizeof(float));
      EXPECT_EQ(first->MergeSerialized(tampered).code(), absl::StatusCode::kInvalidArgument)
          << spec;
      const size_t first_weight =
          bytes.size() - second->num_inputs() * (sizeof(int64_t) + kD * sizeof(float));
      for (int64_t weight : {int64_t{0}, int64_t{-3}, kMaxWeight + 1}) {
        tampered = bytes;
        std::memcpy(tampered.data() + first_weight, &weight, sizeof(weight));
        EXPECT_EQ(first->MergeSerialized(tampered).code(), absl::StatusCode::kInvalidArgument)
            << spec << " weight " << weight;
      }
      int64_t original = 0;  // the offset is right: it held the first update's weight
      std::memcpy(&original, bytes.data() + first_weight, sizeof(original));
      EXPECT_EQ(original, all[1].examples) << spec;
    }
    EXPECT_EQ(first->num_inputs(), inputs) << spec;
    EXPECT_EQ(first->sum().fixed_point_sums(), before) << spec;

    ASSERT_TRUE(first->MergeSerialized(bytes).ok()) << spec;
    EXPECT_EQ(first->num_inputs(), static_cast<int64_t>(all.size()));
    const AggregateReport merged = *first->Report();
    EXPECT_EQ(Bits(merged.average), Bits(whole.average)) << spec;
    EXPECT_EQ(merged.total_weight, whole.total_weight) << spec;
    EXPECT_EQ(merged.total_examples, whole.total_examples) << spec;
  }
}

// Whatever the arrival order and the split over CloneEmpty()/MergeWith/MergeSerialized, Report
// releases the same bits. The data has ties on purpose: twins (the same update with the same or
// another weight), coordinates that are +0 or -0, and a far group.
TEST(RobustAggregatorTest, ReportIsTheSameBitsForAnyOrderAndSplit) {
  constexpr int kDim = 9;
  std::mt19937 rng(71);
  Scenario s = MakeScenario(Attack::kNoise, 18, 4, 73);
  std::vector<Update> updates;
  for (const Update& u : s.All()) {
    Update trimmed{std::vector<float>(u.delta.begin(), u.delta.begin() + kDim), u.examples};
    updates.push_back(trimmed);
  }
  std::bernoulli_distribution coin(0.5);
  for (Update& u : updates) u.delta[0] = coin(rng) ? 0.0f : -0.0f;
  // Updates 0 and 1 at the honest centre, so that Krum's best scores are twins' ties.
  std::vector<float> centre(kDim, 0.0f);
  for (int i = 0; i < 18; ++i) {
    for (int j = 1; j < kDim; ++j) centre[j] += updates[i].delta[j] / 18;
  }
  updates[0].delta = centre;
  centre[1] += 1e-3f;
  updates[1].delta = centre;
  updates.push_back({updates[0].delta, updates[0].examples});  // identical twin
  updates.push_back({updates[0].delta, updates[0].examples + 3});
  updates.push_back({updates[1].delta, updates[1].examples + 11});  // twin of another weight
  updates.push_back({updates[1].delta, updates[1].examples + 5});
  const int n = static_cast<int>(updates.size());

  const std::vector<std::string> specs = {"mean",           "median",           "trimmed-mean:0.2",
                                          "trimmed-mean:0", "krum:4",           "krum:0",
                                          "multi-krum:4,4", "multi-krum:2,100", "norm-bound:2.5"};
  for (const std::string& spec : specs) {
    auto sequential = Make(spec, kDim);
    for (const Update& u : updates) ASSERT_TRUE(sequential->Accumulate(u.delta, u.examples).ok());
    const std::vector<absl::int128> expected_sum = sequential->sum().fixed_point_sums();
    const AggregateReport expected = *sequential->Report();

    for (int trial = 0; trial < 25; ++trial) {
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      const int num_parts = 1 + trial % 4;
      std::vector<std::unique_ptr<Aggregator>> parts;
      parts.push_back(Make(spec, kDim));
      for (int p = 1; p < num_parts; ++p) parts.push_back(parts[p - 1]->CloneEmpty());
      std::uniform_int_distribution<int> pick(0, num_parts - 1);
      for (int i : order) {
        ASSERT_TRUE(parts[pick(rng)]->Accumulate(updates[i].delta, updates[i].examples).ok());
      }
      // Fold the parts together in a random order, in memory or through bytes.
      std::vector<int> fold(num_parts);
      std::iota(fold.begin(), fold.end(), 0);
      std::shuffle(fold.begin(), fold.end(), rng);
      Aggregator& target = *parts[fold[0]];
      for (int p = 1; p < num_parts; ++p) {
        const Aggregator& source = *parts[fold[p]];
        ASSERT_TRUE(
            (coin(rng) ? target.MergeWith(source) : target.MergeSerialized(source.Serialize()))
                .ok());
      }
      ASSERT_EQ(target.num_inputs(), n);
      EXPECT_EQ(target.sum().fixed_point_sums(), expected_sum) << spec;
      absl::StatusOr<AggregateReport> report = target.Report();
      ASSERT_TRUE(report.ok()) << spec << ": " << report.status();
      EXPECT_EQ(Bits(report->average), Bits(expected.average)) << spec << " trial " << trial;
      EXPECT_EQ(report->num_inputs, expected.num_inputs) << spec;
      EXPECT_EQ(report->total_weight, expected.total_weight) << spec;
      EXPECT_EQ(report->total_examples, expected.total_examples) << spec;
    }
  }
}

// The median of -0 and +0 values is a bit pattern fixed by the total order (-0 before +0).
TEST(MedianTest, SignedZerosGiveOneBitPatternWhateverTheOrder) {
  std::vector<Update> zeros = {{{-0.0f}, 1}, {{0.0f}, 1}, {{0.0f}, 1}, {{-0.0f}, 1}, {{0.0f}, 1}};
  std::vector<int> order = {0, 1, 2, 3, 4};
  do {
    std::vector<Update> permuted;
    for (int i : order) permuted.push_back(zeros[i]);
    EXPECT_EQ(std::bit_cast<uint32_t>(Aggregate("median", 1, permuted).average[0]), 0u);
    permuted.pop_back();  // {-0, -0, +0, +0} or similar: two middles
    const AggregateReport even = Aggregate("median", 1, permuted);
    EXPECT_EQ(even.average[0], 0.0f);
  } while (std::next_permutation(order.begin(), order.end()));
  // Three -0 of five: the middle is -0.
  zeros = {{{-0.0f}, 1}, {{0.0f}, 1}, {{-0.0f}, 1}, {{-0.0f}, 1}, {{0.0f}, 1}};
  std::sort(order.begin(), order.end());
  do {
    std::vector<Update> permuted;
    for (int i : order) permuted.push_back(zeros[i]);
    EXPECT_EQ(std::bit_cast<uint32_t>(Aggregate("median", 1, permuted).average[0]), 0x80000000u);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(RobustAggregatorTest, SumIsTheExactWeightedSumOfTheInputs) {
  const Scenario s = MakeScenario(Attack::kHuge, 12, 2, 79);
  auto fedavg = *WeightedFedAvgAggregator::Create(kD, kBound, kMaxWeight);
  for (const Update& u : s.All()) ASSERT_TRUE(fedavg->Accumulate(u.delta, u.examples).ok());
  for (const char* spec : {"median", "trimmed-mean:0.1", "krum:2", "multi-krum:2,3"}) {
    auto agg = Make(spec, kD);
    for (const Update& u : s.All()) ASSERT_TRUE(agg->Accumulate(u.delta, u.examples).ok());
    EXPECT_EQ(agg->sum().fixed_point_sums(), fedavg->sum().fixed_point_sums()) << spec;
  }
}

}  // namespace
}  // namespace fedkit::aggregation
