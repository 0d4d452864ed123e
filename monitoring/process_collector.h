// ProcessCollector: the standard process_* metrics (CPU seconds, resident and virtual memory,
// open and maximum file descriptors, threads, start time) of this process, read from Linux's
// /proc at each scrape, under the names every Prometheus client library uses, so the usual
// dashboards work. Written here because prometheus-cpp has no process collector.
//
// Thread safety: Collect may run on any thread. A /proc file that cannot be read leaves its
// metrics out of that scrape (never an error: the other metrics still matter).
#ifndef FEDKIT_MONITORING_PROCESS_COLLECTOR_H_
#define FEDKIT_MONITORING_PROCESS_COLLECTOR_H_

#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace fedkit::monitoring {

// What /proc says of one process.
struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double threads = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

// Parses /proc/PID/stat's text given the clock ticks per second, the page size and the boot time
// (/proc/stat's btime). nullopt when the text is not a stat line.
std::optional<ProcessStats> ParseProcStat(const std::string& stat, double ticks_per_second,
                                          double page_bytes, double boot_time_seconds);

class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace fedkit::monitoring

#endif  // FEDKIT_MONITORING_PROCESS_COLLECTOR_H_
