#include "proto/compression_conversion.h"

#include "gtest/gtest.h"

namespace fedkit::proto {
namespace {

TEST(CompressionConversionTest, EverySpecRoundTrips) {
  for (const char* text : {"none", "quantize:8", "quantize-rotate:2", "topk:0.1", "randk:0.01"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<compression::CompressionSpec> spec = compression::ParseCompressionSpec(text);
    ASSERT_TRUE(spec.ok()) << spec.status();
    absl::StatusOr<compression::CompressionSpec> back =
        CompressionFromProto(CompressionToProto(*spec));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, *spec);
  }
}

TEST(CompressionConversionTest, UnsetIsNone) {
  absl::StatusOr<compression::CompressionSpec> spec = CompressionFromProto({});
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->method, compression::CompressionMethod::kNone);
}

TEST(CompressionConversionTest, RefusesOutOfRangeParameters) {
  v1::CompressionParams params;
  params.set_method(v1::CompressionParams::QUANTIZE);
  params.set_bits(0);
  EXPECT_EQ(CompressionFromProto(params).status().code(), absl::StatusCode::kInvalidArgument);
  params.set_method(v1::CompressionParams::TOPK);
  params.set_fraction(1.5);
  EXPECT_EQ(CompressionFromProto(params).status().code(), absl::StatusCode::kInvalidArgument);
  params.set_method(static_cast<v1::CompressionParams::Method>(42));
  EXPECT_EQ(CompressionFromProto(params).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CompressionConversionTest, DownloadEncodingsRoundTrip) {
  for (compression::DownloadEncoding encoding :
       {compression::DownloadEncoding::kFloat32, compression::DownloadEncoding::kFloat16,
        compression::DownloadEncoding::kQuantize8}) {
    absl::StatusOr<compression::DownloadEncoding> back =
        DownloadEncodingFromProto(DownloadEncodingToProto(encoding));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, encoding);
  }
  EXPECT_EQ(DownloadEncodingToProto(compression::DownloadEncoding::kFloat32),
            v1::MODEL_ENCODING_FLOAT32);  // unset on the wire: what older coordinators send
  absl::StatusOr<compression::DownloadEncoding> unknown = DownloadEncodingFromProto(9);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("9"), absl::string_view::npos);
}

}  // namespace
}  // namespace fedkit::proto
