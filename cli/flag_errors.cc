#include "cli/flag_errors.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "privacy/dp_setup.h"

namespace fedkit::cli {

FieldFlags DpFieldFlags(absl::string_view population_flag) {
  return {{"mode", "--dp"},
          {"noise_multiplier", "--noise-multiplier"},
          {"adaptive_clip_quantile", "--adaptive-clip-quantile"},
          {"adaptive_clip_learning_rate", "--adaptive-clip-lr"},
          {"target_epsilon", "--target-epsilon"},
          {"delta", "--delta"},
          {"dropout_tolerance", "--dp-dropout-tolerance"},
          {"clip_norm", "--clip-norm"},
          {"clients_per_round", "--clients-per-round"},
          {"population", std::string(population_flag)},
          {"secure_aggregation", "--secagg secagg or secagg+"},
          {"secure_aggregation_modulus_bits", "--secagg-modulus-bits"}};
}

FlagError InFlags(const absl::Status& status, const FieldFlags& flags) {
  std::vector<std::pair<std::string, std::string>> replacements;
  replacements.reserve(flags.size());
  for (const auto& [field, flag] : flags)
    replacements.emplace_back(absl::StrCat("`", field, "`"), flag);
  FlagError error;
  absl::string_view message = status.message();
  const std::optional<std::string> blamed = privacy::DpErrorField(status);
  if (blamed.has_value()) {
    for (const auto& [field, flag] : flags) {
      if (field == *blamed) error.flag = flag;
    }
    // "`mode` distributed needs ..." is printed after the flag: "--dp: distributed needs ...".
    if (!error.flag.empty()) absl::ConsumePrefix(&message, absl::StrCat("`", *blamed, "` "));
  }
  error.message = absl::StrReplaceAll(message, replacements);
  return error;
}

}  // namespace fedkit::cli
