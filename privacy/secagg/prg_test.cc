#include "privacy/secagg/prg.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace fedkit::secagg {
namespace {

Key32 TestSeed(uint8_t tag) {
  Key32 seed;
  for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<uint8_t>(tag * 31 + i);
  return seed;
}

// A deterministic, non-trivial vector of values in Z_{2^bits}.
std::vector<uint64_t> TestValues(size_t n, int bits, uint64_t salt) {
  std::vector<uint64_t> v(n);
  uint64_t x = 0x9e3779b97f4a7c15ULL ^ salt;
  for (uint64_t& e : v) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    e = (x >> 7) & ModulusMask(bits);
  }
  return v;
}

// The raw AES-256-CTR keystream (zero IV) computed independently of prg.cc.
std::vector<uint8_t> ReferenceKeystream(const Key32& seed, size_t bytes) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  const uint8_t iv[16] = {};
  std::vector<uint8_t> zeros(bytes, 0), out(bytes);
  int len = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, seed.data(), iv), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), out.data(), &len, zeros.data(), static_cast<int>(bytes)),
            1);
  EXPECT_EQ(static_cast<size_t>(len), bytes);
  return out;
}

uint64_t LittleEndianWord(const uint8_t* p, size_t width) {
  uint64_t w = 0;
  for (size_t i = 0; i < width; ++i) w |= static_cast<uint64_t>(p[i]) << (8 * i);
  return w;
}

TEST(PrgTest, RejectsBadArguments) {
  std::vector<uint64_t> v(4);
  for (int sign : {0, 2, -2}) {
    EXPECT_EQ(AddPrgMask(TestSeed(1), sign, 32, absl::MakeSpan(v)).code(),
              absl::StatusCode::kInvalidArgument);
  }
  for (int bits : {-1, 0, 65}) {
    EXPECT_EQ(AddPrgMask(TestSeed(1), 1, bits, absl::MakeSpan(v)).code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(v, std::vector<uint64_t>(4, 0));
  EXPECT_TRUE(AddPrgMask(TestSeed(1), 1, 32, absl::Span<uint64_t>()).ok());
}

TEST(PrgTest, Deterministic) {
  std::vector<uint64_t> a = TestValues(1000, 32, 1);
  std::vector<uint64_t> b = a;
  ASSERT_TRUE(AddPrgMask(TestSeed(1), 1, 32, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(AddPrgMask(TestSeed(1), 1, 32, absl::MakeSpan(b)).ok());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, TestValues(1000, 32, 1));
}

TEST(PrgTest, DifferentSeedsDiffer) {
  std::vector<uint64_t> a(1000, 0), b(1000, 0);
  ASSERT_TRUE(AddPrgMask(TestSeed(1), 1, 32, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(AddPrgMask(TestSeed(2), 1, 32, absl::MakeSpan(b)).ok());
  int equal = 0;
  for (size_t i = 0; i < a.size(); ++i) equal += a[i] == b[i];
  EXPECT_LE(equal, 1);
}

TEST(PrgTest, AddThenSubtractRestores) {
  for (int bits : {1, 7, 20, 31, 32, 33, 48, 63, 64}) {
    // 10,000 words spans several 16 KiB keystream blocks for both word widths.
    const std::vector<uint64_t> original = TestValues(10000, bits, bits);
    std::vector<uint64_t> v = original;
    ASSERT_TRUE(AddPrgMask(TestSeed(3), 1, bits, absl::MakeSpan(v)).ok());
    EXPECT_NE(v, original) << bits;
    for (uint64_t e : v) ASSERT_EQ(e & ~ModulusMask(bits), 0u) << bits;
    ASSERT_TRUE(AddPrgMask(TestSeed(3), -1, bits, absl::MakeSpan(v)).ok());
    EXPECT_EQ(v, original) << bits;
  }
}

TEST(PrgTest, PairwiseMasksCancelInTheSum) {
  // Client u adds PRG(s_uv), client v subtracts it: the server's sum is unchanged.
  for (int bits : {20, 32, 64}) {
    const uint64_t mask = ModulusMask(bits);
    std::vector<uint64_t> u = TestValues(5000, bits, 10);
    std::vector<uint64_t> v = TestValues(5000, bits, 11);
    std::vector<uint64_t> expected(u.size());
    for (size_t i = 0; i < u.size(); ++i) expected[i] = (u[i] + v[i]) & mask;
    ASSERT_TRUE(AddPrgMask(TestSeed(4), 1, bits, absl::MakeSpan(u)).ok());
    ASSERT_TRUE(AddPrgMask(TestSeed(4), -1, bits, absl::MakeSpan(v)).ok());
    for (size_t i = 0; i < u.size(); ++i) {
      ASSERT_EQ((u[i] + v[i]) & mask, expected[i]) << "bits " << bits << " i " << i;
    }
  }
}

// Element i is keystream word i (4 bytes for <= 32 bits, 8 otherwise) reduced mod 2^bits, over
// the whole vector, including across the implementation's internal block boundaries.
TEST(PrgTest, MatchesRawAesCtrKeystream) {
  const size_t n = 9000;  // > 16 KiB of 4-byte words and > 4 blocks of 8-byte words
  for (int bits : {20, 32, 64}) {
    const size_t width = bits <= 32 ? 4 : 8;
    const uint64_t mask = ModulusMask(bits);
    const std::vector<uint8_t> stream = ReferenceKeystream(TestSeed(5), n * width);
    std::vector<uint64_t> plus(n, 0), minus(n, 0);
    ASSERT_TRUE(AddPrgMask(TestSeed(5), 1, bits, absl::MakeSpan(plus)).ok());
    ASSERT_TRUE(AddPrgMask(TestSeed(5), -1, bits, absl::MakeSpan(minus)).ok());
    for (size_t i = 0; i < n; ++i) {
      const uint64_t word = LittleEndianWord(&stream[i * width], width);
      ASSERT_EQ(plus[i], word & mask) << "bits " << bits << " i " << i;
      ASSERT_EQ(minus[i], (0 - word) & mask) << "bits " << bits << " i " << i;
    }
  }
}

TEST(PrgTest, FirstWordsAreKeystreamWords) {
  // Spelled out for the common case: the first few 32-bit masks are the keystream's first words.
  const std::vector<uint8_t> stream = ReferenceKeystream(TestSeed(6), 16);
  std::vector<uint64_t> v = {5, 0, 0, 0};
  ASSERT_TRUE(AddPrgMask(TestSeed(6), 1, 32, absl::MakeSpan(v)).ok());
  for (size_t i = 0; i < 4; ++i) {
    uint32_t word;
    std::memcpy(&word, &stream[4 * i], 4);  // little-endian host assumed by this spot check
    EXPECT_EQ(v[i], (uint64_t{word} + (i == 0 ? 5 : 0)) & 0xffffffffu) << i;
  }
}

TEST(PrgTest, LooksUniform) {
  const size_t n = 100000;
  std::vector<uint64_t> v(n, 0);
  ASSERT_TRUE(AddPrgMask(TestSeed(7), 1, 32, absl::MakeSpan(v)).ok());
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  // Standard error of the mean is 2^32 / sqrt(12 n) ~ 3.9e6; allow ~10 of them.
  EXPECT_NEAR(mean, 2147483648.0, 4e7);
  // Every bit position should be set about half the time (sd ~ 158).
  for (int bit = 0; bit < 32; ++bit) {
    size_t ones = 0;
    for (uint64_t e : v) ones += (e >> bit) & 1;
    EXPECT_NEAR(static_cast<double>(ones), n / 2.0, 2000.0) << "bit " << bit;
  }
}

TEST(PrgTest, SixtyFourBitWordsUseFullRange) {
  std::vector<uint64_t> v(1000, 0);
  ASSERT_TRUE(AddPrgMask(TestSeed(8), 1, 64, absl::MakeSpan(v)).ok());
  int high = 0;
  for (uint64_t e : v) high += (e >> 63) & 1;
  EXPECT_GT(high, 400);
  EXPECT_LT(high, 600);
}

}  // namespace
}  // namespace fedkit::secagg
