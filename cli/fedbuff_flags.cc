#include "cli/fedbuff_flags.h"

#include <string>

#include "absl/status/statusor.h"
#include "cli/yaml_config.h"

namespace fedkit::cli {

void AddFedBuffFlags(CLI::App& app, absl::string_view concurrency_help, FedBuffFlags* flags) {
  flags->buffer_size_option = app.add_option("--buffer-size", flags->settings.buffer_size,
                                             "FedBuff: uploads per commit (K); a round is a commit")
                                  ->check(Positive());
  flags->concurrency_option = app.add_option("--concurrency", flags->settings.concurrency,
                                             "FedBuff: " + std::string(concurrency_help))
                                  ->check(Positive());
  flags->staleness_option =
      app.add_option("--staleness", flags->staleness,
                     "FedBuff: weight of an update s versions stale: sqrt (1/sqrt(1+s)) | constant "
                     "| poly:A ((1+s)^-A)");
}

std::optional<FlagError> ResolveFedBuffFlags(bool fedbuff, FedBuffFlags* flags) {
  if (!fedbuff) {
    for (CLI::Option* option :
         {flags->buffer_size_option, flags->concurrency_option, flags->staleness_option}) {
      if (option != nullptr && option->count() > 0) {
        return FlagError{option->get_name(), "needs --algorithm fedbuff"};
      }
    }
    return std::nullopt;
  }
  absl::StatusOr<aggregation::StalenessWeighting> weighting =
      aggregation::ParseStalenessWeighting(flags->staleness);
  if (!weighting.ok()) return FlagError{"--staleness", std::string(weighting.status().message())};
  flags->settings.staleness = *weighting;
  return std::nullopt;
}

}  // namespace fedkit::cli
