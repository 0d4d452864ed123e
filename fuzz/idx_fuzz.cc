// Fuzz target: the IDX reader (data/idx.h, ReadIdxFile) on a file of the fuzzer's bytes: plain,
// or gzip-compressed by the harness (the reader detects gzip from the magic bytes), so both the
// header and dimension checks and the gzip path see arbitrary contents.
// Checked beyond the sanitizers: what is read is consistent (data size = product of dims).
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "data/idx.h"
#include "fuzz/fuzz_input.h"

namespace {

const std::string& Path() {
  static const std::string* path = [] {
    const char* tmp = std::getenv("FEDKIT_FUZZ_TMPDIR");
    return new std::string(std::string(tmp != nullptr ? tmp : "/dev/shm") + "/fedkit-fuzz-idx-" +
                           std::to_string(::getpid()));
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  const bool compress = in.Bool();
  const std::string bytes = in.Rest();
  if (compress) {
    gzFile file = gzopen(Path().c_str(), "wb");
    if (file == nullptr) std::abort();
    if (!bytes.empty()) gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
  } else {
    std::ofstream(Path(), std::ios::binary | std::ios::trunc) << bytes;
  }
  absl::StatusOr<fedkit::data::IdxArray> array = fedkit::data::ReadIdxFile(Path());
  if (array.ok()) {
    uint64_t product = 1;
    for (int64_t dim : array->dims) product *= static_cast<uint64_t>(dim);
    if (product != array->data.size()) std::abort();
  }
  return 0;
}
