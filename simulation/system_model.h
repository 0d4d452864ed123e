// System heterogeneity in virtual time (FedScale's idea, Lai et al. 2022): each virtual device
// has a compute speed, a round has a deadline, and the simulator keeps the clients a real
// coordinator would have kept, without waiting for anything in wall-clock time.
//
// A device's virtual time to finish a round is
//     fixed_seconds + examples * local_epochs * seconds_per_example
// (fixed_seconds stands for download, upload and start-up). Speeds come from
//   - a distribution: "lognormal:MEDIAN,SIGMA", seconds_per_example = MEDIAN * exp(SIGMA * N(0,1)),
//     drawn per client from the run seed (fixed_seconds 0); or
//   - two speeds: "two-speed:SECONDS,FRACTION,SLOWDOWN", every device takes SECONDS per example
//     except a fraction FRACTION in [0, 1] of them, SLOWDOWN (>= 1) times slower (fixed_seconds
//     0). The slow devices are the clients i with frac(u + i * (sqrt(5) - 1) / 2) < FRACTION, u
//     drawn from the run seed: a Weyl sequence, so every run of n consecutive clients holds
//     FRACTION * n slow ones up to O(log n), not just in expectation (20 of clients 0..99 at 0.2,
//     whatever the seed); or
//   - a trace file: "trace:PATH", CSV with the header "seconds_per_example,fixed_seconds" and one
//     device per line. Client i takes line i mod (number of lines), as FedScale maps its device
//     traces onto a dataset's clients, so a trace of a few hundred devices serves any population.
// The CSV reading is written by hand (two numeric columns; no Debian CSV library for C++ fits).
//
// Errors: INVALID_ARGUMENT naming the spec or the file and line for anything malformed (an
// unknown kind, a non-positive or non-finite number, a missing column, an empty trace);
// NOT_FOUND when the trace file cannot be read.
//
// Thread safety: DeviceSpeeds is immutable after Create (safe from any thread); ScheduleRound is a
// pure function.
#ifndef FEDKIT_SIMULATION_SYSTEM_MODEL_H_
#define FEDKIT_SIMULATION_SYSTEM_MODEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::simulation {

struct DeviceSpeed {
  double seconds_per_example = 0.0;
  double fixed_seconds = 0.0;
};

class DeviceSpeeds {
 public:
  // `spec` as above; `seed` draws the distribution's per-client speeds.
  static absl::StatusOr<DeviceSpeeds> Create(absl::string_view spec, uint64_t seed);

  // The speed of client `client` (>= 0).
  DeviceSpeed Of(int64_t client) const;
  // Virtual seconds for the client to train `examples` examples `epochs` times and report.
  double RoundSeconds(int64_t client, int64_t examples, int epochs) const;

 private:
  DeviceSpeeds() = default;
  // Distribution (trace_ empty, slowdown_ 0), two speeds (slowdown_ >= 1) or trace.
  double median_ = 0.0, sigma_ = 0.0;
  double slow_fraction_ = 0.0, slowdown_ = 0.0, weyl_offset_ = 0.0;
  uint64_t seed_ = 0;
  std::vector<DeviceSpeed> trace_;
};

// Which of a round's sampled clients contribute: those finishing by the deadline, in order of
// finishing time, up to `wanted` (K; the rest of an over-selected sample is not needed). Ties keep
// the sampled order.
struct RoundSchedule {
  std::vector<bool> kept;  // per sampled client
  int64_t stragglers = 0;  // finished after the deadline
  int64_t not_needed = 0;  // finished in time, but after the first `wanted`
  // When the round closed, as the coordinator closes it: at the wanted-th finish, or the last
  // one when every client reported, else at the deadline (without one: the last finish).
  double virtual_seconds = 0;
};
// `finish_seconds[i]` is sampled client i's virtual finishing time; nullopt for one that never
// reports (an injected dropout: neither kept nor counted as a straggler). `deadline` nullopt =
// none.
RoundSchedule ScheduleRound(const std::vector<std::optional<double>>& finish_seconds,
                            int64_t wanted, std::optional<double> deadline);

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_SYSTEM_MODEL_H_
