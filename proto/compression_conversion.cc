#include "proto/compression_conversion.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace fedkit::proto {

using compression::CompressionMethod;
using compression::CompressionSpec;

v1::CompressionParams CompressionToProto(const CompressionSpec& spec) {
  v1::CompressionParams params;
  switch (spec.method) {
    case CompressionMethod::kNone:
      params.set_method(v1::CompressionParams::NONE);
      break;
    case CompressionMethod::kQuantize:
      params.set_method(v1::CompressionParams::QUANTIZE);
      params.set_bits(spec.bits);
      break;
    case CompressionMethod::kQuantizeRotate:
      params.set_method(v1::CompressionParams::QUANTIZE_ROTATE);
      params.set_bits(spec.bits);
      break;
    case CompressionMethod::kTopK:
      params.set_method(v1::CompressionParams::TOPK);
      params.set_fraction(spec.fraction);
      break;
    case CompressionMethod::kRandK:
      params.set_method(v1::CompressionParams::RANDK);
      params.set_fraction(spec.fraction);
      break;
  }
  return params;
}

absl::StatusOr<CompressionSpec> CompressionFromProto(const v1::CompressionParams& params) {
  CompressionSpec spec;
  switch (params.method()) {
    case v1::CompressionParams::NONE:
      return spec;
    case v1::CompressionParams::QUANTIZE:
      spec.method = CompressionMethod::kQuantize;
      spec.bits = params.bits();
      break;
    case v1::CompressionParams::QUANTIZE_ROTATE:
      spec.method = CompressionMethod::kQuantizeRotate;
      spec.bits = params.bits();
      break;
    case v1::CompressionParams::TOPK:
      spec.method = CompressionMethod::kTopK;
      spec.fraction = params.fraction();
      break;
    case v1::CompressionParams::RANDK:
      spec.method = CompressionMethod::kRandK;
      spec.fraction = params.fraction();
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown compression method ", static_cast<int>(params.method())));
  }
  FEDKIT_RETURN_IF_ERROR(compression::ValidateCompressionSpec(spec));
  return spec;
}

v1::ModelEncoding DownloadEncodingToProto(compression::DownloadEncoding encoding) {
  switch (encoding) {
    case compression::DownloadEncoding::kFloat32:
      return v1::MODEL_ENCODING_FLOAT32;
    case compression::DownloadEncoding::kFloat16:
      return v1::MODEL_ENCODING_FLOAT16;
    case compression::DownloadEncoding::kQuantize8:
      return v1::MODEL_ENCODING_QUANTIZE8;
  }
  return v1::MODEL_ENCODING_FLOAT32;
}

absl::StatusOr<compression::DownloadEncoding> DownloadEncodingFromProto(int encoding) {
  switch (encoding) {
    case v1::MODEL_ENCODING_FLOAT32:
      return compression::DownloadEncoding::kFloat32;
    case v1::MODEL_ENCODING_FLOAT16:
      return compression::DownloadEncoding::kFloat16;
    case v1::MODEL_ENCODING_QUANTIZE8:
      return compression::DownloadEncoding::kQuantize8;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("model encoding ", encoding, " is unknown to this version of FedKit"));
  }
}

}  // namespace fedkit::proto
