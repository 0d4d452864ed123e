#include "cli/logging.h"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace fedkit::cli {
namespace {

class LineFormatter final : public spdlog::formatter {
 public:
  LineFormatter(LogFormat format, std::string program)
      : format_(format), program_(std::move(program)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string message(msg.payload.data(), msg.payload.size());
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    std::string line;
    if (format_ == LogFormat::kJson) {
      const absl::Time time = absl::FromChrono(msg.time);
      nlohmann::json object = {
          {"time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone())},
          {"level", std::string(level.data(), level.size())},
          {"logger", program_},
          {"message", message}};
      // Invalid UTF-8 in a message (a client id, say) is replaced, never a thrown exception.
      line = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
      line = absl::StrCat(program_, ": ",
                          msg.level >= spdlog::level::warn
                              ? absl::StrCat(absl::string_view(level.data(), level.size()), ": ")
                              : "",
                          message);
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_, program_);
  }

 private:
  const LogFormat format_;
  const std::string program_;
};

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not text or json"));
}

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name) {
  for (auto level : {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                     spdlog::level::warn, spdlog::level::err, spdlog::level::off}) {
    const spdlog::string_view_t known = spdlog::level::to_string_view(level);
    if (name == absl::string_view(known.data(), known.size()) ||
        (level == spdlog::level::warn && name == "warn")) {
      return level;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' is not one of trace, debug, info, warning, error, off"));
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, absl::string_view program) {
  return std::make_unique<LineFormatter>(format, std::string(program));
}

void ConfigureLogging(absl::string_view program, const LogOptions& options) {
  auto logger = std::make_shared<spdlog::logger>(std::string(program),
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(MakeLogFormatter(options.format, program));
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::trace);  // every line reaches the file or pipe at once
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace fedkit::cli
