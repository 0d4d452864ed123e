// Fuzz target: a model download's chunks as a device reassembles them (client/model_stream.h),
// float32 or encoded (float16, 8-bit). Each chunk is the fuzzer's bytes parsed as a ModelChunk,
// the well-formed next chunk of the honest stream, or that chunk with its wire bytes edited.
// Checked beyond the sanitizers: after a refusal every later chunk and Finish give the same
// error; a download that finishes has exactly the device's number of values, all finite for an
// encoded one; and a stream of only well-formed chunks that reaches its end finishes with exactly
// the decoding of the coordinator's encoding, bit for bit.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/model_stream.h"
#include "compression/download_codec.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "proto/compression_conversion.h"

namespace fedkit::client {
namespace {

void Run(fuzz::FuzzInput& in) {
  const auto encoding = static_cast<compression::DownloadEncoding>(in.Int(0, 2));
  const int64_t expected = in.Int(0, 3000);
  const double scale = static_cast<double>(in.Int(0, 255)) / 16.0;
  std::vector<float> model(static_cast<size_t>(expected));
  for (int64_t i = 0; i < expected; ++i) {
    model[static_cast<size_t>(i)] =
        static_cast<float>(scale * std::sin(0.1 * static_cast<double>(i)));
  }
  const bool floats = encoding == compression::DownloadEncoding::kFloat32;
  const std::string encoded =
      floats ? std::string() : *compression::EncodeDownload(encoding, model);
  const int64_t size = floats ? expected : static_cast<int64_t>(encoded.size());

  ModelStreamAssembler assembler(expected);
  int64_t sent = 0;  // of the honest stream
  bool honest = true;
  absl::Status error;
  for (int i = 0; i < 64 && !in.empty(); ++i) {
    v1::ModelChunk chunk;
    const int64_t how = in.Int(0, 2);
    if (how == 0) {
      if (!chunk.ParseFromString(in.Bytes(256))) continue;
      honest = false;
    } else {
      const int64_t n = std::min<int64_t>(in.Int(0, 4096), size - sent);
      chunk.set_total_size(expected);
      chunk.set_offset(sent);
      if (floats) {
        chunk.mutable_values()->Add(model.begin() + sent, model.begin() + sent + n);
      } else {
        chunk.set_encoding(proto::DownloadEncodingToProto(encoding));
        chunk.set_encoded_size(size);
        chunk.set_encoded(encoded.substr(static_cast<size_t>(sent), static_cast<size_t>(n)));
      }
      if (sent == 0) chunk.mutable_layout()->add_entries()->set_name("w");
      sent += n;
      if (how == 2) {
        in.EditMessage(chunk);
        honest = false;
      }
    }
    const absl::Status added = assembler.Add(chunk);
    if (!error.ok() && added != error) std::abort();  // refusals are final
    if (!added.ok()) error = added;
  }
  std::vector<float> parameters;
  v1::ParameterLayout layout;
  const absl::Status finished = assembler.Finish(&parameters, &layout);
  if (!error.ok() && finished != error) std::abort();
  if (finished.ok()) {
    if (static_cast<int64_t>(parameters.size()) != expected) std::abort();
    if (!floats) {
      for (float v : parameters) {
        if (!std::isfinite(v)) std::abort();
      }
    }
  } else if (!parameters.empty()) {
    std::abort();
  }
  // Only well-formed chunks, up to the end: the coordinator's model as the encoding gives it.
  if (honest && error.ok() && sent == size && sent > 0) {
    if (!finished.ok()) std::abort();
    const std::vector<float> want =
        floats ? model : *compression::DecodeDownload(encoding, encoded, expected);
    if (parameters != want) std::abort();
  }
}

}  // namespace
}  // namespace fedkit::client

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::client::Run(in);
  return 0;
}
