// The privacy ledger: an append-only file, next to the checkpoints, with one record per round a
// DP coordinator released (its round, sampling rate q, noise multiplier z and the epsilon spent
// after it). The coordinator appends and fsyncs a round's record before that round's checkpoint is
// written and before any device sees the next model (CoordinatorHooks::privacy_released), so the
// ledger always knows at least every round whose noised model left the coordinator. A coordinator
// that restarts from an older checkpoint (the newest was corrupt or deleted) sees released rounds
// beyond it and refuses to re-run them unaccounted (RoundCoordinator::ResumePrivacyLedger).
//
// Format: fixed-size records of kPrivacyLedgerRecordSize bytes, little-endian:
//   0  "FKPL"        4  uint32 version (1)   8  int64 round
//   16 double q      24 double z             32 double epsilon (at the run's delta)
//   40 uint32 CRC-32 (zlib's) of bytes 0..39  44 uint32 zero
// Rounds are >= 1, in release order: they may repeat (a round re-run after an explicit rollback
// override is released again, and recorded again) and may start above 1 (a ledger begun on a run
// that already had checkpoints, whose accountant state covers the earlier rounds).
//
// Crashes: a record is written with one write() and then fsync'ed. A crash mid-append can leave a
// torn tail, fewer than kPrivacyLedgerRecordSize bytes after the last whole record; that round was
// never acknowledged (its checkpoint is written only after the fsync returned, and no device saw
// its model), so Open drops the tail (truncates the file to its whole records, fsync'ed) and says
// so through torn_tail_bytes(). A whole record that fails its checks (magic, version, checksum,
// padding, values) is corruption, never guessed around: DATA_LOSS naming the record.
//
// Thread safety: thread-compatible (the coordinator appends from one thread at a time:
// FinishCommit runs the commit hooks of one round at a time). Not safe across processes: one
// coordinator per checkpoint directory.
#ifndef FEDKIT_SERVER_PRIVACY_LEDGER_H_
#define FEDKIT_SERVER_PRIVACY_LEDGER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::server {

inline constexpr int64_t kPrivacyLedgerRecordSize = 48;
// The ledger's file name inside a checkpoint directory.
inline constexpr absl::string_view kPrivacyLedgerFileName = "privacy-ledger";

struct PrivacyLedgerRecord {
  int64_t round = 0;              // >= 1
  double sampling_rate = 0.0;     // q in (0, 1]: clients that could be summed / pool sampled from
  double noise_multiplier = 0.0;  // z > 0, what the accountant composed
  double epsilon = 0.0;           // >= 0, spent after this round (at the run's delta)
  bool operator==(const PrivacyLedgerRecord&) const = default;
};

// INVALID_ARGUMENT naming the value that is out of range (the checks above).
absl::Status ValidatePrivacyLedgerRecord(const PrivacyLedgerRecord& record);

// The record's bytes (kPrivacyLedgerRecordSize of them), valid or not (ParsePrivacyLedger checks).
std::string EncodePrivacyLedgerRecord(const PrivacyLedgerRecord& record);

struct ParsedPrivacyLedger {
  std::vector<PrivacyLedgerRecord> records;
  int64_t torn_tail_bytes = 0;  // bytes after the last whole record (a crash mid-append)
};

// The ledger's bytes, parsed: a pure function over any bytes (a fuzz target). DATA_LOSS naming the
// record index and byte offset for a whole record that fails its checks; never crashes.
absl::StatusOr<ParsedPrivacyLedger> ParsePrivacyLedger(absl::string_view bytes);

class PrivacyLedger {
 public:
  // Opens (creating it, mode 0600, with the directory fsync'ed) the ledger at `path`, drops a torn
  // tail (see above), and keeps the records. Errors name the path: DATA_LOSS for corruption,
  // INTERNAL for I/O failures.
  static absl::StatusOr<PrivacyLedger> Open(const std::string& path);

  PrivacyLedger(PrivacyLedger&& other) noexcept;
  PrivacyLedger& operator=(PrivacyLedger&& other) noexcept;
  PrivacyLedger(const PrivacyLedger&) = delete;
  PrivacyLedger& operator=(const PrivacyLedger&) = delete;
  ~PrivacyLedger();

  // Appends `record` and fsyncs the file; returns once it is durable. INVALID_ARGUMENT for an
  // invalid record; INTERNAL (naming the path)
  // when the write or fsync fails, after which every Append fails with FAILED_PRECONDITION (what
  // reached the disk is unknown: reopen to find out).
  absl::Status Append(const PrivacyLedgerRecord& record);

  const std::vector<PrivacyLedgerRecord>& records() const { return records_; }
  // The largest round recorded, 0 when empty.
  int64_t max_round() const { return max_round_; }
  int64_t torn_tail_bytes() const { return torn_tail_bytes_; }
  const std::string& path() const { return path_; }

 private:
  PrivacyLedger(std::string path, int fd, ParsedPrivacyLedger parsed);

  std::string path_;
  int fd_ = -1;
  std::vector<PrivacyLedgerRecord> records_;
  int64_t max_round_ = 0;
  int64_t torn_tail_bytes_ = 0;
  bool broken_ = false;
};

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_PRIVACY_LEDGER_H_
