// Protobuf logs every string field with invalid UTF-8 it refuses to parse; fuzzed messages are
// full of them, and the lines slow the fuzzer down. Including this header in a fuzz target turns
// protobuf's logging off for the process (parse failures are still reported by return value).
#ifndef FEDKIT_FUZZ_QUIET_PROTOBUF_H_
#define FEDKIT_FUZZ_QUIET_PROTOBUF_H_

#include <google/protobuf/stubs/logging.h>

namespace fedkit::fuzz {

inline const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace fedkit::fuzz

#endif  // FEDKIT_FUZZ_QUIET_PROTOBUF_H_
