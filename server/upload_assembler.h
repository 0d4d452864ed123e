// Reassembling an upload stream: the fedkit.v1.UpdateChunk messages that follow an upload's
// UpdateHeader, put back together into what the round coordinator takes
// (server/round_coordinator.h): the float delta of a plain round (SubmitUpdate) or the packed
// masked vector of a secure one (SubmitMaskedUpdate), or the encoding of a compressed one
// (SubmitCompressedUpdate). The gRPC service (server/grpc_service.cc)
// feeds it every chunk it reads; fuzz/upload_stream_fuzz.cc feeds it the fuzzer's.
//
// The header must already have been checked (RoundCoordinator::CheckUploadHeader, and its
// total_size against the model size or masked length) before an assembler is made: a
// PlainUploadAssembler allocates total_size floats at once.
//
// Errors of Add() and Finish() (absl/status/status.h meanings), each with the refusal counter the
// coordinator counts it under (refusal()):
//   INVALID_ARGUMENT   "malformed_stream": a chunk of another kind than the upload's (a second
//                      header, values in a masked upload, masked bytes in a plain one), or at an
//                      offset other than the number of values (bytes) received so far.
//                      "wrong_shape" (Finish, plain uploads): fewer values than declared.
//   RESOURCE_EXHAUSTED "oversized": more values than declared (plain), more than 8 bytes per
//                      declared value (masked; the coordinator checks the exact length).
// After an error the assembler holds a prefix of the upload and must not be used again.
//
// Ownership: an assembler owns its buffer; values()/packed() hand it over. Thread safety:
// thread-compatible (one upload stream is read by one thread).
#ifndef FEDKIT_SERVER_UPLOAD_ASSEMBLER_H_
#define FEDKIT_SERVER_UPLOAD_ASSEMBLER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::server {

// A plain round's update: DeltaValues chunks, in order, exactly total_values floats.
class PlainUploadAssembler {
 public:
  explicit PlainUploadAssembler(int64_t total_values);

  absl::Status Add(const v1::UpdateChunk& chunk);
  // OK once all total_values have arrived.
  absl::Status Finish();
  // The refusal counter of the last error ("" before any).
  absl::string_view refusal() const { return refusal_; }
  // The assembled delta (all of it only after Finish() is OK).
  std::vector<float>& values() { return values_; }

 private:
  absl::Status Refuse(absl::Status status, absl::string_view counter);

  std::vector<float> values_;
  int64_t received_ = 0;
  absl::string_view refusal_;
};

// A secure round's masked vector: MaskedValues chunks of packed bytes, in order, at most 8 bytes
// per declared value.
class MaskedUploadAssembler {
 public:
  explicit MaskedUploadAssembler(int64_t total_values);

  absl::Status Add(const v1::UpdateChunk& chunk);
  // Always OK: the exact length of a masked vector is the coordinator's to check.
  absl::Status Finish() { return absl::OkStatus(); }
  absl::string_view refusal() const { return refusal_; }
  // The packed bytes received (their exact length is the coordinator's to check).
  std::string& packed() { return packed_; }

 private:
  absl::Status Refuse(absl::Status status, absl::string_view counter);

  int64_t max_bytes_;
  std::string packed_;
  absl::string_view refusal_;
};

// A compressed upload (UpdateHeader.compressed_size > 0): CompressedValues chunks of bytes, in
// order, exactly total_bytes of them (checked against compression::MaxEncodedSize by the
// coordinator before the assembler is made). "malformed_stream" as above; "oversized" for more
// bytes than declared; Finish: "wrong_shape" for fewer.
class CompressedUploadAssembler {
 public:
  explicit CompressedUploadAssembler(int64_t total_bytes);

  absl::Status Add(const v1::UpdateChunk& chunk);
  absl::Status Finish();
  absl::string_view refusal() const { return refusal_; }
  // The encoding (all of it only after Finish() is OK).
  std::string& bytes() { return bytes_; }

 private:
  absl::Status Refuse(absl::Status status, absl::string_view counter);

  int64_t total_bytes_;
  std::string bytes_;
  absl::string_view refusal_;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_UPLOAD_ASSEMBLER_H_
