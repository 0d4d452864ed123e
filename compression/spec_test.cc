#include "compression/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace fedkit::compression {
namespace {

using ::testing::HasSubstr;

TEST(CompressionSpecTest, ParsesEveryMethod) {
  EXPECT_EQ(*ParseCompressionSpec("none"), CompressionSpec{});
  EXPECT_EQ(*ParseCompressionSpec("quantize:8"),
            (CompressionSpec{CompressionMethod::kQuantize, 8, 0.0}));
  EXPECT_EQ(*ParseCompressionSpec("quantize-rotate:1"),
            (CompressionSpec{CompressionMethod::kQuantizeRotate, 1, 0.0}));
  EXPECT_EQ(*ParseCompressionSpec("quantize-rotate:16"),
            (CompressionSpec{CompressionMethod::kQuantizeRotate, 16, 0.0}));
  EXPECT_EQ(*ParseCompressionSpec("topk:0.1"), (CompressionSpec{CompressionMethod::kTopK, 0, 0.1}));
  EXPECT_EQ(*ParseCompressionSpec("randk:0.01"),
            (CompressionSpec{CompressionMethod::kRandK, 0, 0.01}));
  EXPECT_EQ(*ParseCompressionSpec("topk:1"), (CompressionSpec{CompressionMethod::kTopK, 0, 1.0}));
}

TEST(CompressionSpecTest, RefusesBadTextQuotingItAndSayingWhatIsAllowed) {
  for (const char* text :
       {"", "None", "quantize", "quantize:", "quantize:0", "quantize:17", "quantize:-3",
        "quantize: 8", "quantize:8.0", "quantize:x", "topk:0", "topk:1.5", "topk:-0.1", "topk:nan",
        "topk:inf", "randk:", "randk: 0.1", "gzip:9", "topk:0.1:2"}) {
    absl::StatusOr<CompressionSpec> spec = ParseCompressionSpec(text);
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(spec.status().message()), HasSubstr(std::string("\"") + text + "\""));
    EXPECT_THAT(std::string(spec.status().message()), HasSubstr("allowed: none, quantize:BITS"));
  }
}

TEST(CompressionSpecTest, FormatRoundTrips) {
  for (const CompressionSpec& spec :
       {CompressionSpec{}, CompressionSpec{CompressionMethod::kQuantize, 3, 0.0},
        CompressionSpec{CompressionMethod::kQuantizeRotate, 16, 0.0},
        CompressionSpec{CompressionMethod::kTopK, 0, 0.1},
        CompressionSpec{CompressionMethod::kRandK, 0, 1.0 / 3.0},
        CompressionSpec{CompressionMethod::kRandK, 0, 1e-7},
        CompressionSpec{CompressionMethod::kTopK, 0, 1.0}}) {
    const std::string text = FormatCompressionSpec(spec);
    absl::StatusOr<CompressionSpec> parsed = ParseCompressionSpec(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, spec) << text;
  }
  EXPECT_EQ(FormatCompressionSpec({CompressionMethod::kTopK, 0, 0.1}), "topk:0.1");
  EXPECT_EQ(FormatCompressionSpec({CompressionMethod::kQuantizeRotate, 8, 0.0}),
            "quantize-rotate:8");
}

TEST(CompressionSpecTest, ValidateNamesTheField) {
  EXPECT_TRUE(ValidateCompressionSpec({}).ok());
  absl::Status status = ValidateCompressionSpec({CompressionMethod::kQuantize, 0, 0.0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("bits"));
  status = ValidateCompressionSpec({CompressionMethod::kTopK, 0, 1.5});
  EXPECT_THAT(std::string(status.message()), HasSubstr("fraction"));
  status = ValidateCompressionSpec({CompressionMethod::kRandK, 4, 0.5});
  EXPECT_THAT(std::string(status.message()), HasSubstr("bits"));
  status = ValidateCompressionSpec({CompressionMethod::kQuantize, 4, 0.5});
  EXPECT_THAT(std::string(status.message()), HasSubstr("fraction"));
  status = ValidateCompressionSpec({CompressionMethod::kNone, 4, 0.0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  status = ValidateCompressionSpec({static_cast<CompressionMethod>(42), 0, 0.0});
  EXPECT_THAT(std::string(status.message()), HasSubstr("method"));
}

TEST(CompressionSpecTest, KeptCoordinates) {
  const CompressionSpec topk{CompressionMethod::kTopK, 0, 0.1};
  EXPECT_EQ(KeptCoordinates(topk, 199210), 19921);
  EXPECT_EQ(KeptCoordinates(topk, 4), 1);   // round(0.4) = 0 -> at least 1
  EXPECT_EQ(KeptCoordinates(topk, 15), 2);  // round(1.5) = 2
  EXPECT_EQ(KeptCoordinates({CompressionMethod::kRandK, 0, 1.0}, 7), 7);
  EXPECT_EQ(KeptCoordinates({CompressionMethod::kRandK, 0, 1e-9}, 7), 1);
  EXPECT_EQ(KeptCoordinates({CompressionMethod::kQuantize, 8, 0.0}, 7), 7);
  EXPECT_EQ(KeptCoordinates(topk, 0), 0);
}

}  // namespace
}  // namespace fedkit::compression
