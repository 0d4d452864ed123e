// Fuzz target: the compression codecs' decoders (compression/update_codec.h DecodeUpdate and
// compression/download_codec.h DecodeDownload), on raw bytes and on valid encodings edited the way
// a broken or hostile peer would. Checked beyond the sanitizers: a successful decode has exactly
// the expected length and only finite values; an unedited encoding always decodes; float32 and
// lossless top-k (topk:1) round trips are exact.
//
// Decisions (fuzz/fuzz_input.h): mode Int(0, 3), spec Int(0, 11) of kSpecs, dimension
// Int(1, 2048), then
//   0  the rest: bytes for DecodeUpdate
//   1  seed Bits(8), clip Int(0, 2) (none, 1.0, a Double()), `dimension` Float()s, Edit():
//      UpdateEncoder::Encode, edited, then DecodeUpdate
//   2  encoding Int(0, 2), the rest: bytes for DecodeDownload
//   3  encoding Int(0, 2), `dimension` Float()s, Edit(): EncodeDownload, edited, DecodeDownload
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "compression/download_codec.h"
#include "compression/spec.h"
#include "compression/update_codec.h"
#include "fuzz/fuzz_input.h"

namespace {

using fedkit::compression::CompressionMethod;
using fedkit::compression::CompressionSpec;
using fedkit::compression::DownloadEncoding;

const char* const kSpecs[] = {"none",
                              "quantize:1",
                              "quantize:3",
                              "quantize:8",
                              "quantize:16",
                              "quantize-rotate:2",
                              "quantize-rotate:8",
                              "topk:0.01",
                              "topk:0.3",
                              "topk:1",
                              "randk:0.1",
                              "randk:1"};

void CheckDecoded(const std::vector<float>& values, int64_t expected) {
  if (static_cast<int64_t>(values.size()) != expected) std::abort();
  for (float v : values) {
    if (!std::isfinite(v)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  const int mode = static_cast<int>(in.Int(0, 3));
  const CompressionSpec spec = *fedkit::compression::ParseCompressionSpec(
      kSpecs[in.Int(0, sizeof(kSpecs) / sizeof(kSpecs[0]) - 1)]);
  const int64_t dimension = in.Int(1, 2048);
  if (mode == 0 || mode == 1) {
    std::string bytes;
    std::string original;
    std::vector<float> delta;
    double clip = 0.0;
    if (mode == 0) {
      bytes = in.Rest();
    } else {
      const uint64_t seed = in.Bits(8);
      const int clip_choice = static_cast<int>(in.Int(0, 2));
      clip = clip_choice == 0 ? 0.0 : clip_choice == 1 ? 1.0 : in.Double();
      for (int64_t i = 0; i < dimension; ++i) delta.push_back(in.Float());
      absl::StatusOr<fedkit::compression::UpdateEncoder> encoder =
          fedkit::compression::UpdateEncoder::Create(spec, dimension);
      if (!encoder.ok()) std::abort();  // every spec of kSpecs is valid
      absl::StatusOr<std::string> encoded = encoder->Encode(delta, clip, seed);
      if (!encoded.ok()) return 0;
      if (static_cast<int64_t>(encoded->size()) !=
          fedkit::compression::MaxEncodedSize(spec, dimension)) {
        std::abort();
      }
      original = *encoded;
      bytes = in.Edit(original);
    }
    absl::StatusOr<std::vector<float>> decoded =
        fedkit::compression::DecodeUpdate(spec, bytes, dimension);
    if (mode == 1 && bytes == original) {
      if (!decoded.ok()) std::abort();
      if (spec.method == CompressionMethod::kTopK && spec.fraction == 1.0 && clip == 0.0 &&
          *decoded != delta) {
        std::abort();
      }
    }
    if (decoded.ok()) CheckDecoded(*decoded, dimension);
    return 0;
  }
  const auto encoding = static_cast<DownloadEncoding>(in.Int(0, 2));
  std::string bytes;
  std::string original;
  std::vector<float> values;
  if (mode == 2) {
    bytes = in.Rest();
  } else {
    for (int64_t i = 0; i < dimension; ++i) values.push_back(in.Float());
    absl::StatusOr<std::string> encoded = fedkit::compression::EncodeDownload(encoding, values);
    if (!encoded.ok()) return 0;
    original = *encoded;
    bytes = in.Edit(original);
  }
  absl::StatusOr<std::vector<float>> decoded =
      fedkit::compression::DecodeDownload(encoding, bytes, dimension);
  if (mode == 3 && bytes == original) {
    if (!decoded.ok()) std::abort();
    if (encoding == DownloadEncoding::kFloat32 && *decoded != values) std::abort();
  }
  if (decoded.ok()) CheckDecoded(*decoded, dimension);
  return 0;
}
