// The device's side of a model download: ModelStreamAssembler checks the fedkit.v1.ModelChunk
// messages of one GetModel stream as they arrive and turns them into the model's float values,
// decoding an encoded download (ModelChunk.encoding other than FLOAT32;
// compression/download_codec.h). It never allocates more than the device's own model needs: the
// size is checked on the first chunk, before anything is reserved, so a hostile or broken server
// cannot choose what the device allocates.
//
// Used by the gRPC channel (client/grpc_channel.cc); separate so that every malformed stream can
// be tested without a server. Not thread-safe: one assembler per download, on one thread.
#ifndef FEDKIT_CLIENT_MODEL_STREAM_H_
#define FEDKIT_CLIENT_MODEL_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "compression/download_codec.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::client {

class ModelStreamAssembler {
 public:
  // `expected_size`: the number of floats the device's model has.
  explicit ModelStreamAssembler(int64_t expected_size);

  // Takes the next chunk (its values, bytes and layout are moved out). Errors, after which the
  // download is over (the assembler refuses everything that follows):
  //  - FAILED_PRECONDITION: the first chunk announces a model of another size than expected_size,
  //    or an encoding this version does not know (a newer coordinator);
  //  - DATA_LOSS: a chunk inconsistent with the stream so far: another total_size, encoding or
  //    encoded_size than the first chunk's; an offset leaving a gap or an overlap; more values or
  //    bytes than announced; an encoded_size other than the encoding's size of the model; a
  //    FLOAT32 chunk carrying encoded bytes or an encoded one carrying floats.
  absl::Status Add(v1::ModelChunk& chunk);

  // After the stream ended: the model's expected_size values and the first chunk's layout.
  // DATA_LOSS for a stream without a chunk, one shorter than announced, or encoded bytes that do
  // not decode (non-finite values, a block with min > max); the error of Add if one failed.
  // Moves the result out: call once.
  absl::Status Finish(std::vector<float>* parameters, v1::ParameterLayout* layout);

  // The stream's encoding (FLOAT32 before the first chunk).
  compression::DownloadEncoding encoding() const { return encoding_; }

 private:
  absl::Status AddFirst(v1::ModelChunk& chunk);

  const int64_t expected_size_;
  absl::Status error_;
  bool started_ = false;
  compression::DownloadEncoding encoding_ = compression::DownloadEncoding::kFloat32;
  int64_t encoded_size_ = 0;
  std::vector<float> values_;  // FLOAT32
  std::string encoded_;        // other encodings
  v1::ParameterLayout layout_;
};

}  // namespace fedkit::client

#endif  // FEDKIT_CLIENT_MODEL_STREAM_H_
