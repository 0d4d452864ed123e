#include "server/privacy_ledger.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FreshPath(const std::string& name) {
  const fs::path dir = fs::path(testing::TempDir()) / ("privacy_ledger_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return (dir / std::string(kPrivacyLedgerFileName)).string();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

PrivacyLedgerRecord Record(int64_t round, double epsilon) {
  return {.round = round, .sampling_rate = 0.1, .noise_multiplier = 1.1, .epsilon = epsilon};
}

TEST(PrivacyLedgerTest, AppendedRecordsAreDurableAndReadBackExactly) {
  const std::string path = FreshPath("roundtrip");
  {
    auto ledger = PrivacyLedger::Open(path);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    EXPECT_TRUE(ledger->records().empty());
    ASSERT_TRUE(ledger->Append(Record(1, 0.25)).ok());
    ASSERT_TRUE(ledger->Append({2, 1.0 / 3.0, 0.7, 0.123456789012345678}).ok());
    EXPECT_EQ(ledger->max_round(), 2);
  }
  EXPECT_EQ(fs::file_size(path), 2u * kPrivacyLedgerRecordSize);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto reopened = PrivacyLedger::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_EQ(reopened->records().size(), 2u);
  EXPECT_EQ(reopened->records()[0], Record(1, 0.25));
  EXPECT_EQ(reopened->records()[1], (PrivacyLedgerRecord{2, 1.0 / 3.0, 0.7, 0.123456789012345678}));
  EXPECT_EQ(reopened->torn_tail_bytes(), 0);
  // Appends continue after what is there.
  ASSERT_TRUE(reopened->Append(Record(3, 0.5)).ok());
  EXPECT_EQ(ParsePrivacyLedger(ReadAll(path))->records.size(), 3u);
}

TEST(PrivacyLedgerTest, RoundsMayRepeatAfterARollbackAndInvalidRecordsAreRefused) {
  auto ledger = PrivacyLedger::Open(FreshPath("order"));
  ASSERT_TRUE(ledger.ok());
  ASSERT_TRUE(ledger->Append(Record(7, 0.1)).ok());  // a ledger begun after 6 checkpointed rounds
  ASSERT_TRUE(ledger->Append(Record(8, 0.2)).ok());
  ASSERT_TRUE(ledger->Append(Record(8, 0.3)).ok());  // round 8 re-run after an override
  EXPECT_EQ(ledger->max_round(), 8);
  for (const PrivacyLedgerRecord& bad :
       {PrivacyLedgerRecord{0, 0.1, 1, 0}, PrivacyLedgerRecord{3, 0, 1, 0},
        PrivacyLedgerRecord{3, 1.5, 1, 0}, PrivacyLedgerRecord{3, 0.1, 0, 0},
        PrivacyLedgerRecord{3, 0.1, 1, -1}, PrivacyLedgerRecord{3, 0.1, 1, std::nan("")}}) {
    EXPECT_EQ(ledger->Append(bad).code(), absl::StatusCode::kInvalidArgument) << bad.round;
  }
  EXPECT_EQ(ledger->records().size(), 3u);
}

TEST(PrivacyLedgerTest, ATornLastRecordIsDroppedAndTheFileTruncated) {
  const std::string path = FreshPath("torn");
  const std::string whole =
      EncodePrivacyLedgerRecord(Record(1, 0.1)) + EncodePrivacyLedgerRecord(Record(2, 0.2));
  const std::string torn = EncodePrivacyLedgerRecord(Record(3, 0.3)).substr(0, 17);
  WriteAll(path, whole + torn);
  auto ledger = PrivacyLedger::Open(path);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_EQ(ledger->records().size(), 2u);
  EXPECT_EQ(ledger->torn_tail_bytes(), 17);
  EXPECT_EQ(ReadAll(path), whole);  // truncated, so the next append lands on a record boundary
  ASSERT_TRUE(ledger->Append(Record(3, 0.3)).ok());
  auto parsed = ParsePrivacyLedger(ReadAll(path));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->records.size(), 3u);
  EXPECT_EQ(parsed->torn_tail_bytes, 0);
}

TEST(PrivacyLedgerTest, CorruptWholeRecordsAreDataLossNamingTheRecord) {
  const std::string good =
      EncodePrivacyLedgerRecord(Record(1, 0.1)) + EncodePrivacyLedgerRecord(Record(2, 0.2));
  struct Case {
    size_t byte;
    std::string message;
  };
  // Flipping any checksummed byte of record 1 (at byte 48) is caught by the checksum; the marker
  // and padding have checks of their own.
  for (const Case& c :
       {Case{48, "record 1 (byte 48): no record marker"},
        Case{48 + 9, "record 1 (byte 48): checksum mismatch"}, Case{48 + 20, "checksum mismatch"},
        Case{48 + 41, "checksum mismatch"}, Case{48 + 46, "non-zero padding"}}) {
    std::string bytes = good;
    bytes[c.byte] = static_cast<char>(bytes[c.byte] ^ 0x5a);
    auto parsed = ParsePrivacyLedger(bytes);
    ASSERT_FALSE(parsed.ok()) << c.byte;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss) << c.byte;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.byte;
  }
  // A record whose values are out of range, with a valid checksum.
  const std::string zero_round =
      EncodePrivacyLedgerRecord(Record(1, 0.1)) + EncodePrivacyLedgerRecord(Record(0, 0.2));
  EXPECT_THAT(ParsePrivacyLedger(zero_round).status().message(),
              HasSubstr("record 1 (byte 48): round 0 is not >= 1"));
  const std::string nan_epsilon = EncodePrivacyLedgerRecord(Record(1, std::nan("")));
  EXPECT_EQ(ParsePrivacyLedger(nan_epsilon).status().code(), absl::StatusCode::kDataLoss);
  // Open names the file.
  const std::string path = FreshPath("corrupt");
  std::string bytes = good;
  bytes[48 + 30] ^= 1;
  WriteAll(path, bytes);
  auto opened = PrivacyLedger::Open(path);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr(path));
  EXPECT_EQ(ReadAll(path), bytes);  // corruption is reported, never repaired
}

TEST(PrivacyLedgerTest, TheParserTakesAnyBytes) {
  // Every prefix of a valid ledger, and arbitrary garbage, parse or fail cleanly.
  const std::string good =
      EncodePrivacyLedgerRecord(Record(1, 0.1)) + EncodePrivacyLedgerRecord(Record(2, 0.2));
  for (size_t n = 0; n <= good.size(); ++n) {
    auto parsed = ParsePrivacyLedger(absl::string_view(good).substr(0, n));
    ASSERT_TRUE(parsed.ok()) << n;
    EXPECT_EQ(parsed->records.size(), n / kPrivacyLedgerRecordSize);
    EXPECT_EQ(parsed->torn_tail_bytes, static_cast<int64_t>(n % kPrivacyLedgerRecordSize));
  }
  std::string garbage(3 * kPrivacyLedgerRecordSize, '\xff');
  EXPECT_EQ(ParsePrivacyLedger(garbage).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace fedkit::server
