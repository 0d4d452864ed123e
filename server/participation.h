// Who took part in a committed round: the devices waiting when the round was sampled, those it
// assigned, and those whose update is in its aggregate. The coordinator records it (when asked,
// CoordinatorHooks::round_participation) so that an operator can audit a run, and so that the
// simulator can replay a networked run: it samples the same devices from the same pool with the
// same seed (and checks that it did), and takes from the record only what no simulation can know,
// which assigned devices reported in time (simulation/simulator.h, SimulationOptions::replay).
//
// The file format is JSON Lines, one round per line, in commit order:
//   {"round":1,"attempt":0,"pool":["a","b",...],"assigned":[...],"aggregated":[...]}
// every list sorted, aggregated a subset of assigned, assigned a subset of pool. Under DP the
// line also has "sampling_seed":"<decimal uint64>", the seed the round's sample was drawn with
// (from the coordinator's CSPRNG: devices never learn it, so the record must stay with the
// operator); without it the seed is server::SamplingSeed(run seed, round, attempt).
//
// Errors: ParseParticipation returns INVALID_ARGUMENT naming the source and line for malformed
// JSON, a missing or mistyped field, an invalid client id, unsorted or duplicate ids, a subset
// that is not one, or rounds out of order; ReadParticipationFile returns NOT_FOUND when the file
// cannot be read.
//
// Thread safety: pure functions on values.
#ifndef FEDKIT_SERVER_PARTICIPATION_H_
#define FEDKIT_SERVER_PARTICIPATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::server {

struct RoundParticipation {
  int64_t round = 0;    // 1-based
  int64_t attempt = 0;  // restarts of the round before the committed one (the sampling seed's)
  std::vector<std::string> pool;        // waiting when the round was sampled, sorted
  std::vector<std::string> assigned;    // sorted
  std::vector<std::string> aggregated;  // sorted
  // The seed SampleIndices(pool size, assigned count, seed) drew `assigned` with, when it was not
  // SamplingSeed(run seed, round, attempt): under DP (server/round_coordinator.h).
  std::optional<uint64_t> sampling_seed;
};

// One JSON line (without the newline).
std::string ParticipationToJson(const RoundParticipation& participation);

// Every line of `text` (blank lines skipped); `source` names it in errors (a file name).
absl::StatusOr<std::vector<RoundParticipation>> ParseParticipation(absl::string_view text,
                                                                   absl::string_view source);
absl::StatusOr<std::vector<RoundParticipation>> ReadParticipationFile(const std::string& path);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_PARTICIPATION_H_
