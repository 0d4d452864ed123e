#include "server/privacy_ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/record_codec.h"

namespace fedkit::server {
namespace {

constexpr char kMagic[4] = {'F', 'K', 'P', 'L'};
constexpr uint32_t kVersion = 1;
constexpr size_t kChecksummed = 40;  // bytes 0..39

using record_codec::Crc32;
using record_codec::GetDouble;
using record_codec::GetU32;
using record_codec::GetU64;
using record_codec::PutDouble;
using record_codec::PutU32;
using record_codec::PutU64;

int WriteFully(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

absl::Status IoError(int error_number, const std::string& path, absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("privacy ledger ", path, ": ", what, ": ", std::strerror(error_number)));
}

}  // namespace

absl::Status ValidatePrivacyLedgerRecord(const PrivacyLedgerRecord& record) {
  if (record.round < 1) {
    return absl::InvalidArgumentError(absl::StrCat("round ", record.round, " is not >= 1"));
  }
  if (!(record.sampling_rate > 0 && record.sampling_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling rate ", record.sampling_rate, " is not in (0, 1]"));
  }
  if (!(record.noise_multiplier > 0) || !std::isfinite(record.noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier ", record.noise_multiplier, " is not finite and > 0"));
  }
  if (!(record.epsilon >= 0) || !std::isfinite(record.epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("epsilon ", record.epsilon, " is not finite and >= 0"));
  }
  return absl::OkStatus();
}

std::string EncodePrivacyLedgerRecord(const PrivacyLedgerRecord& record) {
  std::string bytes(kPrivacyLedgerRecordSize, '\0');
  char* out = bytes.data();
  std::memcpy(out, kMagic, 4);
  PutU32(kVersion, out + 4);
  PutU64(static_cast<uint64_t>(record.round), out + 8);
  PutDouble(record.sampling_rate, out + 16);
  PutDouble(record.noise_multiplier, out + 24);
  PutDouble(record.epsilon, out + 32);
  PutU32(Crc32(out, kChecksummed), out + 40);
  return bytes;  // bytes 44..47 stay zero
}

absl::StatusOr<ParsedPrivacyLedger> ParsePrivacyLedger(absl::string_view bytes) {
  ParsedPrivacyLedger parsed;
  const size_t whole = bytes.size() / kPrivacyLedgerRecordSize;
  parsed.torn_tail_bytes = static_cast<int64_t>(bytes.size() % kPrivacyLedgerRecordSize);
  for (size_t i = 0; i < whole; ++i) {
    const char* in = bytes.data() + i * kPrivacyLedgerRecordSize;
    auto corrupt = [&](absl::string_view why) {
      return absl::DataLossError(absl::StrCat("privacy ledger record ", i, " (byte ",
                                              i * kPrivacyLedgerRecordSize, "): ", why));
    };
    if (std::memcmp(in, kMagic, 4) != 0) return corrupt("no record marker");
    if (GetU32(in + 40) != Crc32(in, kChecksummed)) return corrupt("checksum mismatch");
    if (GetU32(in + 4) != kVersion) {
      return corrupt(absl::StrCat("version ", GetU32(in + 4), " is not ", kVersion));
    }
    if (GetU32(in + 44) != 0) return corrupt("non-zero padding");
    PrivacyLedgerRecord record;
    record.round = static_cast<int64_t>(GetU64(in + 8));
    record.sampling_rate = GetDouble(in + 16);
    record.noise_multiplier = GetDouble(in + 24);
    record.epsilon = GetDouble(in + 32);
    if (absl::Status valid = ValidatePrivacyLedgerRecord(record); !valid.ok()) {
      return corrupt(valid.message());
    }
    parsed.records.push_back(record);
  }
  return parsed;
}

absl::StatusOr<PrivacyLedger> PrivacyLedger::Open(const std::string& path) {
  const bool existed = std::filesystem::exists(path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(errno, path, "cannot open");
  std::string bytes;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::pread(fd, buffer, sizeof(buffer), static_cast<off_t>(bytes.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return IoError(error, path, "cannot read");
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
  }
  absl::StatusOr<ParsedPrivacyLedger> parsed = ParsePrivacyLedger(bytes);
  if (!parsed.ok()) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  if (parsed->torn_tail_bytes > 0) {
    // A crash mid-append: that round was never acknowledged (see the header). Drop the tail.
    const off_t keep = static_cast<off_t>(bytes.size()) - parsed->torn_tail_bytes;
    if (::ftruncate(fd, keep) != 0 || ::fsync(fd) != 0) {
      const int error = errno;
      ::close(fd);
      return IoError(error, path, "cannot drop the torn last record");
    }
  }
  if (!existed) {
    // The new file's name must survive a crash too.
    const std::string directory = std::filesystem::path(path).parent_path().string();
    const int dir = ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_CLOEXEC);
    if (dir < 0 || ::fsync(dir) != 0) {
      const int error = errno;
      if (dir >= 0) ::close(dir);
      ::close(fd);
      return IoError(error, path, "cannot fsync its directory");
    }
    ::close(dir);
  }
  return PrivacyLedger(path, fd, *std::move(parsed));
}

PrivacyLedger::PrivacyLedger(std::string path, int fd, ParsedPrivacyLedger parsed)
    : path_(std::move(path)),
      fd_(fd),
      records_(std::move(parsed.records)),
      torn_tail_bytes_(parsed.torn_tail_bytes) {
  for (const PrivacyLedgerRecord& record : records_)
    max_round_ = std::max(max_round_, record.round);
}

PrivacyLedger::PrivacyLedger(PrivacyLedger&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      records_(std::move(other.records_)),
      max_round_(other.max_round_),
      torn_tail_bytes_(other.torn_tail_bytes_),
      broken_(other.broken_) {}

PrivacyLedger& PrivacyLedger::operator=(PrivacyLedger&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    records_ = std::move(other.records_);
    max_round_ = other.max_round_;
    torn_tail_bytes_ = other.torn_tail_bytes_;
    broken_ = other.broken_;
  }
  return *this;
}

PrivacyLedger::~PrivacyLedger() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status PrivacyLedger::Append(const PrivacyLedgerRecord& record) {
  if (broken_ || fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("privacy ledger ", path_, ": an earlier append failed; reopen it"));
  }
  if (absl::Status valid = ValidatePrivacyLedgerRecord(record); !valid.ok()) return valid;
  const std::string bytes = EncodePrivacyLedgerRecord(record);
  if (int error = WriteFully(fd_, bytes.data(), bytes.size()); error != 0) {
    broken_ = true;
    return IoError(error, path_, "cannot append");
  }
  if (::fsync(fd_) != 0) {
    broken_ = true;
    return IoError(errno, path_, "cannot fsync");
  }
  records_.push_back(record);
  max_round_ = std::max(max_round_, record.round);
  return absl::OkStatus();
}

}  // namespace fedkit::server
