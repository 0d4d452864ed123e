#include "monitoring/status_collector.h"

#include <string>
#include <utility>

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
