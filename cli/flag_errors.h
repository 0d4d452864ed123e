// Library errors in a binary's words. Libraries never name command-line flags: their messages
// name the fields of their option structs in backquotes (`noise_multiplier`), and may attach the
// field to blame as a payload (privacy::ValidateDpSettings does, under privacy::kDpFieldPayload).
// A binary maps fields to its own flags here.
//
// Thread safety: pure functions on values.
#ifndef FEDKIT_CLI_FLAG_ERRORS_H_
#define FEDKIT_CLI_FLAG_ERRORS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedkit::cli {

// Field name (without backquotes) -> what the user types to set it ("--noise-multiplier").
using FieldFlags = std::vector<std::pair<std::string, std::string>>;

// The DP vocabulary's fields (privacy::DpSettings and DpRoundShape) and the flags fedkit-sim and
// fedkit-coordinator set them with; only the population's flag differs between the two.
FieldFlags DpFieldFlags(absl::string_view population_flag);

struct FlagError {
  std::string flag;  // the blamed field's flag; "" when the status blames none that is mapped
  // The message with every mapped `field` replaced by its flag, less the blamed field when it
  // opens the message (it is printed before: "--dp: distributed needs --secagg ...").
  std::string message;
};
FlagError InFlags(const absl::Status& status, const FieldFlags& flags);

}  // namespace fedkit::cli

#endif  // FEDKIT_CLI_FLAG_ERRORS_H_
