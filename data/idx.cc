#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace fedkit::data {
namespace {

// Nothing FedKit reads is anywhere near this; a larger header is corruption, not data.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;
// IDX allows up to 255 dimensions; (Fashion-)MNIST uses 1 or 3.
constexpr int kMaxIdxDims = 8;
constexpr uint8_t kTypeUnsignedByte = 0x08;
// Reading in bounded chunks means a lying gzip header cannot make us allocate more than the
// stream actually contains (plus one chunk).
constexpr size_t kChunkBytes = size_t{1} << 20;

// A byte source over either a plain or a gzip file. Read() returns the number of bytes read
// (short only at end of stream) or an error naming the file.
class ByteReader {
 public:
  virtual ~ByteReader() = default;
  virtual absl::StatusOr<size_t> Read(uint8_t* buf, size_t len) = 0;
};

class PlainReader : public ByteReader {
 public:
  PlainReader(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  ~PlainReader() override { std::fclose(file_); }

  absl::StatusOr<size_t> Read(uint8_t* buf, size_t len) override {
    size_t n = std::fread(buf, 1, len, file_);
    if (n < len && std::ferror(file_)) {
      return absl::DataLossError(absl::StrCat("read error in ", path_));
    }
    return n;
  }

 private:
  std::FILE* file_;
  std::string path_;
};

class GzipReader : public ByteReader {
 public:
  GzipReader(gzFile file, std::string path) : file_(file), path_(std::move(path)) {}
  ~GzipReader() override { gzclose(file_); }

  absl::StatusOr<size_t> Read(uint8_t* buf, size_t len) override {
    size_t total = 0;
    while (total < len) {
      unsigned want = static_cast<unsigned>(std::min(len - total, kChunkBytes));
      int n = gzread(file_, buf + total, want);
      if (n < 0) return GzError();
      total += static_cast<size_t>(n);
      if (static_cast<unsigned>(n) < want) {
        // A short read is either a clean end of stream or a truncated/corrupt one; zlib tells
        // them apart (Z_BUF_ERROR = "unexpected end of file").
        int errnum = Z_OK;
        gzerror(file_, &errnum);
        if (errnum != Z_OK) return GzError();
        break;
      }
    }
    return total;
  }

 private:
  absl::Status GzError() {
    int errnum = Z_OK;
    const char* msg = gzerror(file_, &errnum);
    if (errnum == Z_ERRNO) {
      return absl::DataLossError(absl::StrCat("read error in ", path_, ": ", std::strerror(errno)));
    }
    return absl::DataLossError(absl::StrCat("corrupt or truncated gzip stream in ", path_, ": ",
                                            msg != nullptr ? msg : "unknown error"));
  }

  gzFile file_;
  std::string path_;
};

absl::Status OpenError(const std::string& path, int err) {
  std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::UnavailableError(msg);
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads exactly `len` bytes or fails with DATA_LOSS describing what was being read.
absl::Status ReadExactly(ByteReader& reader, uint8_t* buf, size_t len, const std::string& path,
                         const char* what) {
  FEDKIT_ASSIGN_OR_RETURN(size_t n, reader.Read(buf, len));
  if (n != len) {
    return absl::DataLossError(
        absl::StrCat(path, " is truncated: expected ", len, " bytes of ", what, ", got ", n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FindFashionMnistFile(const std::string& dir, const std::string& base) {
  const std::string plain = (std::filesystem::path(dir) / base).string();
  const std::string gz = plain + ".gz";
  std::error_code ec;
  if (std::filesystem::exists(plain, ec)) return plain;
  if (std::filesystem::exists(gz, ec)) return gz;
  return absl::NotFoundError(absl::StrCat("Fashion-MNIST file not found: neither ", plain, " nor ",
                                          gz, " exists (set the data directory)"));
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return OpenError(path, errno);

  // Magic-byte sniffing rather than the extension, so renamed files still work.
  uint8_t sniff[2] = {0, 0};
  size_t sniffed = std::fread(sniff, 1, 2, file);
  const bool gzip = sniffed == 2 && sniff[0] == 0x1f && sniff[1] == 0x8b;

  std::unique_ptr<ByteReader> reader;
  int64_t file_size = -1;  // known only for plain files
  if (gzip) {
    std::fclose(file);
    gzFile gz = gzopen(path.c_str(), "rb");
    if (gz == nullptr) return OpenError(path, errno != 0 ? errno : EIO);
    gzbuffer(gz, 1 << 16);
    reader = std::make_unique<GzipReader>(gz, path);
  } else {
    if (std::fseek(file, 0, SEEK_END) == 0) {
      long end = std::ftell(file);
      if (end >= 0) file_size = end;
    }
    if (std::fseek(file, 0, SEEK_SET) != 0) {
      std::fclose(file);
      return absl::DataLossError(absl::StrCat("cannot seek in ", path));
    }
    reader = std::make_unique<PlainReader>(file, path);
  }

  uint8_t magic[4];
  FEDKIT_RETURN_IF_ERROR(ReadExactly(*reader, magic, 4, path, "IDX magic"));
  if (magic[0] != 0 || magic[1] != 0) {
    return absl::DataLossError(absl::StrCat(path, " is not an IDX file (bad magic bytes 0x",
                                            absl::Hex(magic[0], absl::kZeroPad2),
                                            absl::Hex(magic[1], absl::kZeroPad2), ")"));
  }
  if (magic[2] != kTypeUnsignedByte) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported IDX type code 0x",
                                                   absl::Hex(magic[2], absl::kZeroPad2),
                                                   " (only 0x08, unsigned byte, is supported)"));
  }
  const int ndims = magic[3];
  if (ndims < 1 || ndims > kMaxIdxDims) {
    return absl::DataLossError(absl::StrCat(path, ": implausible IDX dimension count ", ndims));
  }

  uint8_t dim_bytes[4 * kMaxIdxDims];
  FEDKIT_RETURN_IF_ERROR(ReadExactly(*reader, dim_bytes, 4 * ndims, path, "IDX dimensions"));
  IdxArray out;
  int64_t total = 1;
  bool absurd = false;
  for (int i = 0; i < ndims; ++i) {
    const int64_t d = BigEndian32(dim_bytes + 4 * i);
    out.dims.push_back(d);
    // Each factor is < 2^32 and total stays <= 2^30 before multiplying, so no overflow.
    if (!absurd) total *= d;
    if (total > kMaxIdxBytes) absurd = true;
  }
  if (absurd) {
    return absl::DataLossError(absl::StrCat(path, ": IDX dimensions {",
                                            absl::StrJoin(out.dims, ","),
                                            "} exceed the 1 GiB limit; corrupt header?"));
  }

  const int64_t header_bytes = 4 + 4 * int64_t{ndims};
  if (file_size >= 0 && file_size != header_bytes + total) {
    return absl::DataLossError(
        absl::StrCat(path, ": IDX header dims {", absl::StrJoin(out.dims, ","), "} need ",
                     header_bytes + total, " bytes but the file has ", file_size));
  }

  // Grow chunk by chunk: for gzip the real size is only known once the stream ends.
  while (static_cast<int64_t>(out.data.size()) < total) {
    const size_t have = out.data.size();
    const size_t want = std::min(kChunkBytes, static_cast<size_t>(total) - have);
    out.data.resize(have + want);
    FEDKIT_ASSIGN_OR_RETURN(size_t n, reader->Read(out.data.data() + have, want));
    if (n != want) {
      return absl::DataLossError(absl::StrCat(path, " is truncated: header dims {",
                                              absl::StrJoin(out.dims, ","), "} need ", total,
                                              " data bytes, got ", have + n));
    }
  }
  // Reading past the end also makes zlib verify the gzip CRC and length trailer.
  uint8_t extra;
  FEDKIT_ASSIGN_OR_RETURN(size_t n_extra, reader->Read(&extra, 1));
  if (n_extra != 0) {
    return absl::DataLossError(absl::StrCat(path, ": trailing bytes after the ", total,
                                            " data bytes announced by the IDX header"));
  }
  return out;
}

absl::StatusOr<Examples> LoadFashionMnist(const std::string& dir, Split split, DatasetInfo* info) {
  constexpr int64_t kRows = 28;
  constexpr int64_t kCols = 28;
  constexpr int kNumClasses = 10;
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";

  FEDKIT_ASSIGN_OR_RETURN(std::string images_path,
                          FindFashionMnistFile(dir, prefix + "-images-idx3-ubyte"));
  FEDKIT_ASSIGN_OR_RETURN(std::string labels_path,
                          FindFashionMnistFile(dir, prefix + "-labels-idx1-ubyte"));
  FEDKIT_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  FEDKIT_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));

  if (images.dims.size() != 3 || images.dims[1] != kRows || images.dims[2] != kCols) {
    return absl::DataLossError(absl::StrCat(images_path,
                                            ": expected images of shape {N,28,28}, got {",
                                            absl::StrJoin(images.dims, ","), "}"));
  }
  if (labels.dims.size() != 1) {
    return absl::DataLossError(absl::StrCat(labels_path, ": expected labels of shape {N}, got {",
                                            absl::StrJoin(labels.dims, ","), "}"));
  }
  const int64_t n = images.dims[0];
  if (labels.dims[0] != n) {
    return absl::DataLossError(absl::StrCat("Fashion-MNIST count mismatch: ", images_path, " has ",
                                            n, " images but ", labels_path, " has ", labels.dims[0],
                                            " labels"));
  }

  Examples out;
  out.feature_dim = kRows * kCols;
  out.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t label = labels.data[static_cast<size_t>(i)];
    if (label >= kNumClasses) {
      return absl::DataLossError(absl::StrCat(labels_path, ": label ", int{label}, " at index ", i,
                                              " is outside [0, ", kNumClasses, ")"));
    }
    out.labels[static_cast<size_t>(i)] = label;
  }
  out.features.resize(images.data.size());
  std::transform(images.data.begin(), images.data.end(), out.features.begin(),
                 [](uint8_t p) { return static_cast<float>(p) / 255.0f; });

  if (info != nullptr) *info = DatasetInfo{{1, kRows, kCols}, kNumClasses};
  return out;
}

}  // namespace fedkit::data
