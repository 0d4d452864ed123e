#include "server/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"
#include "server/record_codec.h"

namespace fedkit::server {
namespace {

// On-disk framing of one checkpoint file (all integers little-endian):
//   bytes  0..3   magic "FKCK"
//   bytes  4..7   u32 framing format version (kFramingVersion)
//   bytes  8..15  u64 payload length in bytes
//   bytes 16..19  u32 checksum of the payload: plain CRC-32 (IEEE 802.3 polynomial, as computed by
//                 zlib's crc32), not CRC-32C
//   bytes 20..    the serialized fedkit.v1.Checkpoint (exactly `payload length` bytes, nothing
//   after)
constexpr char kMagic[4] = {'F', 'K', 'C', 'K'};
constexpr uint32_t kFramingVersion = 1;
constexpr size_t kHeaderSize = 4 + 4 + 8 + 4;

constexpr absl::string_view kFinalPrefix = "checkpoint-";
constexpr absl::string_view kFinalSuffix = ".pb";
constexpr absl::string_view kTempPrefix = ".checkpoint-";
constexpr absl::string_view kTempMarker = ".pb.tmp-";
constexpr int kMinDigits = 8;

std::string JoinPath(absl::string_view directory, absl::string_view name) {
  if (!directory.empty() && directory.back() == '/') return absl::StrCat(directory, name);
  return absl::StrCat(directory, "/", name);
}

std::string FinalName(int64_t rounds_completed) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "checkpoint-%08" PRId64 ".pb", rounds_completed);
  return buffer;
}

// Parses a canonical final checkpoint name ("checkpoint-" + at least 8 digits + ".pb", exactly as
// FinalName would produce it). Anything else, including temp files, yields nullopt.
std::optional<int64_t> ParseFinalName(absl::string_view name) {
  if (!absl::StartsWith(name, kFinalPrefix) || !absl::EndsWith(name, kFinalSuffix)) {
    return std::nullopt;
  }
  absl::string_view digits =
      name.substr(kFinalPrefix.size(), name.size() - kFinalPrefix.size() - kFinalSuffix.size());
  if (digits.size() < static_cast<size_t>(kMinDigits) || digits.size() > 18) return std::nullopt;
  int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (FinalName(value) != name) return std::nullopt;  // e.g. "checkpoint-000000001.pb"
  return value;
}

bool IsTempName(absl::string_view name) {
  return absl::StartsWith(name, kTempPrefix) && absl::StrContains(name, kTempMarker);
}

absl::Status ErrnoError(int error_number, absl::string_view what) {
  return absl::ErrnoToStatus(error_number, what);
}

using record_codec::Crc32;
using record_codec::GetU32;
using record_codec::GetU64;
using record_codec::PutU32;
using record_codec::PutU64;

// Closes `fd` on destruction unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Closes now and reports the error of close(2), if any.
  int Close() {
    int fd = std::exchange(fd_, -1);
    if (fd < 0) return 0;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Writes all of [data, data + size) to `fd`, retrying on short writes and EINTR. Returns 0 or
// errno.
int WriteFully(int fd, const char* data, size_t size) {
  while (size > 0) {
    // Linux transfers at most ~2 GiB per call; keep chunks well below that.
    size_t chunk = std::min<size_t>(size, size_t{1} << 30);
    ssize_t n = ::write(fd, data, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // should not happen for regular files; avoid spinning
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

// Reads exactly `size` bytes into `out`, retrying on short reads and EINTR. Returns 0 or errno;
// sets `*eof` when the file ended first.
int ReadFully(int fd, char* out, size_t size, bool* eof) {
  *eof = false;
  while (size > 0) {
    size_t chunk = std::min<size_t>(size, size_t{1} << 30);
    ssize_t n = ::read(fd, out, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) {
      *eof = true;
      return 0;
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

absl::Status FsyncDirectory(const std::string& directory) {
  int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("opening checkpoint directory ", directory, " to fsync"));
  }
  FdCloser closer(fd);
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    return ErrnoError(errno, absl::StrCat("fsync of checkpoint directory ", directory));
  }
  return absl::OkStatus();
}

struct DirectoryListing {
  std::vector<std::pair<int64_t, std::string>> checkpoints;  // (rounds, name), newest first
  std::vector<std::string> temps;                            // names of leftover temp files
};

absl::StatusOr<DirectoryListing> ListDirectory(const std::string& directory) {
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) {
    return ErrnoError(errno, absl::StrCat("listing checkpoint directory ", directory));
  }
  DirectoryListing listing;
  while (true) {
    errno = 0;
    struct dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      int error = errno;
      ::closedir(dir);
      if (error != 0) {
        return ErrnoError(error, absl::StrCat("listing checkpoint directory ", directory));
      }
      break;
    }
    absl::string_view name = entry->d_name;
    std::optional<int64_t> rounds = ParseFinalName(name);
    bool temp = !rounds.has_value() && IsTempName(name);
    if (!rounds.has_value() && !temp) continue;
    // Only regular files count; a directory or device that happens to match the pattern is ignored.
    struct stat st;
    if (::stat(JoinPath(directory, name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (rounds.has_value()) {
      listing.checkpoints.emplace_back(*rounds, std::string(name));
    } else {
      listing.temps.emplace_back(name);
    }
  }
  std::sort(listing.checkpoints.begin(), listing.checkpoints.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  return listing;
}

// Reads and validates one framed checkpoint file. Any error is a reason to skip the file; the
// message describes the problem without the path (the caller prefixes it).
absl::StatusOr<v1::Checkpoint> ReadCheckpointFile(const std::string& path,
                                                  int64_t expected_rounds) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open");
  FdCloser closer(fd);

  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, "cannot stat");
  if (!S_ISREG(st.st_mode)) return absl::DataLossError("not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size == 0) return absl::DataLossError("empty file");
  if (file_size < kHeaderSize) {
    return absl::DataLossError(
        absl::StrCat("truncated header (", file_size, " bytes, need ", kHeaderSize, ")"));
  }

  char header[kHeaderSize];
  bool eof = false;
  if (int error = ReadFully(fd, header, kHeaderSize, &eof); error != 0) {
    return ErrnoError(error, "reading header");
  }
  if (eof) return absl::DataLossError("truncated header");
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("bad magic (not a FedKit checkpoint)");
  }
  const uint32_t version = GetU32(header + 4);
  if (version != kFramingVersion) {
    return absl::DataLossError(
        absl::StrCat("unsupported framing version ", version, " (expected ", kFramingVersion, ")"));
  }
  const uint64_t payload_size = GetU64(header + 8);
  const uint32_t expected_crc = GetU32(header + 16);
  // Check the declared length against the real file size before allocating anything.
  if (payload_size != file_size - kHeaderSize) {
    return absl::DataLossError(absl::StrCat("payload length ", payload_size,
                                            " does not match file size ", file_size,
                                            " (truncated or trailing garbage)"));
  }
  if (payload_size > static_cast<uint64_t>(INT_MAX)) {
    return absl::DataLossError(absl::StrCat("payload of ", payload_size, " bytes is too large"));
  }

  std::string payload(static_cast<size_t>(payload_size), '\0');
  if (int error = ReadFully(fd, payload.data(), payload.size(), &eof); error != 0) {
    return ErrnoError(error, "reading payload");
  }
  if (eof) return absl::DataLossError("truncated payload (file shrank while reading)");

  const uint32_t actual_crc = Crc32(payload.data(), payload.size());
  if (actual_crc != expected_crc) {
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "checksum mismatch (stored %08x, computed %08x)",
                  expected_crc, actual_crc);
    return absl::DataLossError(buffer);
  }

  v1::Checkpoint checkpoint;
  // ParseFromArray has no 64 MiB stream limit; the size fits in int (checked above).
  if (!checkpoint.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("payload is not a valid fedkit.v1.Checkpoint");
  }
  if (checkpoint.rounds_completed() != expected_rounds) {
    return absl::DataLossError(absl::StrCat("rounds_completed ", checkpoint.rounds_completed(),
                                            " does not match the file name"));
  }
  return checkpoint;
}

}  // namespace

absl::StatusOr<CheckpointStore> CheckpointStore::Open(const std::string& directory) {
  if (directory.empty()) {
    return absl::InvalidArgumentError("checkpoint directory must not be empty");
  }
  struct stat st;
  if (::stat(directory.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint directory ", directory, " exists but is not a directory"));
    }
    return CheckpointStore(directory);
  }
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) {
    return ErrnoError(ec.value(), absl::StrCat("creating checkpoint directory ", directory));
  }
  if (::stat(directory.c_str(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("checkpoint directory ", directory));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint directory ", directory, " exists but is not a directory"));
  }
  // Make the new directory entry itself durable.
  std::filesystem::path parent = std::filesystem::path(directory).parent_path();
  FsyncDirectory(parent.empty() ? std::string(".") : parent.string()).IgnoreError();  // best effort
  return CheckpointStore(directory);
}

absl::Status CheckpointStore::Write(const v1::Checkpoint& checkpoint, int keep) {
  const int64_t rounds = checkpoint.rounds_completed();
  if (rounds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint rounds_completed must be >= 0, got ", rounds));
  }
  const std::string final_name = FinalName(rounds);
  const std::string final_path = JoinPath(directory_, final_name);

  std::string payload;
  if (!checkpoint.SerializeToString(&payload)) {
    return absl::InternalError(absl::StrCat("serializing checkpoint for ", final_path, " failed (",
                                            checkpoint.ByteSizeLong(), " bytes)"));
  }
  std::string header(kHeaderSize, '\0');
  std::memcpy(header.data(), kMagic, sizeof(kMagic));
  PutU32(kFramingVersion, header.data() + 4);
  PutU64(payload.size(), header.data() + 8);
  PutU32(Crc32(payload.data(), payload.size()), header.data() + 16);

  const std::string temp_path = JoinPath(
      directory_, absl::StrCat(".", final_name, ".tmp-", static_cast<int64_t>(::getpid())));
  {
    int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return ErrnoError(errno, absl::StrCat("creating checkpoint temp file ", temp_path));
    }
    FdCloser closer(fd);
    auto fail = [&](int error, absl::string_view what) {
      closer.Close();
      ::unlink(temp_path.c_str());
      return ErrnoError(error, absl::StrCat(what, " checkpoint temp file ", temp_path));
    };
    if (int error = WriteFully(fd, header.data(), header.size()); error != 0) {
      return fail(error, "writing");
    }
    if (int error = WriteFully(fd, payload.data(), payload.size()); error != 0) {
      return fail(error, "writing");
    }
    while (::fsync(fd) != 0) {
      if (errno == EINTR) continue;
      return fail(errno, "fsync of");
    }
    if (int error = closer.Close(); error != 0) {
      ::unlink(temp_path.c_str());
      return ErrnoError(error, absl::StrCat("closing checkpoint temp file ", temp_path));
    }
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    int error = errno;
    ::unlink(temp_path.c_str());
    return ErrnoError(error, absl::StrCat("renaming ", temp_path, " to ", final_path));
  }
  FEDKIT_RETURN_IF_ERROR(FsyncDirectory(directory_));

  // The new checkpoint is durable. Now remove crash leftovers and checkpoints beyond `keep`.
  keep = std::max(keep, 1);
  absl::StatusOr<DirectoryListing> listing = ListDirectory(directory_);
  if (!listing.ok()) {
    return absl::Status(listing.status().code(), absl::StrCat("checkpoint ", final_path,
                                                              " was written, but cleanup failed: ",
                                                              listing.status().message()));
  }
  std::vector<std::string> doomed = listing->temps;
  for (size_t i = static_cast<size_t>(keep); i < listing->checkpoints.size(); ++i) {
    if (listing->checkpoints[i].second == final_name) continue;  // never the one just written
    doomed.push_back(listing->checkpoints[i].second);
  }
  absl::Status cleanup;
  for (const std::string& name : doomed) {
    const std::string path = JoinPath(directory_, name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT && cleanup.ok()) {
      cleanup = ErrnoError(errno, absl::StrCat("checkpoint ", final_path,
                                               " was written, but removing ", path, " failed"));
    }
  }
  if (!doomed.empty()) {
    absl::Status synced = FsyncDirectory(directory_);
    if (cleanup.ok()) cleanup = synced;
  }
  return cleanup;
}

absl::StatusOr<std::optional<v1::Checkpoint>> CheckpointStore::LoadNewest(
    std::string* skipped) const {
  if (skipped != nullptr) skipped->clear();
  FEDKIT_ASSIGN_OR_RETURN(DirectoryListing listing, ListDirectory(directory_));
  for (const auto& [rounds, name] : listing.checkpoints) {
    const std::string path = JoinPath(directory_, name);
    absl::StatusOr<v1::Checkpoint> checkpoint = ReadCheckpointFile(path, rounds);
    if (checkpoint.ok()) return std::optional<v1::Checkpoint>(*std::move(checkpoint));
    if (skipped != nullptr) {
      absl::StrAppend(skipped, path, ": ", checkpoint.status().message(), "\n");
    }
  }
  return std::optional<v1::Checkpoint>();
}

}  // namespace fedkit::server
