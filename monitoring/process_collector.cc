#include "monitoring/process_collector.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace fedkit::monitoring {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::optional<std::string> ReadText(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

MetricFamily One(std::string name, std::string help, MetricType type, double value) {
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return MetricFamily{std::move(name), std::move(help), type, {m}};
}

std::optional<double> BootTime() {
  std::optional<std::string> stat = ReadText("/proc/stat");
  if (!stat.has_value()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double seconds = 0;
      if (absl::SimpleAtod(line, &seconds)) return seconds;
    }
  }
  return std::nullopt;
}

std::optional<double> MaxOpenFiles() {
  std::optional<std::string> limits = ReadText("/proc/self/limits");
  if (!limits.has_value()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    double soft = 0;
    if (!fields.empty() && absl::SimpleAtod(fields[0], &soft)) return soft;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ProcessStats> ParseProcStat(const std::string& stat, double ticks_per_second,
                                          double page_bytes, double boot_time_seconds) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields resume after the
  // last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || ticks_per_second <= 0) return std::nullopt;
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipWhitespace());
  // After comm, field 3 (state) is f[0]; utime is field 14, stime 15, num_threads 20,
  // starttime 22, vsize 23, rss 24 (proc(5)).
  constexpr size_t kFirst = 3;
  auto field = [&](size_t n, double* out) {
    return n - kFirst < f.size() &&
           absl::SimpleAtod(absl::StripAsciiWhitespace(f[n - kFirst]), out);
  };
  double utime = 0, stime = 0, threads = 0, start = 0, vsize = 0, rss = 0;
  if (!field(14, &utime) || !field(15, &stime) || !field(20, &threads) || !field(22, &start) ||
      !field(23, &vsize) || !field(24, &rss)) {
    return std::nullopt;
  }
  return ProcessStats{.cpu_seconds = (utime + stime) / ticks_per_second,
                      .resident_bytes = rss * page_bytes,
                      .virtual_bytes = vsize,
                      .threads = threads,
                      .start_time_seconds = boot_time_seconds + start / ticks_per_second};
}

std::vector<MetricFamily> ProcessCollector::Collect() const {
  std::vector<MetricFamily> out;
  std::optional<std::string> stat = ReadText("/proc/self/stat");
  std::optional<double> boot = BootTime();
  if (stat.has_value() && boot.has_value()) {
    std::optional<ProcessStats> p =
        ParseProcStat(*stat, static_cast<double>(sysconf(_SC_CLK_TCK)),
                      static_cast<double>(sysconf(_SC_PAGESIZE)), *boot);
    if (p.has_value()) {
      out.push_back(One("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.", MetricType::Counter,
                        p->cpu_seconds));
      out.push_back(One("process_resident_memory_bytes", "Resident memory size in bytes.",
                        MetricType::Gauge, p->resident_bytes));
      out.push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                        MetricType::Gauge, p->virtual_bytes));
      out.push_back(One("process_threads", "Number of OS threads in the process.",
                        MetricType::Gauge, p->threads));
      out.push_back(One("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
                        p->start_time_seconds));
    }
  }
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  if (!ec) {
    out.push_back(
        One("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, fds));
  }
  if (std::optional<double> max = MaxOpenFiles(); max.has_value()) {
    out.push_back(One("process_max_fds", "Maximum number of open file descriptors.",
                      MetricType::Gauge, *max));
  }
  return out;
}

}  // namespace fedkit::monitoring
