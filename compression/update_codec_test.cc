#include "compression/update_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compression/hadamard.h"
#include "compression/random.h"
#include "compression/spec.h"

namespace fedkit::compression {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMlpDimension = 199210;

CompressionSpec Spec(absl::string_view text) { return *ParseCompressionSpec(text); }

std::vector<float> Gaussian(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

double Norm(absl::Span<const float> v) {
  double s = 0.0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

std::string Encode(absl::string_view spec, const std::vector<float>& delta, uint64_t seed,
                   double clip = 0.0) {
  absl::StatusOr<UpdateEncoder> encoder =
      UpdateEncoder::Create(Spec(spec), static_cast<int64_t>(delta.size()));
  EXPECT_TRUE(encoder.ok()) << encoder.status();
  absl::StatusOr<std::string> bytes = encoder->Encode(delta, clip, seed);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return *bytes;
}

const char* const kAllSpecs[] = {"none",        "quantize:1",        "quantize:8",
                                 "quantize:13", "quantize-rotate:2", "quantize-rotate:8",
                                 "topk:0.01",   "topk:0.5",          "topk:1",
                                 "randk:0.01",  "randk:0.3"};

TEST(UpdateCodecTest, SizesForTheMlp) {
  EXPECT_EQ(MaxEncodedSize(Spec("none"), kMlpDimension), 12 + 4 * kMlpDimension);
  // 195 blocks of 1024: 1,560 bytes of ranges, then one byte per value.
  EXPECT_EQ(MaxEncodedSize(Spec("quantize:8"), kMlpDimension), 12 + 1560 + kMlpDimension);
  EXPECT_EQ(MaxEncodedSize(Spec("quantize-rotate:8"), kMlpDimension),
            12 + 8 + 1560 + kMlpDimension);
  EXPECT_LE(MaxEncodedSize(Spec("quantize-rotate:8"), kMlpDimension) * 3.9, 4.0 * kMlpDimension);
  EXPECT_EQ(MaxEncodedSize(Spec("quantize:4"), kMlpDimension), 12 + 1560 + kMlpDimension / 2);
  // topk:0.01 keeps 1,992: packed at 18 bits (4,482 bytes) beats the 24,902-byte bitmap.
  EXPECT_EQ(MaxEncodedSize(Spec("topk:0.01"), kMlpDimension), 20 + 4482 + 4 * 1992);
  // topk:0.1 keeps 19,921: the bitmap wins.
  EXPECT_EQ(MaxEncodedSize(Spec("topk:0.1"), kMlpDimension), 20 + 24902 + 4 * 19921);
  EXPECT_EQ(MaxEncodedSize(Spec("randk:0.01"), kMlpDimension), 28 + 4 * 1992);
  EXPECT_EQ(MaxEncodedSize(Spec("none"), 0), -1);
  EXPECT_EQ(MaxEncodedSize(Spec("none"), kMaxDimension + 1), -1);
  EXPECT_EQ(MaxEncodedSize(CompressionSpec{CompressionMethod::kQuantize, 0, 0.0}, 10), -1);
}

TEST(UpdateCodecTest, EncodedSizeIsMaxEncodedSizeAndDecodes) {
  const std::vector<float> delta = Gaussian(kMlpDimension, 1, 0.01f);
  for (const char* spec : kAllSpecs) {
    const std::string bytes = Encode(spec, delta, 5);
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), MaxEncodedSize(Spec(spec), kMlpDimension))
        << spec;
    absl::StatusOr<std::vector<float>> decoded = DecodeUpdate(Spec(spec), bytes, kMlpDimension);
    ASSERT_TRUE(decoded.ok()) << spec << ": " << decoded.status();
    EXPECT_EQ(decoded->size(), delta.size());
  }
}

TEST(UpdateCodecTest, NoneIsExactAndClips) {
  const std::vector<float> delta = Gaussian(1000, 2);
  EXPECT_EQ(*DecodeUpdate(Spec("none"), Encode("none", delta, 0), 1000), delta);
  const std::vector<float> clipped =
      *DecodeUpdate(Spec("none"), Encode("none", delta, 0, 2.0), 1000);
  EXPECT_NEAR(Norm(clipped), 2.0, 1e-5);
  EXPECT_NEAR(clipped[3] / delta[3], 2.0 / Norm(delta), 1e-6);
}

TEST(UpdateCodecTest, QuantizeErrorIsWithinOneStepOfItsBlock) {
  const std::vector<float> delta = Gaussian(5000, 3);
  for (int bits : {1, 2, 4, 8, 16}) {
    const CompressionSpec spec{CompressionMethod::kQuantize, bits, 0.0};
    const std::string text = FormatCompressionSpec(spec);
    const std::vector<float> decoded = *DecodeUpdate(spec, Encode(text, delta, 9), 5000);
    for (int64_t start = 0; start < 5000; start += 1024) {
      const int64_t end = std::min<int64_t>(5000, start + 1024);
      const auto [lo, hi] = std::minmax_element(delta.begin() + start, delta.begin() + end);
      const double step = (static_cast<double>(*hi) - *lo) / ((1 << bits) - 1);
      for (int64_t i = start; i < end; ++i) {
        ASSERT_LE(std::fabs(static_cast<double>(decoded[i]) - delta[i]), step * (1 + 1e-6))
            << text << " at " << i;
        ASSERT_GE(decoded[i], *lo);
        ASSERT_LE(decoded[i], *hi);
      }
    }
  }
}

// The mean of the decoded vectors over many seeds converges to the input: stochastic rounding is
// unbiased, and so is the rotation's round trip.
TEST(UpdateCodecTest, QuantizersAreUnbiased) {
  const int64_t n = 300;
  const std::vector<float> delta = Gaussian(n, 4);
  const auto [lo, hi] = std::minmax_element(delta.begin(), delta.end());
  for (const char* text : {"quantize:2", "quantize-rotate:2"}) {
    const int trials = 4000;
    std::vector<double> mean(n, 0.0);
    double max_step = 0.0;
    for (int seed = 0; seed < trials; ++seed) {
      const std::string bytes = Encode(text, delta, static_cast<uint64_t>(seed));
      const std::vector<float> decoded = *DecodeUpdate(Spec(text), bytes, n);
      for (int64_t i = 0; i < n; ++i) mean[i] += decoded[i] / static_cast<double>(trials);
      if (std::string(text) == "quantize:2") {
        max_step = (static_cast<double>(*hi) - *lo) / 3.0;
      } else {
        std::vector<float> rotated = delta;
        RotateInPlace(absl::MakeSpan(rotated), static_cast<uint64_t>(seed));
        const auto [rlo, rhi] = std::minmax_element(rotated.begin(), rotated.end());
        max_step = std::max(max_step, (static_cast<double>(*rhi) - *rlo) / 3.0);
      }
    }
    // Each decoded coordinate has variance <= step^2 / 4, so the mean's standard deviation is
    // <= step / (2 sqrt(trials)); 6 of those over 300 coordinates fails with odds below 1e-6.
    const double tolerance = 6.0 * max_step / (2.0 * std::sqrt(static_cast<double>(trials)));
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(mean[i] - delta[i]));
    EXPECT_LE(worst, tolerance) << text;
    // And the mean is much closer than one sample is.
    EXPECT_GT(worst, 0.0) << text;
  }
}

TEST(UpdateCodecTest, RotationShrinksTheQuantizationErrorOfASpikyVector) {
  // A vector with a few large coordinates: without rotation the blocks' ranges are set by them.
  std::vector<float> delta = Gaussian(4096, 5, 0.01f);
  delta[10] = 5.0f;
  delta[2000] = -5.0f;
  auto squared_error = [&](const char* text) {
    const std::vector<float> decoded = *DecodeUpdate(Spec(text), Encode(text, delta, 1), 4096);
    double s = 0.0;
    for (size_t i = 0; i < delta.size(); ++i) {
      s += (static_cast<double>(decoded[i]) - delta[i]) * (decoded[i] - delta[i]);
    }
    return s;
  };
  EXPECT_LT(squared_error("quantize-rotate:4"), 0.5 * squared_error("quantize:4"));
}

TEST(UpdateCodecTest, DeterministicGivenTheSeed) {
  const std::vector<float> delta = Gaussian(3000, 6);
  for (const char* text : kAllSpecs) {
    EXPECT_EQ(Encode(text, delta, 77), Encode(text, delta, 77)) << text;
  }
  for (const char* text : {"quantize:4", "quantize-rotate:4", "randk:0.1"}) {
    EXPECT_NE(Encode(text, delta, 77), Encode(text, delta, 78)) << text;
  }
}

TEST(UpdateCodecTest, TopKKeepsTheLargestMagnitudes) {
  std::vector<float> delta(1000, 0.0f);
  for (int i = 0; i < 1000; ++i) delta[i] = (i % 2 == 0 ? 1.0f : -1.0f) * static_cast<float>(i);
  for (const char* text : {"topk:0.01", "topk:0.5"}) {  // packed positions, then a bitmap
    const int64_t k = KeptCoordinates(Spec(text), 1000);
    const std::vector<float> decoded = *DecodeUpdate(Spec(text), Encode(text, delta, 0), 1000);
    for (int64_t i = 0; i < 1000; ++i) {
      EXPECT_EQ(decoded[i], i >= 1000 - k ? delta[i] : 0.0f) << text << " at " << i;
    }
  }
}

TEST(UpdateCodecTest, TopKAtFractionOneIsLossless) {
  const std::vector<float> delta = Gaussian(5000, 7);
  absl::StatusOr<UpdateEncoder> encoder = UpdateEncoder::Create(Spec("topk:1"), 5000);
  ASSERT_TRUE(encoder.ok());
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(*DecodeUpdate(Spec("topk:1"), *encoder->Encode(delta, 0.0, round), 5000), delta);
    for (float r : encoder->residual()) ASSERT_EQ(r, 0.0f);
  }
}

TEST(UpdateCodecTest, RandKSendsTheSeedsPositions) {
  const std::vector<float> delta = Gaussian(2000, 8);
  const std::vector<float> decoded =
      *DecodeUpdate(Spec("randk:0.05"), Encode("randk:0.05", delta, 1234), 2000);
  const std::vector<int64_t> positions = RandomKIndices(1234, 2000, 100);
  size_t next = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    if (next < positions.size() && positions[next] == i) {
      EXPECT_EQ(decoded[i], delta[i]);  // not rescaled
      ++next;
    } else {
      EXPECT_EQ(decoded[i], 0.0f);
    }
  }
  EXPECT_EQ(next, positions.size());
}

// Error feedback: the decoded uploads plus the current residual add up to the deltas.
TEST(UpdateCodecTest, ErrorFeedbackTracksTheSumOfDeltas) {
  const int64_t n = 2000;
  for (const char* text : {"topk:0.05", "randk:0.05"}) {
    absl::StatusOr<UpdateEncoder> encoder = UpdateEncoder::Create(Spec(text), n);
    ASSERT_TRUE(encoder.ok());
    std::vector<double> sum_deltas(n, 0.0), sum_decoded(n, 0.0);
    for (int round = 0; round < 100; ++round) {
      const std::vector<float> delta = Gaussian(n, 100 + round, 0.1f);
      const std::vector<float> old_residual = encoder->residual();
      const std::string bytes = *encoder->Encode(delta, 0.0, round);
      const std::vector<float> decoded = *DecodeUpdate(Spec(text), bytes, n);
      for (int64_t i = 0; i < n; ++i) {
        sum_deltas[i] += delta[i];
        sum_decoded[i] += decoded[i];
        // residual_new = delta + residual_old - decoded, exactly (no clipping).
        ASSERT_EQ(encoder->residual()[i], (delta[i] + old_residual[i]) - decoded[i]);
      }
    }
    double worst = 0.0, residual_norm = 0.0, deltas_norm = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      worst = std::max(worst, std::fabs(sum_deltas[i] - sum_decoded[i] - encoder->residual()[i]));
      residual_norm += static_cast<double>(encoder->residual()[i]) * encoder->residual()[i];
      deltas_norm += sum_deltas[i] * sum_deltas[i];
    }
    EXPECT_LE(worst, 1e-4) << text;  // float rounding of 100 additions
    // What is still unsent is bounded: far less than the sum of 100 deltas' lengths.
    EXPECT_LT(std::sqrt(residual_norm), 100 * 0.1 * std::sqrt(n) * 0.5) << text;
  }
}

TEST(UpdateCodecTest, ClippingBoundsTheSentVectorAndKeepsTheRestInTheResidual) {
  const int64_t n = 1000;
  const std::vector<float> delta = Gaussian(n, 9);  // norm about 31.6
  for (const char* text : {"topk:0.1", "randk:0.1"}) {
    absl::StatusOr<UpdateEncoder> encoder = UpdateEncoder::Create(Spec(text), n);
    ASSERT_TRUE(encoder.ok());
    const std::vector<float> decoded =
        *DecodeUpdate(Spec(text), *encoder->Encode(delta, 0.5, 3), n);
    EXPECT_LE(Norm(decoded), 0.5 * (1 + 1e-6)) << text;
    EXPECT_GT(Norm(decoded), 0.0) << text;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(encoder->residual()[i] + decoded[i], delta[i], 1e-6) << text;
    }
  }
  // Quantizers clip before quantizing: the block ranges are those of the clipped vector.
  const std::vector<float> decoded =
      *DecodeUpdate(Spec("quantize:16"), Encode("quantize:16", delta, 1, 0.5), n);
  EXPECT_NEAR(Norm(decoded), 0.5, 1e-3);
}

TEST(UpdateCodecTest, EncodeRefusesBadInputAndKeepsTheResidual) {
  absl::StatusOr<UpdateEncoder> encoder = UpdateEncoder::Create(Spec("topk:0.1"), 100);
  ASSERT_TRUE(encoder.ok());
  ASSERT_TRUE(encoder->Encode(Gaussian(100, 1), 0.0, 1).ok());
  const std::vector<float> residual = encoder->residual();
  EXPECT_EQ(encoder->Encode(Gaussian(99, 1), 0.0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> bad = Gaussian(100, 2);
  bad[50] = std::numeric_limits<float>::quiet_NaN();
  absl::Status status = encoder->Encode(bad, 0.0, 1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("delta[50]"));
  bad[50] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(encoder->Encode(bad, 0.0, 1).ok());
  EXPECT_FALSE(encoder->Encode(Gaussian(100, 3), -1.0, 1).ok());
  EXPECT_FALSE(encoder->Encode(Gaussian(100, 3), std::nan(""), 1).ok());
  EXPECT_EQ(encoder->residual(), residual);
  // Values near FLT_MAX overflow float once rotated (the coordinates of H D x are sums), and huge
  // rotated values could overflow the decoder's rotation back of their quantized levels.
  absl::StatusOr<UpdateEncoder> rotating = UpdateEncoder::Create(Spec("quantize-rotate:8"), 1024);
  ASSERT_TRUE(rotating.ok());
  EXPECT_THAT(
      std::string(rotating->Encode(std::vector<float>(1024, 3e38f), 0.0, 1).status().message()),
      HasSubstr("2^100"));
  EXPECT_FALSE(rotating->Encode(std::vector<float>(1024, 1e31f), 0.0, 1).ok());
  EXPECT_TRUE(rotating->Encode(std::vector<float>(1024, 1e20f), 0.0, 1).ok());
}

TEST(UpdateCodecTest, CreateRefusesBadSpecsAndDimensions) {
  EXPECT_EQ(UpdateEncoder::Create(CompressionSpec{CompressionMethod::kQuantize, 17, 0.0}, 10)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(UpdateEncoder::Create(Spec("none"), 0).ok());
  EXPECT_FALSE(UpdateEncoder::Create(Spec("none"), kMaxDimension + 1).ok());
  absl::StatusOr<UpdateEncoder> none = UpdateEncoder::Create(Spec("none"), 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->residual().empty());
  EXPECT_EQ(none->dimension(), 10);
  EXPECT_EQ(none->spec(), Spec("none"));
}

TEST(UpdateCodecTest, DecodeRefusesTruncationsAndTrailingBytes) {
  const int64_t n = 300;
  const std::vector<float> delta = Gaussian(n, 10);
  for (const char* text : kAllSpecs) {
    const std::string bytes = Encode(text, delta, 11);
    for (size_t length = 0; length < bytes.size(); ++length) {
      absl::StatusOr<std::vector<float>> decoded =
          DecodeUpdate(Spec(text), absl::string_view(bytes).substr(0, length), n);
      ASSERT_FALSE(decoded.ok()) << text << " truncated to " << length;
      ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    }
    absl::StatusOr<std::vector<float>> trailing = DecodeUpdate(Spec(text), bytes + '\0', n);
    ASSERT_FALSE(trailing.ok()) << text;
    EXPECT_THAT(std::string(trailing.status().message()), HasSubstr("trailing"));
  }
}

TEST(UpdateCodecTest, DecodeRefusesHeaderBitFlipsExceptInTheSeed) {
  const int64_t n = 300;
  const std::vector<float> delta = Gaussian(n, 12);
  for (const char* text : kAllSpecs) {
    const std::string bytes = Encode(text, delta, 13);
    const bool has_seed = Spec(text).method == CompressionMethod::kQuantizeRotate ||
                          Spec(text).method == CompressionMethod::kRandK;
    const int header = 12 + (has_seed ? 8 : 0) + (IsSparsifying(Spec(text).method) ? 8 : 0);
    for (int bit = 0; bit < 8 * header; ++bit) {
      std::string flipped = bytes;
      flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
      const bool in_seed = has_seed && bit >= 96 && bit < 160;
      absl::StatusOr<std::vector<float>> decoded = DecodeUpdate(Spec(text), flipped, n);
      if (in_seed) {
        // Another seed is another valid upload (other rotation or positions).
        EXPECT_TRUE(decoded.ok()) << text << " bit " << bit;
      } else {
        EXPECT_FALSE(decoded.ok()) << text << " bit " << bit;
      }
    }
  }
}

TEST(UpdateCodecTest, DecodeRefusesAnotherSpecOrDimension) {
  const std::vector<float> delta = Gaussian(300, 14);
  const std::string bytes = Encode("quantize:8", delta, 1);
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:4"), bytes, 300).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("quantize-rotate:8"), bytes, 300).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("none"), bytes, 300).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:8"), bytes, 299).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:8"), bytes, 0).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:8"), bytes, -5).ok());
  EXPECT_FALSE(DecodeUpdate(CompressionSpec{CompressionMethod::kTopK, 0, 2.0}, bytes, 300).ok());
  const std::string topk = Encode("topk:0.1", delta, 1);
  EXPECT_FALSE(DecodeUpdate(Spec("topk:0.2"), topk, 300).ok());
}

TEST(UpdateCodecTest, DecodeRefusesAHugeClaimedDimensionWithoutAllocatingIt) {
  // A header claiming 2^40 values, and a caller expecting that many: refused on the dimension
  // bound before anything is allocated; a caller expecting 300 refuses the mismatch.
  std::string bytes = Encode("none", Gaussian(300, 15), 1);
  for (int i = 0; i < 8; ++i)
    bytes[4 + i] = static_cast<char>(((int64_t{1} << 40) >> (8 * i)) & 0xff);
  EXPECT_FALSE(DecodeUpdate(Spec("none"), bytes, 300).ok());
  EXPECT_FALSE(DecodeUpdate(Spec("none"), bytes, int64_t{1} << 40).ok());
  // The largest dimension allowed with a short input: refused on its length.
  EXPECT_FALSE(DecodeUpdate(Spec("none"), bytes, kMaxDimension).ok());
}

TEST(UpdateCodecTest, DecodeRefusesBadPayloads) {
  const int64_t n = 1000;
  const std::vector<float> delta = Gaussian(n, 16);
  // kNone with a NaN.
  std::string none = Encode("none", delta, 0);
  const uint32_t nan_bits = 0x7fc00000;
  for (int i = 0; i < 4; ++i)
    none[12 + 4 * 7 + i] = static_cast<char>((nan_bits >> (8 * i)) & 0xff);
  EXPECT_THAT(std::string(DecodeUpdate(Spec("none"), none, n).status().message()),
              HasSubstr("not finite"));
  // Quantize: a block with min > max, and an infinite max.
  std::string quantized = Encode("quantize:3", delta, 0);
  std::string swapped = quantized;
  for (int i = 0; i < 4; ++i) std::swap(swapped[12 + i], swapped[16 + i]);
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:3"), swapped, n).ok());
  std::string infinite = quantized;
  const uint32_t inf_bits = 0x7f800000;
  for (int i = 0; i < 4; ++i) infinite[16 + i] = static_cast<char>((inf_bits >> (8 * i)) & 0xff);
  EXPECT_FALSE(DecodeUpdate(Spec("quantize:3"), infinite, n).ok());
  // Quantize: 1000 * 3 bits leave no padding; 1001 * 3 bits leave 5 bits, which must be zero.
  const std::vector<float> odd = Gaussian(1001, 17);
  std::string padded = Encode("quantize:3", odd, 0);
  ASSERT_TRUE(DecodeUpdate(Spec("quantize:3"), padded, 1001).ok());
  padded.back() = static_cast<char>(padded.back() | 0x80);
  EXPECT_THAT(std::string(DecodeUpdate(Spec("quantize:3"), padded, 1001).status().message()),
              HasSubstr("padding"));
}

TEST(UpdateCodecTest, DecodeRefusesBadTopKPositions) {
  const int64_t n = 1000;
  const std::vector<float> delta = Gaussian(n, 18);
  // Packed positions (topk:0.01 keeps 10, 10 bits each = 13 bytes, after the 20-byte header).
  const std::string packed = Encode("topk:0.01", delta, 0);
  auto with_positions = [&](const std::vector<uint32_t>& positions) {
    std::string bytes = packed.substr(0, 20);
    uint64_t buffer = 0;
    int filled = 0;
    for (uint32_t p : positions) {
      buffer |= uint64_t{p} << filled;
      filled += 10;
      while (filled >= 8) {
        bytes.push_back(static_cast<char>(buffer & 0xff));
        buffer >>= 8;
        filled -= 8;
      }
    }
    if (filled > 0) bytes.push_back(static_cast<char>(buffer & 0xff));
    return bytes + packed.substr(33);
  };
  ASSERT_TRUE(
      DecodeUpdate(Spec("topk:0.01"), with_positions({0, 1, 2, 3, 4, 5, 6, 7, 8, 999}), n).ok());
  EXPECT_THAT(std::string(DecodeUpdate(Spec("topk:0.01"),
                                       with_positions({0, 1, 2, 3, 4, 5, 6, 7, 8, 1000}), n)
                              .status()
                              .message()),
              HasSubstr("out of range"));
  EXPECT_THAT(
      std::string(DecodeUpdate(Spec("topk:0.01"), with_positions({0, 1, 2, 3, 4, 5, 6, 7, 7, 9}), n)
                      .status()
                      .message()),
      HasSubstr("strictly increasing"));
  EXPECT_FALSE(
      DecodeUpdate(Spec("topk:0.01"), with_positions({5, 1, 2, 3, 4, 6, 7, 8, 9, 10}), n).ok());
  // Bitmap (topk:0.5 keeps 500 of 1000: 125 bytes of bitmap after the header).
  const std::string bitmap = Encode("topk:0.5", delta, 0);
  std::string one_more = bitmap;
  for (int byte = 20; byte < 145; ++byte) {
    if (static_cast<uint8_t>(one_more[byte]) != 0xff) {
      for (int bit = 0; bit < 8; ++bit) {
        if ((one_more[byte] & (1 << bit)) == 0) {
          one_more[byte] = static_cast<char>(one_more[byte] | (1 << bit));
          break;
        }
      }
      break;
    }
  }
  EXPECT_THAT(std::string(DecodeUpdate(Spec("topk:0.5"), one_more, n).status().message()),
              HasSubstr("bits set"));
  std::string one_less = bitmap;
  for (int byte = 20; byte < 145; ++byte) {
    if (one_less[byte] != 0) {
      one_less[byte] = static_cast<char>(one_less[byte] & (one_less[byte] - 1));
      break;
    }
  }
  EXPECT_FALSE(DecodeUpdate(Spec("topk:0.5"), one_less, n).ok());
}

}  // namespace
}  // namespace fedkit::compression
