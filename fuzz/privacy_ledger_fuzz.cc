// Fuzz target: the privacy ledger file (server/privacy_ledger.h, ParsePrivacyLedger) on the
// fuzzer's bytes. Checked beyond the sanitizers: a ledger that parses has only valid records, and
// its whole records re-encode to the same bytes (nothing is silently repaired but the torn tail).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "server/privacy_ledger.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<fedkit::server::ParsedPrivacyLedger> parsed =
      fedkit::server::ParsePrivacyLedger(bytes);
  if (!parsed.ok()) return 0;
  const int64_t whole =
      static_cast<int64_t>(parsed->records.size()) * fedkit::server::kPrivacyLedgerRecordSize;
  if (whole + parsed->torn_tail_bytes != static_cast<int64_t>(size)) std::abort();
  if (parsed->torn_tail_bytes >= fedkit::server::kPrivacyLedgerRecordSize) std::abort();
  std::string encoded;
  for (const fedkit::server::PrivacyLedgerRecord& record : parsed->records) {
    if (!fedkit::server::ValidatePrivacyLedgerRecord(record).ok()) std::abort();
    encoded += fedkit::server::EncodePrivacyLedgerRecord(record);
  }
  if (encoded != bytes.substr(0, static_cast<size_t>(whole))) std::abort();
  return 0;
}
