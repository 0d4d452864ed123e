#include "aggregation/exact_sum.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "aggregation/exact_sum_kernels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::aggregation {
namespace {

constexpr double kClip = 10.0;
constexpr double kMaxWeight = 1 << 20;

struct Term {
  std::vector<float> values;
  double weight = 1;
};

// `n` clipped vectors of dimension `d` with weights in [1, 1000]: magnitudes over many octaves, so
// that floating-point sums depend on the order.
std::vector<Term> RandomTerms(int n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> weight(1, 1000);
  std::uniform_int_distribution<int> octave(-20, 0);
  std::vector<Term> terms(n);
  for (Term& t : terms) {
    t.values.resize(d);
    double norm = 0;
    for (float& v : t.values) {
      v = std::ldexp(normal(rng), octave(rng));
      norm += static_cast<double>(v) * v;
    }
    norm = std::sqrt(norm);
    if (norm > kClip) {
      for (float& v : t.values) v = static_cast<float>(v * (kClip / norm) * 0.999);
    }
    t.weight = weight(rng);
  }
  return terms;
}

ExactSum SumOf(const std::vector<Term>& terms, const std::vector<size_t>& order, int d) {
  ExactSum sum(d, *ChooseFixedPoint(kClip * kMaxWeight));
  for (size_t i : order) EXPECT_TRUE(sum.Add(terms[i].values, terms[i].weight).ok());
  return sum;
}

TEST(ExactSumTest, ChosenScaleIsTheLargestPowerOfTwoWithinTheTermBudget) {
  for (double bound : {1e-30, 0.001, 1.0, 3.0, 4.0, 10.0 * (1 << 20), 1e30}) {
    absl::StatusOr<FixedPoint> fp = ChooseFixedPoint(bound);
    ASSERT_TRUE(fp.ok()) << bound;
    int exponent = 0;
    EXPECT_EQ(std::frexp(fp->scale, &exponent), 0.5) << "not a power of two: " << fp->scale;
    EXPECT_LE(bound * fp->scale, std::ldexp(1.0, 94)) << bound;
    EXPECT_GT(bound * fp->scale * 2, std::ldexp(1.0, 94)) << bound;
  }
  for (double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_EQ(ChooseFixedPoint(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// The point of the representation: any order, any split into partial sums merged in any
// grouping, gives the same integers (and so the same doubles).
TEST(ExactSumTest, SumIsIdenticalInEveryOrderAndEverySplit) {
  constexpr int kN = 300;
  constexpr int kD = 257;
  const std::vector<Term> terms = RandomTerms(kN, kD, 1);
  std::vector<size_t> order(kN);
  std::iota(order.begin(), order.end(), 0);
  const ExactSum forward = SumOf(terms, order, kD);
  std::vector<size_t> reversed(order.rbegin(), order.rend());
  EXPECT_EQ(SumOf(terms, reversed, kD).fixed_point_sums(), forward.fixed_point_sums());
  std::mt19937 rng(2);
  for (int trial = 0; trial < 3; ++trial) {
    std::shuffle(order.begin(), order.end(), rng);
    // Four "workers" take uneven slices of the shuffled order; merged in a shuffled grouping.
    const std::vector<size_t> cuts = {0, 7, 150, 151, static_cast<size_t>(kN)};
    std::vector<ExactSum> parts;
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      parts.push_back(SumOf(
          terms, std::vector<size_t>(order.begin() + cuts[p], order.begin() + cuts[p + 1]), kD));
    }
    ASSERT_TRUE(parts[2].MergeWith(parts[0]).ok());
    ASSERT_TRUE(parts[3].MergeWith(parts[1]).ok());
    ASSERT_TRUE(parts[3].MergeWith(parts[2]).ok());
    EXPECT_EQ(parts[3].fixed_point_sums(), forward.fixed_point_sums());
    EXPECT_EQ(parts[3].Sum(), forward.Sum());
    EXPECT_EQ(parts[3].num_vectors(), kN);
  }
  // Plain double accumulation of the same terms does depend on the order (which is why the
  // coordinator kept every delta to sum them in a fixed order).
  auto double_sum = [&](const std::vector<size_t>& o) {
    std::vector<double> s(kD, 0.0);
    for (size_t i : o) {
      for (int j = 0; j < kD; ++j) s[j] += terms[i].values[j] * terms[i].weight;
    }
    return s;
  };
  std::iota(order.begin(), order.end(), 0);
  EXPECT_NE(double_sum(order), double_sum(reversed));
}

TEST(ExactSumTest, SumIsWithinTheStatedErrorOfTheExactValue) {
  constexpr int kN = 200;
  constexpr int kD = 64;
  const std::vector<Term> terms = RandomTerms(kN, kD, 3);
  std::vector<size_t> order(kN);
  std::iota(order.begin(), order.end(), 0);
  const ExactSum sum = SumOf(terms, order, kD);
  const std::vector<double> got = sum.Sum();
  const double per_term = kClip * kMaxWeight * std::ldexp(1.0, -94);
  for (int j = 0; j < kD; ++j) {
    long double exact = 0;  // float * small integer is exact in long double; so is the sum here
    for (const Term& t : terms) exact += static_cast<long double>(t.values[j]) * t.weight;
    const double tolerance =
        kN * per_term + std::abs(static_cast<double>(exact)) * std::ldexp(1.0, -52);
    EXPECT_LE(std::abs(got[j] - static_cast<double>(exact)), tolerance) << j;
  }
}

TEST(ExactSumTest, TermsAtTheBoundNeverOverflow) {
  const FixedPoint fp = *ChooseFixedPoint(kClip * kMaxWeight);
  ExactSum sum(2, fp);
  const std::vector<float> extreme = {static_cast<float>(kClip), -static_cast<float>(kClip)};
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(sum.Add(extreme, kMaxWeight).ok());
  const std::vector<double> total = sum.Sum();
  EXPECT_EQ(total[0], 100000 * kClip * kMaxWeight);
  EXPECT_EQ(total[1], -100000 * kClip * kMaxWeight);
}

TEST(ExactSumTest, BadTermsAreRefusedAndLeaveTheSumUnchanged) {
  ExactSum sum(3, *ChooseFixedPoint(kClip));
  ASSERT_TRUE(sum.Add(std::vector<float>{1, 2, 3}).ok());
  const std::vector<absl::int128> before = sum.fixed_point_sums();
  // Over the bound in the last coordinate: nothing of the vector may be added.
  absl::Status status = sum.Add(std::vector<float>{1, 1, 11});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("value 2"));
  EXPECT_EQ(sum.Add(std::vector<float>{1, 1, 6}, 2.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Add(std::vector<float>{1, std::nanf(""), 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Add(std::vector<float>{1, std::numeric_limits<float>::infinity(), 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Add(std::vector<float>{1, 1, 1}, std::nan("")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.Add(std::vector<float>{1, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sum.fixed_point_sums(), before);
  EXPECT_EQ(sum.num_vectors(), 1);
}

TEST(ExactSumTest, SumsOfAnotherShapeOrScaleDoNotMerge) {
  ExactSum a(3, *ChooseFixedPoint(kClip));
  ExactSum b(4, *ChooseFixedPoint(kClip));
  ExactSum c(3, *ChooseFixedPoint(2 * kClip));
  EXPECT_EQ(a.MergeWith(b).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.MergeWith(c).code(), absl::StatusCode::kFailedPrecondition);
  ExactSum d(3, *ChooseFixedPoint(kClip));
  ASSERT_TRUE(d.Add(std::vector<float>{0.5f, -0.25f, 1}).ok());
  ASSERT_TRUE(a.MergeWith(d).ok());
  EXPECT_EQ(a.Sum(), (std::vector<double>{0.5, -0.25, 1}));
}

// At scale 1 (a bound of 2^94) the integers are the values rounded to nearest, halves away from
// zero (std::llround's rule), which is what the inline rounding must reproduce.
TEST(ExactSumTest, RoundsHalvesAwayFromZero) {
  const FixedPoint fp = *ChooseFixedPoint(std::ldexp(1.0, 94));
  ASSERT_EQ(fp.scale, 1.0);
  ExactSum sum(8, fp);
  ASSERT_TRUE(
      sum.Add(std::vector<float>{0.5f, -0.5f, 1.5f, -2.5f, 2.4f, -2.6f, 0.49999997f, 3e20f}).ok());
  const std::vector<absl::int128> q = sum.fixed_point_sums();
  EXPECT_EQ(q[0], 1);
  EXPECT_EQ(q[1], -1);
  EXPECT_EQ(q[2], 2);
  EXPECT_EQ(q[3], -3);
  EXPECT_EQ(q[4], 2);
  EXPECT_EQ(q[5], -3);
  EXPECT_EQ(q[6], 0);
  EXPECT_EQ(q[7], absl::int128(static_cast<double>(3e20f)));  // beyond 2^63: exact conversion
  for (int i = 0; i < 7; ++i) {
    const float v[] = {0.5f, -0.5f, 1.5f, -2.5f, 2.4f, -2.6f, 0.49999997f};
    EXPECT_EQ(q[i], absl::int128(std::llround(v[i]))) << i;
  }
}

// Reference rounding of a double term: std::llround below 2^63, exact conversion above (doubles of
// that size are integers).
absl::int128 ReferenceRound(double t) {
  if (std::abs(t) < 0x1p63) return absl::int128(std::llround(t));
  return absl::int128(t);
}

// The vectorized loops (and the portable one they are chosen over) give llround's integers for
// values over every octave of the term budget, for integer and fractional multipliers, and for
// exact ties of both signs.
TEST(ExactSumKernelsTest, EveryVariantRoundsLikeLlround) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> octave(-30, 30);
  const int n = 4099;  // not a multiple of any vector width
  std::vector<float> values(n);
  for (float& v : values) v = std::ldexp(normal(rng), octave(rng));
  for (int i = 0; i < 40; ++i) values[i] = (i % 2 ? -1.0f : 1.0f) * (0.5f + static_cast<float>(i));
  for (const double scale : {0x1p0, 0x1p20, 0x1p54, 0x1p60}) {
    for (const double multiplier : {1.0, 57.0, -3.0, 0.3, 1048576.0}) {
      // The kernels' contract: every term within the budget (ExactSum::Add refuses a vector with
      // one beyond it before calling them). Beyond it their 64-bit parts would overflow, which
      // UBSan reports.
      std::vector<float> in_budget = values;
      for (float& v : in_budget) {
        if (!(std::abs(static_cast<double>(v) * multiplier * scale) <= 0x1p94)) v = 0;
      }
      std::vector<int64_t> high(n, 0), low(n, 0), high_p(n, 0), low_p(n, 0);
      internal::AddRoundedTerms(in_budget, multiplier, scale, high.data(), low.data());
      internal::AddRoundedTermsPortable(in_budget, multiplier, scale, high_p.data(), low_p.data());
      for (int i = 0; i < n; ++i) {
        const double t = static_cast<double>(in_budget[i]) * multiplier * scale;
        const absl::int128 got = absl::int128(high[i]) * (absl::int128(1) << 47) + low[i];
        ASSERT_EQ(got, ReferenceRound(t))
            << "value " << in_budget[i] << " x " << multiplier << " at " << scale;
        ASSERT_EQ(high[i], high_p[i]);
        ASSERT_EQ(low[i], low_p[i]);
      }
    }
  }
}

// Sums are carried into 128-bit integers every 2^15 vectors; merging across that boundary, in
// either direction, gives the sequential sum's integers.
TEST(ExactSumTest, MergesAcrossTheInternalCarryMatchTheSequentialSum) {
  const FixedPoint fp = *ChooseFixedPoint(kClip * kMaxWeight);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> value(-static_cast<float>(kClip),
                                              static_cast<float>(kClip));
  std::vector<std::vector<float>> terms(50000, std::vector<float>(3));
  for (auto& t : terms) {
    for (float& v : t) v = value(rng);
  }
  ExactSum sequential(3, fp);
  for (const auto& t : terms) ASSERT_TRUE(sequential.Add(t, kMaxWeight).ok());
  for (const size_t split : {size_t{20000}, size_t{40000}, size_t{100}}) {
    ExactSum a(3, fp);
    ExactSum b(3, fp);
    for (size_t i = 0; i < terms.size(); ++i) {
      ASSERT_TRUE((i < split ? a : b).Add(terms[i], kMaxWeight).ok());
    }
    ExactSum a_then_b = a;
    ASSERT_TRUE(a_then_b.MergeWith(b).ok());
    ASSERT_TRUE(b.MergeWith(a).ok());
    EXPECT_EQ(a_then_b.fixed_point_sums(), sequential.fixed_point_sums()) << split;
    EXPECT_EQ(b.fixed_point_sums(), sequential.fixed_point_sums()) << split;
    EXPECT_EQ(b.num_vectors(), 50000);
    absl::StatusOr<ExactSum> restored = ExactSum::Deserialize(a_then_b.Serialize());
    ASSERT_TRUE(restored.ok());
    EXPECT_EQ(restored->fixed_point_sums(), sequential.fixed_point_sums());
  }
}

}  // namespace
}  // namespace fedkit::aggregation
