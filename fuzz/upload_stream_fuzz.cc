// Fuzz target: an upload stream's chunks as the gRPC service reassembles them after the header
// (server/upload_assembler.h), plain (DeltaValues) or masked (MaskedValues). Each chunk is the
// fuzzer's bytes parsed as an UpdateChunk, the well-formed next chunk of values or bytes the
// fuzzer chooses, or that chunk with its wire bytes edited.
// Checked beyond the sanitizers, against a model of the stream kept here: a chunk is accepted only
// if it is of the upload's kind, at the offset received so far and within the declared size; a
// refusal names one of the documented counters; a plain upload finishes only with exactly the
// declared number of values, and then (like a masked upload at any point) holds exactly the
// accepted chunks' contents in order, bit for bit.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/quiet_protobuf.h"
#include "server/upload_assembler.h"

namespace fedkit::server {
namespace {

bool KnownCounter(absl::string_view counter) {
  return counter == "malformed_stream" || counter == "oversized" || counter == "wrong_shape";
}

void Run(fuzz::FuzzInput& in) {
  const bool masked = in.Bool();
  const int64_t total = in.Int(0, 64);
  PlainUploadAssembler plain(total);
  MaskedUploadAssembler secure(total);
  std::vector<float> expected_values;
  std::string expected_bytes;
  for (int i = 0; i < 64 && !in.empty(); ++i) {
    v1::UpdateChunk chunk;
    const int64_t how = in.Int(0, 2);
    if (how == 0) {
      if (!chunk.ParseFromString(in.Bytes(256))) continue;
    } else {
      if (masked != in.Bool()) {  // usually the upload's own kind
        v1::MaskedValues& bytes = *chunk.mutable_masked();
        bytes.set_byte_offset(static_cast<int64_t>(expected_bytes.size()));
        bytes.set_packed(in.Bytes(64));
      } else {
        v1::DeltaValues& values = *chunk.mutable_values();
        values.set_offset(static_cast<int64_t>(expected_values.size()));
        for (int64_t n = in.Int(0, 16); n > 0; --n) values.add_values(in.Float());
      }
      if (how == 2) in.EditMessage(chunk);
    }
    const absl::Status added = masked ? secure.Add(chunk) : plain.Add(chunk);
    if (!added.ok()) {
      if (!KnownCounter(masked ? secure.refusal() : plain.refusal())) std::abort();
      return;  // the service ends the stream here
    }
    if (masked) {
      if (!chunk.has_masked() ||
          chunk.masked().byte_offset() != static_cast<int64_t>(expected_bytes.size())) {
        std::abort();
      }
      expected_bytes += chunk.masked().packed();
      if (static_cast<int64_t>(expected_bytes.size()) > 8 * total) std::abort();
      if (secure.packed() != expected_bytes) std::abort();
    } else {
      if (!chunk.has_values() ||
          chunk.values().offset() != static_cast<int64_t>(expected_values.size())) {
        std::abort();
      }
      expected_values.insert(expected_values.end(), chunk.values().values().begin(),
                             chunk.values().values().end());
      if (static_cast<int64_t>(expected_values.size()) > total) std::abort();
    }
  }
  if (masked) return;
  const absl::Status finished = plain.Finish();
  if (finished.ok() != (static_cast<int64_t>(expected_values.size()) == total)) std::abort();
  if (!finished.ok()) {
    if (plain.refusal() != "wrong_shape") std::abort();
    return;
  }
  if (plain.values().size() != expected_values.size() ||
      (!expected_values.empty() && std::memcmp(plain.values().data(), expected_values.data(),
                                               expected_values.size() * sizeof(float)) != 0)) {
    std::abort();
  }
}

}  // namespace
}  // namespace fedkit::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  fedkit::server::Run(in);
  return 0;
}
