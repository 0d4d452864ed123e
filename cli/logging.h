// Logging for FedKit's binaries: spdlog's default logger writing to standard error, either as
// text lines ("fedkit-coordinator: message", warnings and errors with their level) or as JSON
// lines ({"time": ISO 8601 UTC, "level", "logger", "message"}) for log collectors, at a chosen
// minimum level. Libraries do not log: they return statuses and report through hooks, which the
// binaries log with this.
//
// Thread safety: Configure once, before other threads log (it replaces the default logger);
// spdlog's default logger is then safe to use from any thread (its stderr sink is mutex-guarded).
#ifndef FEDKIT_CLI_LOGGING_H_
#define FEDKIT_CLI_LOGGING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spdlog/formatter.h"
#include "spdlog/spdlog.h"

namespace fedkit::cli {

enum class LogFormat { kText, kJson };

struct LogOptions {
  LogFormat format = LogFormat::kText;
  spdlog::level::level_enum level = spdlog::level::info;
};

// Parses a --log-format value ("text" or "json"); INVALID_ARGUMENT naming the accepted values.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);
// Parses a --log-level value ("trace", "debug", "info", "warning" or "warn", "error", "off");
// INVALID_ARGUMENT
// naming the accepted values.
absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name);

// The formatter each format uses (exposed for tests): text is "PROGRAM: [LEVEL: ]MESSAGE" with the
// level shown from warnings up; JSON is one object per line, the message escaped by nlohmann-json.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, absl::string_view program);

// Makes spdlog's default logger, named `program`, write to stderr with `options`.
void ConfigureLogging(absl::string_view program, const LogOptions& options);

}  // namespace fedkit::cli

#endif  // FEDKIT_CLI_LOGGING_H_
