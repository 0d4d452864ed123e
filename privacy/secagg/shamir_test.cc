#include "privacy/secagg/shamir.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::secagg {
namespace {

constexpr uint64_t kP = kShamirPrime;

// Reference field arithmetic for the tests, deliberately naive (% on 128-bit products).
uint64_t Mul(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>(static_cast<unsigned __int128>(a) * b % kP);
}
uint64_t Sub(uint64_t a, uint64_t b) { return (a + kP - b) % kP; }
uint64_t Inverse(uint64_t a) {
  uint64_t result = 1;
  for (uint64_t e = kP - 2; e != 0; e >>= 1) {
    if (e & 1) result = Mul(result, a);
    a = Mul(a, a);
  }
  return result;
}
// Lagrange basis polynomial of xs[i] evaluated at 0.
uint64_t LagrangeAtZero(const std::vector<uint32_t>& xs, size_t i) {
  uint64_t num = 1, den = 1;
  for (size_t j = 0; j < xs.size(); ++j) {
    if (j == i) continue;
    num = Mul(num, xs[j]);
    den = Mul(den, Sub(xs[j], xs[i]));
  }
  return Mul(num, Inverse(den));
}

// Limb values of a secret, as documented in shamir.h: 7, 7, 7, 7 and 4 little-endian bytes.
std::array<uint64_t, kShamirLimbs> Limbs(const Key32& secret) {
  constexpr int kBytes[kShamirLimbs] = {7, 7, 7, 7, 4};
  std::array<uint64_t, kShamirLimbs> limbs = {};
  size_t offset = 0;
  for (int l = 0; l < kShamirLimbs; ++l) {
    for (int b = 0; b < kBytes[l]; ++b) limbs[l] |= uint64_t{secret[offset++]} << (8 * b);
  }
  return limbs;
}

Key32 RandomSecret(std::mt19937_64& rng) {
  Key32 secret;
  for (uint8_t& b : secret) b = static_cast<uint8_t>(rng());
  return secret;
}

std::vector<uint32_t> Xs(int n) {
  std::vector<uint32_t> xs(n);
  std::iota(xs.begin(), xs.end(), 1u);
  return xs;
}

std::vector<uint32_t> XsOf(absl::Span<const ShamirShare> shares) {
  std::vector<uint32_t> xs;
  for (const ShamirShare& s : shares) xs.push_back(s.x);
  return xs;
}

TEST(ShamirSplitTest, RejectsBadArguments) {
  const Key32 secret = {};
  const std::vector<uint32_t> xs = Xs(5);
  EXPECT_EQ(ShamirSplit(secret, 0, xs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirSplit(secret, -1, xs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirSplit(secret, 6, xs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirSplit(secret, 1, {}).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> with_zero = {1, 0, 3};
  EXPECT_EQ(ShamirSplit(secret, 2, with_zero).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> with_duplicate = {1, 2, 3, 2};
  EXPECT_EQ(ShamirSplit(secret, 2, with_duplicate).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShamirSplitTest, SharesAreFieldElementsAtTheGivenXs) {
  std::mt19937_64 rng(1);
  const std::vector<uint32_t> xs = {7, 3, 0x80000000u, 0xffffffffu, 12};
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(RandomSecret(rng), 3, xs);
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_EQ(shares->size(), xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ((*shares)[i].x, xs[i]);
    for (uint64_t y : (*shares)[i].y) EXPECT_LT(y, kP);
  }
}

TEST(ShamirSplitTest, ThresholdOneSharesAreTheSecret) {
  // Degree-0 polynomials: every share carries the limbs verbatim.
  std::mt19937_64 rng(2);
  const Key32 secret = RandomSecret(rng);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, 1, Xs(4));
  ASSERT_TRUE(shares.ok()) << shares.status();
  for (const ShamirShare& share : *shares) {
    EXPECT_EQ(share.y, Limbs(secret));
    absl::StatusOr<Key32> got = ShamirReconstruct({share}, 1);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, secret);
  }
}

TEST(ShamirSplitTest, SplitsAreRandomized) {
  const Key32 secret = {};
  absl::StatusOr<std::vector<ShamirShare>> a = ShamirSplit(secret, 3, Xs(5));
  absl::StatusOr<std::vector<ShamirShare>> b = ShamirSplit(secret, 3, Xs(5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)[0].y, (*b)[0].y);
}

TEST(ShamirReconstructTest, AnyThresholdSubsetReconstructs) {
  std::mt19937_64 rng(3);
  for (int n : {5, 8, 13, 50}) {
    for (int t : {1, 2, (n + 1) / 2, n - 1, n}) {
      const Key32 secret = RandomSecret(rng);
      // Non-contiguous x-coordinates, as after dropouts.
      std::vector<uint32_t> xs = Xs(n);
      for (uint32_t& x : xs) x = x * 3 + 100;
      absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, t, xs);
      ASSERT_TRUE(shares.ok()) << shares.status();
      for (int trial = 0; trial < 5; ++trial) {
        std::vector<ShamirShare> subset = *shares;
        std::shuffle(subset.begin(), subset.end(), rng);
        subset.resize(t);
        absl::StatusOr<Key32> got = ShamirReconstruct(subset, t);
        ASSERT_TRUE(got.ok()) << "n " << n << " t " << t << ": " << got.status();
        EXPECT_EQ(*got, secret) << "n " << n << " t " << t;

        absl::StatusOr<ShamirReconstructor> reconstructor =
            ShamirReconstructor::Create(XsOf(subset));
        ASSERT_TRUE(reconstructor.ok()) << reconstructor.status();
        got = reconstructor->Reconstruct(subset);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(*got, secret);
      }
      // All n shares: only the first t are used.
      absl::StatusOr<Key32> got = ShamirReconstruct(*shares, t);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, secret);
    }
  }
}

TEST(ShamirReconstructTest, ExtremeSecrets) {
  Key32 ones;
  ones.fill(0xff);
  for (const Key32& secret : {Key32{}, ones}) {
    absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, 4, Xs(6));
    ASSERT_TRUE(shares.ok());
    absl::StatusOr<Key32> got = ShamirReconstruct(absl::MakeSpan(*shares).subspan(2), 4);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, secret);
  }
}

TEST(ShamirReconstructTest, OnlyTheFirstThresholdSharesAreUsed) {
  std::mt19937_64 rng(4);
  const Key32 secret = RandomSecret(rng);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, 3, Xs(5));
  ASSERT_TRUE(shares.ok());
  (*shares)[4].y[0] = ((*shares)[4].y[0] + 1) % kP;  // valid field element, wrong value
  absl::StatusOr<Key32> got = ShamirReconstruct(*shares, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, secret);
}

TEST(ShamirReconstructTest, RejectsBadInput) {
  std::mt19937_64 rng(5);
  absl::StatusOr<std::vector<ShamirShare>> split = ShamirSplit(RandomSecret(rng), 3, Xs(5));
  ASSERT_TRUE(split.ok());
  const std::vector<ShamirShare>& shares = *split;
  auto code = [](absl::Span<const ShamirShare> s, int t) {
    return ShamirReconstruct(s, t).status().code();
  };
  EXPECT_EQ(code(absl::MakeConstSpan(shares).first(2), 3), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(shares, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({}, 1), absl::StatusCode::kInvalidArgument);

  std::vector<ShamirShare> duplicate = {shares[0], shares[1], shares[0]};
  EXPECT_EQ(code(duplicate, 3), absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> zero_x = {shares[0], shares[1], shares[2]};
  zero_x[1].x = 0;
  EXPECT_EQ(code(zero_x, 3), absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> out_of_field = {shares[0], shares[1], shares[2]};
  out_of_field[2].y[3] = kP;
  EXPECT_EQ(code(out_of_field, 3), absl::StatusCode::kInvalidArgument);
}

TEST(ShamirReconstructTest, AlteredShareDoesNotYieldTheSecret) {
  std::mt19937_64 rng(6);
  const Key32 secret = RandomSecret(rng);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, 3, Xs(3));
  ASSERT_TRUE(shares.ok());
  (*shares)[1].y[4] = ((*shares)[1].y[4] + 1) % kP;
  // The fifth limb moves by a nonzero field element, so it cannot decode to the secret; almost
  // surely (1 - 2^-29) it does not even fit in 4 bytes.
  absl::StatusOr<Key32> got = ShamirReconstruct(*shares, 3);
  EXPECT_TRUE(!got.ok() || *got != secret);
}

TEST(ShamirReconstructTest, FewerThanThresholdSharesDoNotReveal) {
  std::mt19937_64 rng(7);
  for (int t : {2, 3, 10}) {
    const Key32 secret = RandomSecret(rng);
    absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, t, Xs(t + 2));
    ASSERT_TRUE(shares.ok());
    const absl::Span<const ShamirShare> few = absl::MakeConstSpan(*shares).first(t - 1);
    EXPECT_EQ(ShamirReconstruct(few, t).status().code(), absl::StatusCode::kInvalidArgument);
    // Interpolating the t - 1 shares as if the degree were t - 2 gives garbage (with
    // overwhelming probability), not the secret.
    absl::StatusOr<ShamirReconstructor> wrong = ShamirReconstructor::Create(XsOf(few));
    ASSERT_TRUE(wrong.ok());
    absl::StatusOr<Key32> got = wrong->Reconstruct(few);
    EXPECT_TRUE(!got.ok() || *got != secret) << "t " << t;
  }
}

TEST(ShamirReconstructTest, FewerThanThresholdSharesFitEverySecret) {
  // Perfect secrecy, constructively: t - 1 shares of secret A plus a suitable t-th share form a
  // valid sharing of any other secret B, so the t - 1 shares carry no information about which.
  std::mt19937_64 rng(8);
  const int t = 4;
  const Key32 a = RandomSecret(rng);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(a, t, Xs(t + 1));
  ASSERT_TRUE(shares.ok()) << shares.status();
  shares->resize(t - 1);  // what a coalition of t - 1 holders sees
  for (int trial = 0; trial < 3; ++trial) {
    const Key32 b = RandomSecret(rng);
    std::vector<ShamirShare> forged = *shares;
    ShamirShare extra;
    extra.x = 1000 + trial;
    forged.push_back(extra);
    const std::vector<uint32_t> xs = XsOf(forged);
    // secret_limb = sum_i l_i y_i; solve for the last y.
    const std::array<uint64_t, kShamirLimbs> target = Limbs(b);
    const uint64_t l_extra = LagrangeAtZero(xs, t - 1);
    for (int limb = 0; limb < kShamirLimbs; ++limb) {
      uint64_t partial = 0;
      for (int i = 0; i < t - 1; ++i) {
        partial = (partial + Mul(LagrangeAtZero(xs, i), forged[i].y[limb])) % kP;
      }
      forged.back().y[limb] = Mul(Sub(target[limb], partial), Inverse(l_extra));
    }
    absl::StatusOr<Key32> got = ShamirReconstruct(forged, t);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, b);
  }
}

TEST(ShamirReconstructorTest, RejectsBadInput) {
  EXPECT_EQ(ShamirReconstructor::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> with_zero = {0, 1};
  EXPECT_EQ(ShamirReconstructor::Create(with_zero).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> with_duplicate = {4, 1, 4};
  EXPECT_EQ(ShamirReconstructor::Create(with_duplicate).status().code(),
            absl::StatusCode::kInvalidArgument);

  std::mt19937_64 rng(9);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(RandomSecret(rng), 3, Xs(4));
  ASSERT_TRUE(shares.ok());
  const std::vector<uint32_t> xs = {1, 2, 3};
  absl::StatusOr<ShamirReconstructor> reconstructor = ShamirReconstructor::Create(xs);
  ASSERT_TRUE(reconstructor.ok());
  const std::vector<ShamirShare> in_order = {(*shares)[0], (*shares)[1], (*shares)[2]};
  EXPECT_TRUE(reconstructor->Reconstruct(in_order).ok());
  const std::vector<ShamirShare> swapped = {(*shares)[1], (*shares)[0], (*shares)[2]};
  EXPECT_EQ(reconstructor->Reconstruct(swapped).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<ShamirShare> other_x = {(*shares)[0], (*shares)[1], (*shares)[3]};
  EXPECT_EQ(reconstructor->Reconstruct(other_x).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reconstructor->Reconstruct(*shares).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reconstructor->Reconstruct(absl::MakeConstSpan(in_order).first(2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> out_of_field = in_order;
  out_of_field[0].y[0] = ~uint64_t{0};
  EXPECT_EQ(reconstructor->Reconstruct(out_of_field).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShamirReconstructorTest, ThousandSharesThreshold501) {
  std::mt19937_64 rng(10);
  const int n = 1000, t = 501;
  // Survivors: a random t-subset of the n clients, the same for every secret (as in one round).
  std::vector<int> survivors(n);
  std::iota(survivors.begin(), survivors.end(), 0);
  std::shuffle(survivors.begin(), survivors.end(), rng);
  survivors.resize(t);
  std::vector<uint32_t> survivor_xs;
  for (int i : survivors) survivor_xs.push_back(static_cast<uint32_t>(i + 1));
  absl::StatusOr<ShamirReconstructor> reconstructor = ShamirReconstructor::Create(survivor_xs);
  ASSERT_TRUE(reconstructor.ok()) << reconstructor.status();

  for (int secret_index = 0; secret_index < 3; ++secret_index) {
    const Key32 secret = RandomSecret(rng);
    absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(secret, t, Xs(n));
    ASSERT_TRUE(shares.ok()) << shares.status();
    std::vector<ShamirShare> subset;
    for (int i : survivors) subset.push_back((*shares)[i]);
    absl::StatusOr<Key32> got = reconstructor->Reconstruct(subset);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, secret);
    // 500 shares are one too few.
    subset.pop_back();
    EXPECT_EQ(ShamirReconstruct(subset, t).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ShamirReconstructorTest, CreateAtInterpolatesTheOtherShares) {
  std::mt19937_64 rng(11);
  const int n = 9, t = 4;
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(RandomSecret(rng), t, Xs(n));
  ASSERT_TRUE(shares.ok()) << shares.status();
  const std::vector<ShamirShare> first(shares->begin(), shares->begin() + t);
  std::vector<uint32_t> xs;
  for (const ShamirShare& s : first) xs.push_back(s.x);
  for (int j = t; j < n; ++j) {
    absl::StatusOr<ShamirReconstructor> at = ShamirReconstructor::CreateAt(xs, (*shares)[j].x);
    ASSERT_TRUE(at.ok()) << at.status();
    absl::StatusOr<std::array<uint64_t, kShamirLimbs>> y = at->Interpolate(first);
    ASSERT_TRUE(y.ok()) << y.status();
    EXPECT_EQ(*y, (*shares)[j].y) << "x = " << (*shares)[j].x;
  }
  // At one of its own points it gives that share back.
  absl::StatusOr<ShamirReconstructor> at_own = ShamirReconstructor::CreateAt(xs, xs[2]);
  ASSERT_TRUE(at_own.ok());
  EXPECT_EQ(*at_own->Interpolate(first), first[2].y);
}

TEST(ShamirConsistencyCheckTest, PassesSharesOfOnePolynomialAndCatchesAnyShiftedOne) {
  std::mt19937_64 rng(12);
  const int n = 12, t = 5;
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(RandomSecret(rng), t, Xs(n));
  ASSERT_TRUE(shares.ok()) << shares.status();
  const std::vector<ShamirShare> first(shares->begin(), shares->begin() + t);
  std::vector<ShamirShare> extra(shares->begin() + t, shares->end());
  std::vector<uint32_t> xs, extra_xs;
  for (const ShamirShare& s : first) xs.push_back(s.x);
  for (const ShamirShare& s : extra) extra_xs.push_back(s.x);
  absl::StatusOr<ShamirConsistencyCheck> check = ShamirConsistencyCheck::Create(xs, extra_xs);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(*check->Consistent(first, extra));
  for (size_t j = 0; j < extra.size(); ++j) {
    for (int limb = 0; limb < kShamirLimbs; ++limb) {
      std::vector<ShamirShare> shifted = extra;
      shifted[j].y[limb] = (shifted[j].y[limb] + 1) % kP;
      EXPECT_FALSE(*check->Consistent(first, shifted)) << "share " << j << " limb " << limb;
    }
  }
  std::vector<ShamirShare> wrong_base = first;
  wrong_base[0].y[3] = (wrong_base[0].y[3] + 5) % kP;
  EXPECT_FALSE(*check->Consistent(wrong_base, extra));
  // Repeated points and shares out of order are refused.
  EXPECT_FALSE(ShamirConsistencyCheck::Create(xs, {xs[0]}).ok());
  std::vector<ShamirShare> reordered = extra;
  std::swap(reordered[0], reordered[1]);
  EXPECT_FALSE(check->Consistent(first, reordered).ok());
}

TEST(ShamirSerializationTest, RoundTrip) {
  std::mt19937_64 rng(11);
  absl::StatusOr<std::vector<ShamirShare>> shares = ShamirSplit(RandomSecret(rng), 2, Xs(3));
  ASSERT_TRUE(shares.ok());
  for (const ShamirShare& share : *shares) {
    const std::array<uint8_t, kShamirShareBytes> bytes = SerializeShareValues(share);
    absl::StatusOr<ShamirShare> parsed = ParseShareValues(share.x, bytes);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->x, share.x);
    EXPECT_EQ(parsed->y, share.y);
  }
}

TEST(ShamirSerializationTest, LittleEndianWords) {
  ShamirShare share;
  share.x = 9;
  share.y = {0x0102030405060708ULL, 1, 0, kP - 1, 0xff};
  const std::array<uint8_t, kShamirShareBytes> bytes = SerializeShareValues(share);
  EXPECT_EQ(bytes[0], 0x08);
  EXPECT_EQ(bytes[7], 0x01);
  EXPECT_EQ(bytes[8], 0x01);
  EXPECT_EQ(bytes[31], 0x1f);  // top byte of 2^61 - 2
  EXPECT_EQ(bytes[32], 0xff);
  EXPECT_EQ(bytes[39], 0x00);
}

TEST(ShamirSerializationTest, RejectsBadInput) {
  ShamirShare share;
  share.x = 1;
  share.y = {1, 2, 3, 4, 5};
  std::array<uint8_t, kShamirShareBytes> bytes = SerializeShareValues(share);
  EXPECT_EQ(
      ParseShareValues(1, absl::MakeConstSpan(bytes).first(kShamirShareBytes - 1)).status().code(),
      absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> longer(bytes.begin(), bytes.end());
  longer.push_back(0);
  EXPECT_EQ(ParseShareValues(1, longer).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseShareValues(0, bytes).status().code(), absl::StatusCode::kInvalidArgument);

  // y = p exactly (the smallest out-of-field value) in the last word.
  share.y[4] = kP;
  bytes = SerializeShareValues(share);
  EXPECT_EQ(ParseShareValues(1, bytes).status().code(), absl::StatusCode::kInvalidArgument);
  share.y[4] = kP - 1;
  bytes = SerializeShareValues(share);
  EXPECT_TRUE(ParseShareValues(1, bytes).ok());
  bytes[7] = 0xff;  // first word >= 2^56 * 255
  EXPECT_EQ(ParseShareValues(1, bytes).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedkit::secagg
