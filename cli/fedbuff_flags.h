// FedBuff's flags, shared by fedkit-sim and fedkit-coordinator: --buffer-size, --concurrency and
// --staleness, read into the one aggregation::FedBuffSettings both libraries take.
//
// Thread safety: parse on one thread.
#ifndef FEDKIT_CLI_FEDBUFF_FLAGS_H_
#define FEDKIT_CLI_FEDBUFF_FLAGS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/string_view.h"
#include "aggregation/staleness.h"
#include "cli/flag_errors.h"

namespace fedkit::cli {

struct FedBuffFlags {
  aggregation::FedBuffSettings settings;  // complete after ResolveFedBuffFlags
  std::string staleness = "sqrt";
  CLI::Option* buffer_size_option = nullptr;
  CLI::Option* concurrency_option = nullptr;
  CLI::Option* staleness_option = nullptr;
};

// Adds the three flags to `app`, writing into `flags` (which must outlive the parse; `app` must
// outlive ResolveFedBuffFlags, which asks its options whether they were given).
// `concurrency_help` says what C counts in this binary ("clients training at once (C), at most
// --clients").
void AddFedBuffFlags(CLI::App& app, absl::string_view concurrency_help, FedBuffFlags* flags);

// After parsing. With `fedbuff` (--algorithm fedbuff): parses --staleness into flags->settings,
// or returns the error naming --staleness. Without: returns an error naming the first of the three
// flags the user set ("needs --algorithm fedbuff"). nullopt when all is well.
std::optional<FlagError> ResolveFedBuffFlags(bool fedbuff, FedBuffFlags* flags);

}  // namespace fedkit::cli

#endif  // FEDKIT_CLI_FEDBUFF_FLAGS_H_
