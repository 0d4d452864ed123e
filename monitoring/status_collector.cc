#include "monitoring/status_collector.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedkit::monitoring {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void AddGauge(MetricFamily& family, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  family.metric.push_back(std::move(m));
}

void AddCounter(MetricFamily& family, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  family.metric.push_back(std::move(m));
}

// The last committed round's device telemetry (if it has any): reports, and each field's p50 and
// p90 as a gauge with a `percentile` label ("50", "90"; promtool reserves `quantile` for
// summaries). A field no device measured has no series.
void AddDeviceTelemetry(const v1::GetStatusResponse& s, std::vector<MetricFamily>& out) {
  if (s.history_size() == 0 || !s.history(s.history_size() - 1).has_device_telemetry()) return;
  const v1::DeviceTelemetrySummary& t = s.history(s.history_size() - 1).device_telemetry();
  MetricFamily reports =
      Family("fedkit_device_telemetry_reports",
             "Uploads of the last committed round with valid device telemetry", MetricType::Gauge);
  AddGauge(reports, static_cast<double>(t.reports()));
  out.push_back(std::move(reports));
  struct Field {
    const char* name;
    const char* help;
    bool set;
    const v1::TelemetryQuantiles& q;
  };
  const Field fields[] = {
      {"fedkit_device_training_seconds", "Devices' local training time", t.has_training_seconds(),
       t.training_seconds()},
      {"fedkit_device_examples_per_second", "Devices' training throughput (examples x epochs / s)",
       t.has_examples_per_second(), t.examples_per_second()},
      {"fedkit_device_peak_memory_bytes",
       "Devices' process peak resident memory (VmHWM) after training", t.has_peak_memory_bytes(),
       t.peak_memory_bytes()},
      {"fedkit_device_model_load_seconds",
       "Devices' time from assignment to a model ready to train (download, checks)",
       t.has_model_load_seconds(), t.model_load_seconds()},
      {"fedkit_device_upload_bytes", "Devices' serialized request bytes sent for the round",
       t.has_upload_bytes(), t.upload_bytes()},
      {"fedkit_device_download_bytes", "Devices' serialized response bytes received for the round",
       t.has_download_bytes(), t.download_bytes()},
      {"fedkit_device_cpu_seconds", "Devices' process CPU time (user + system) during training",
       t.has_cpu_seconds(), t.cpu_seconds()},
      {"fedkit_device_energy_joules", "Devices' CPU package energy during training (RAPL)",
       t.has_energy_joules(), t.energy_joules()},
  };
  for (const Field& f : fields) {
    if (!f.set || f.q.count() == 0) continue;
    MetricFamily family = Family(
        f.name, absl::StrCat(f.help, ": percentiles over the last committed round's reports"),
        MetricType::Gauge);
    AddGauge(family, f.q.p50(), {{"percentile", "50"}});
    AddGauge(family, f.q.p90(), {{"percentile", "90"}});
    out.push_back(std::move(family));
  }
}

}  // namespace

StatusCollector::StatusCollector(std::function<v1::GetStatusResponse()> status)
    : status_(std::move(status)) {}

std::vector<MetricFamily> StatusCollector::Collect() const { return FamiliesOf(status_()); }

std::vector<MetricFamily> StatusCollector::FamiliesOf(const v1::GetStatusResponse& s) {
  std::vector<MetricFamily> out;

  MetricFamily round =
      Family("fedkit_round", "The round in progress or next (1-based)", MetricType::Gauge);
  AddGauge(round, static_cast<double>(s.current_round()));
  out.push_back(std::move(round));

  MetricFamily completed =
      Family("fedkit_rounds_completed", "Rounds committed and durable, restored ones included",
             MetricType::Gauge);
  AddGauge(completed,
           static_cast<double>(s.history_size() > 0 ? s.history(s.history_size() - 1).round() : 0));
  out.push_back(std::move(completed));

  MetricFamily planned =
      Family("fedkit_rounds_planned", "Rounds the run will commit in all", MetricType::Gauge);
  AddGauge(planned, static_cast<double>(s.rounds_total()));
  out.push_back(std::move(planned));

  MetricFamily phase =
      Family("fedkit_round_phase", "1 for the coordinator's current phase, 0 for the others",
             MetricType::Gauge);
  for (const char* name : kRoundPhases) {
    AddGauge(phase, s.phase() == name ? 1.0 : 0.0, {{"phase", name}});
  }
  out.push_back(std::move(phase));

  MetricFamily devices = Family("fedkit_devices",
                                "Devices now: checked in and waiting, assigned this round, "
                                "uploaded this round",
                                MetricType::Gauge);
  AddGauge(devices, static_cast<double>(s.checked_in()), {{"state", "checked_in"}});
  AddGauge(devices, static_cast<double>(s.assigned()), {{"state", "assigned"}});
  AddGauge(devices, static_cast<double>(s.received()), {{"state", "uploaded"}});
  out.push_back(std::move(devices));

  MetricFamily abandoned = Family("fedkit_rounds_abandoned_total",
                                  "Round attempts given up (too few updates by the deadline, a "
                                  "refused aggregate, an aborted secure aggregation)",
                                  MetricType::Counter);
  AddCounter(abandoned, static_cast<double>(s.rounds_abandoned()));
  out.push_back(std::move(abandoned));

  MetricFamily refusals =
      Family("fedkit_refusals_total",
             "Requests and updates refused, by reason (GetStatus refusals)", MetricType::Counter);
  for (const auto& [reason, count] : s.refusals()) {
    AddCounter(refusals, static_cast<double>(count), {{"reason", reason}});
  }
  out.push_back(std::move(refusals));

  MetricFamily declines = Family("fedkit_declines_total", "Assignments devices declined, by reason",
                                 MetricType::Counter);
  for (const auto& [reason, count] : s.declines()) {
    AddCounter(declines, static_cast<double>(count), {{"reason", reason}});
  }
  out.push_back(std::move(declines));

  MetricFamily invalid = Family("fedkit_device_telemetry_invalid_total",
                                "Uploads whose device telemetry was ignored as invalid (negative, "
                                "NaN, absurd); the uploads themselves were counted",
                                MetricType::Counter);
  AddCounter(invalid, static_cast<double>(s.device_telemetry_invalid()));
  out.push_back(std::move(invalid));
  AddDeviceTelemetry(s, out);

  if (s.has_epsilon()) {
    MetricFamily epsilon =
        Family("fedkit_dp_epsilon",
               "Differential privacy spent so far (epsilon at fedkit_dp_delta)", MetricType::Gauge);
    AddGauge(epsilon, s.epsilon());
    out.push_back(std::move(epsilon));
    MetricFamily delta =
        Family("fedkit_dp_delta", "The delta epsilon is reported at", MetricType::Gauge);
    AddGauge(delta, s.delta());
    out.push_back(std::move(delta));
  }
  return out;
}

}  // namespace fedkit::monitoring
