#include "compression/download_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compression/update_codec.h"

namespace fedkit::compression {
namespace {

using ::testing::HasSubstr;

std::vector<float> Gaussian(int64_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

const DownloadEncoding kEncodings[] = {DownloadEncoding::kFloat32, DownloadEncoding::kFloat16,
                                       DownloadEncoding::kQuantize8};

TEST(DownloadCodecTest, ParseAndFormat) {
  for (DownloadEncoding e : kEncodings) {
    EXPECT_EQ(*ParseDownloadEncoding(FormatDownloadEncoding(e)), e);
  }
  EXPECT_EQ(FormatDownloadEncoding(DownloadEncoding::kQuantize8), "quantize:8");
  absl::Status status = ParseDownloadEncoding("bfloat16").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"bfloat16\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("float32, float16, quantize:8"));
}

TEST(DownloadCodecTest, SizesForTheMlp) {
  EXPECT_EQ(DownloadBytes(DownloadEncoding::kFloat32, 199210), 796840);
  EXPECT_EQ(DownloadBytes(DownloadEncoding::kFloat16, 199210), 398420);
  EXPECT_EQ(DownloadBytes(DownloadEncoding::kQuantize8, 199210), 200770);
  EXPECT_EQ(DownloadBytes(DownloadEncoding::kQuantize8, 0), 0);
  EXPECT_EQ(DownloadBytes(DownloadEncoding::kFloat16, -1), -1);
}

TEST(DownloadCodecTest, Float32IsExact) {
  const std::vector<float> values = Gaussian(3000, 1, 1.0f);
  const std::string bytes = *EncodeDownload(DownloadEncoding::kFloat32, values);
  EXPECT_EQ(*DecodeDownload(DownloadEncoding::kFloat32, bytes, 3000), values);
}

TEST(DownloadCodecTest, Float16KnownValues) {
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(0x1.0p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToHalf(0x1.0p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1.0p-25f), 0x0000);  // a tie, to even (0)
  EXPECT_EQ(FloatToHalf(0x1.8p-24f), 0x0002);  // 1.5 units: a tie, to even (2)
  // Near 1 one binary16 ulp is 2^-10 (0x1.004p0 is 1 + 2^-10).
  EXPECT_EQ(FloatToHalf(0x1.004p0f), 0x3c01);               // 1 ulp: exact
  EXPECT_EQ(FloatToHalf(0x1.001p0f), 0x3c00);               // 1/4 ulp: down
  EXPECT_EQ(FloatToHalf(0x1.003p0f), 0x3c01);               // 3/4 ulp: up
  EXPECT_EQ(FloatToHalf(0x1.002p0f), 0x3c00);               // 1/2 ulp: a tie, to even (0)
  EXPECT_EQ(FloatToHalf(0x1.006p0f), 0x3c02);               // 3/2 ulps: a tie, to even (2)
  EXPECT_EQ(FloatToHalf(0x1.006p0f - 0x1.0p-23f), 0x3c01);  // just below that tie
  EXPECT_EQ(FloatToHalf(0x1.00ap0f), 0x3c02);               // 5/2 ulps: a tie, to even (2)
  EXPECT_EQ(FloatToHalf(0x1.ffep-15f), 0x0400);  // rounds up from subnormal into the first normal
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 0x1.0p-24f);
  EXPECT_EQ(HalfToFloat(0x8400), -0x1.0p-14f);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
}

TEST(DownloadCodecTest, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t half = static_cast<uint16_t>(h);
    if ((half & 0x7c00) == 0x7c00) continue;  // infinities and NaNs
    ASSERT_EQ(FloatToHalf(HalfToFloat(half)), half) << h;
  }
}

TEST(DownloadCodecTest, Float16ErrorBound) {
  // Values across float16's whole range, subnormals included.
  std::vector<float> values;
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> exponent(-30.0, 15.99);
  for (int i = 0; i < 200000; ++i) {
    const double magnitude = std::pow(2.0, exponent(rng));
    values.push_back(static_cast<float>(i % 2 == 0 ? magnitude : -magnitude));
  }
  values.push_back(65504.0f);
  values.push_back(-65504.0f);
  values.push_back(0.0f);
  const std::string bytes = *EncodeDownload(DownloadEncoding::kFloat16, values);
  const std::vector<float> decoded =
      *DecodeDownload(DownloadEncoding::kFloat16, bytes, static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    const double x = values[i];
    ASSERT_LE(std::fabs(decoded[i] - x), std::max(std::fabs(x) * 0x1.0p-11, 0x1.0p-25))
        << "x = " << x;
  }
}

TEST(DownloadCodecTest, Float16RefusesValuesBeyond65504) {
  absl::Status status = EncodeDownload(DownloadEncoding::kFloat16, {1.0f, 65505.0f}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("65504"));
  EXPECT_FALSE(EncodeDownload(DownloadEncoding::kFloat16, {-70000.0f}).ok());
}

TEST(DownloadCodecTest, Quantize8ErrorBoundAndNearestRounding) {
  std::vector<float> values = Gaussian(199210, 3, 0.05f);
  values[5000] = 3.0f;  // one block with a wide range
  const std::string bytes = *EncodeDownload(DownloadEncoding::kQuantize8, values);
  ASSERT_EQ(static_cast<int64_t>(bytes.size()), 200770);
  const std::vector<float> decoded = *DecodeDownload(DownloadEncoding::kQuantize8, bytes, 199210);
  for (int64_t start = 0; start < 199210; start += 1024) {
    const int64_t end = std::min<int64_t>(199210, start + 1024);
    const auto [lo, hi] = std::minmax_element(values.begin() + start, values.begin() + end);
    const double bound =
        (static_cast<double>(*hi) - *lo) / 510.0 +
        4.0 * std::numeric_limits<float>::epsilon() * std::max(std::fabs(*lo), std::fabs(*hi));
    for (int64_t i = start; i < end; ++i) {
      ASSERT_LE(std::fabs(static_cast<double>(decoded[i]) - values[i]), bound) << i;
    }
    // The block's extremes are levels 0 and 255: exact.
    EXPECT_EQ(decoded[lo - values.begin()], *lo);
  }
  // Deterministic: every device gets the same model.
  EXPECT_EQ(*EncodeDownload(DownloadEncoding::kQuantize8, values), bytes);
}

TEST(DownloadCodecTest, ConstantBlocksAreExact) {
  const std::vector<float> values(3000, 0.25f);
  for (DownloadEncoding e : kEncodings) {
    EXPECT_EQ(*DecodeDownload(e, *EncodeDownload(e, values), 3000), values);
  }
}

TEST(DownloadCodecTest, EncodeRefusesNonFiniteValues) {
  for (DownloadEncoding e : kEncodings) {
    EXPECT_FALSE(EncodeDownload(e, {1.0f, std::numeric_limits<float>::quiet_NaN()}).ok());
    EXPECT_FALSE(EncodeDownload(e, {std::numeric_limits<float>::infinity()}).ok());
  }
}

TEST(DownloadCodecTest, DecodeRefusesMalformedBytes) {
  const std::vector<float> values = Gaussian(2000, 4, 1.0f);
  for (DownloadEncoding e : kEncodings) {
    const std::string bytes = *EncodeDownload(e, values);
    for (size_t length : {size_t{0}, size_t{1}, bytes.size() - 1}) {
      EXPECT_FALSE(DecodeDownload(e, absl::string_view(bytes).substr(0, length), 2000).ok());
    }
    EXPECT_FALSE(DecodeDownload(e, bytes + 'x', 2000).ok());
    EXPECT_FALSE(DecodeDownload(e, bytes, 1999).ok());
    EXPECT_FALSE(DecodeDownload(e, bytes, -1).ok());
    EXPECT_FALSE(DecodeDownload(e, bytes, kMaxDimension + 1).ok());
    // A huge count with few bytes: refused on the length, nothing allocated.
    EXPECT_FALSE(DecodeDownload(e, bytes, kMaxDimension).ok());
  }
  std::string f32 = *EncodeDownload(DownloadEncoding::kFloat32, values);
  f32[3] = static_cast<char>(0x7f);
  f32[2] = static_cast<char>(0xc0);
  EXPECT_THAT(std::string(DecodeDownload(DownloadEncoding::kFloat32, f32, 2000).status().message()),
              HasSubstr("not finite"));
  std::string f16 = *EncodeDownload(DownloadEncoding::kFloat16, values);
  f16[1] = static_cast<char>(0x7c);  // exponent all ones: infinity or NaN
  EXPECT_FALSE(DecodeDownload(DownloadEncoding::kFloat16, f16, 2000).ok());
  std::string q8 = *EncodeDownload(DownloadEncoding::kQuantize8, values);
  for (int i = 0; i < 4; ++i) std::swap(q8[i], q8[4 + i]);  // block 0: min > max
  EXPECT_FALSE(DecodeDownload(DownloadEncoding::kQuantize8, q8, 2000).ok());
}

}  // namespace
}  // namespace fedkit::compression
