#include "simulation/system_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/seeds.h"
#include "privacy/noise.h"

namespace fedkit::simulation {
namespace {

constexpr uint64_t kSpeedTag = 0x7370656564;  // "speed"
constexpr uint64_t kWeylTag = 0x7765796c;     // "weyl"

bool ParsePositive(absl::string_view text, double& out) {
  return absl::SimpleAtod(absl::StripAsciiWhitespace(text), &out) && std::isfinite(out) && out > 0;
}

bool ParseNonNegative(absl::string_view text, double& out) {
  return absl::SimpleAtod(absl::StripAsciiWhitespace(text), &out) && std::isfinite(out) && out >= 0;
}

absl::StatusOr<std::vector<DeviceSpeed>> ReadTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the device trace ", path));
  std::vector<DeviceSpeed> trace;
  std::string line;
  int number = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    if (!header) {
      if (text != "seconds_per_example,fixed_seconds") {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", number,
                         ": the first line must be the header seconds_per_example,fixed_seconds"));
      }
      header = true;
      continue;
    }
    const std::vector<absl::string_view> fields = absl::StrSplit(text, ',');
    DeviceSpeed speed;
    if (fields.size() != 2 || !ParsePositive(fields[0], speed.seconds_per_example) ||
        !ParseNonNegative(fields[1], speed.fixed_seconds)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": expected seconds_per_example (> 0) and fixed_seconds (>= 0), got '",
          text, "'"));
    }
    trace.push_back(speed);
  }
  if (trace.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the device trace ", path, " has no devices"));
  }
  return trace;
}

}  // namespace

absl::StatusOr<DeviceSpeeds> DeviceSpeeds::Create(absl::string_view spec, uint64_t seed) {
  DeviceSpeeds speeds;
  speeds.seed_ = seed;
  if (absl::ConsumePrefix(&spec, "trace:")) {
    if (spec.empty()) return absl::InvalidArgumentError("trace: needs a file path");
    absl::StatusOr<std::vector<DeviceSpeed>> trace = ReadTrace(std::string(spec));
    if (!trace.ok()) return trace.status();
    speeds.trace_ = *std::move(trace);
    return speeds;
  }
  if (absl::ConsumePrefix(&spec, "lognormal:")) {
    const std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
    if (parts.size() == 2 && ParsePositive(parts[0], speeds.median_) &&
        ParseNonNegative(parts[1], speeds.sigma_)) {
      return speeds;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "lognormal:MEDIAN,SIGMA needs MEDIAN > 0 (seconds per example) and SIGMA >= 0, got '", spec,
        "'"));
  }
  if (absl::ConsumePrefix(&spec, "two-speed:")) {
    const std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
    if (parts.size() == 3 && ParsePositive(parts[0], speeds.median_) &&
        ParseNonNegative(parts[1], speeds.slow_fraction_) && speeds.slow_fraction_ <= 1 &&
        ParsePositive(parts[2], speeds.slowdown_) && speeds.slowdown_ >= 1) {
      privacy::SeededRandomSource random(DeriveSeed(seed, {kSpeedTag, kWeylTag}));
      speeds.weyl_offset_ = privacy::UniformDouble(random);
      return speeds;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "two-speed:SECONDS,FRACTION,SLOWDOWN needs SECONDS > 0 (seconds per example), FRACTION "
        "in [0, 1] and SLOWDOWN >= 1, got '",
        spec, "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "device speeds are lognormal:MEDIAN,SIGMA, two-speed:SECONDS,FRACTION,SLOWDOWN or "
      "trace:FILE, not '",
      spec, "'"));
}

DeviceSpeed DeviceSpeeds::Of(int64_t client) const {
  if (!trace_.empty()) return trace_[static_cast<size_t>(client) % trace_.size()];
  if (slowdown_ > 0) {
    // The golden-ratio Weyl sequence: evenly spread for every prefix and window of clients.
    const double golden = (std::sqrt(5.0) - 1.0) / 2.0;
    const double position = std::fmod(weyl_offset_ + static_cast<double>(client) * golden, 1.0);
    return DeviceSpeed{median_ * (position < slow_fraction_ ? slowdown_ : 1.0), 0.0};
  }
  privacy::SeededRandomSource random(DeriveSeed(seed_, {kSpeedTag, static_cast<uint64_t>(client)}));
  return DeviceSpeed{median_ * std::exp(sigma_ * privacy::StandardGaussian(random)), 0.0};
}

double DeviceSpeeds::RoundSeconds(int64_t client, int64_t examples, int epochs) const {
  const DeviceSpeed speed = Of(client);
  return speed.fixed_seconds +
         static_cast<double>(examples) * static_cast<double>(epochs) * speed.seconds_per_example;
}

RoundSchedule ScheduleRound(const std::vector<std::optional<double>>& finish_seconds,
                            int64_t wanted, std::optional<double> deadline) {
  RoundSchedule schedule;
  schedule.kept.assign(finish_seconds.size(), false);
  std::vector<size_t> reporting;
  for (size_t i = 0; i < finish_seconds.size(); ++i) {
    if (!finish_seconds[i].has_value()) continue;
    if (deadline.has_value() && *finish_seconds[i] > *deadline) {
      ++schedule.stragglers;
    } else {
      reporting.push_back(i);
    }
  }
  std::stable_sort(reporting.begin(), reporting.end(),
                   [&](size_t a, size_t b) { return *finish_seconds[a] < *finish_seconds[b]; });
  const size_t keep = std::min(reporting.size(), static_cast<size_t>(std::max<int64_t>(wanted, 0)));
  for (size_t k = 0; k < keep; ++k) schedule.kept[reporting[k]] = true;
  schedule.not_needed = static_cast<int64_t>(reporting.size() - keep);
  // The coordinator closes a round at the wanted-th update, or when every client reported, or
  // else at the deadline.
  const bool all_reported = reporting.size() == finish_seconds.size();
  if (keep > 0 && (static_cast<int64_t>(keep) == wanted || all_reported || !deadline)) {
    schedule.virtual_seconds = *finish_seconds[reporting[keep - 1]];
  } else if (deadline.has_value()) {
    schedule.virtual_seconds = *deadline;
  }
  return schedule;
}

}  // namespace fedkit::simulation
