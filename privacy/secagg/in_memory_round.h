// Runs one secure aggregation round with every client in this process: the simulator's transport
// for secure aggregation, also used by tests and benchmarks. Messages go through exactly the
// SecAggClient / SecAggServer state machines the coordinator and device library use; only the
// delivery is a function call. Dropouts are injected per client and phase.
#ifndef FEDKIT_PRIVACY_SECAGG_IN_MEMORY_ROUND_H_
#define FEDKIT_PRIVACY_SECAGG_IN_MEMORY_ROUND_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "privacy/secagg/protocol.h"
#include "privacy/secagg/server.h"

namespace fedkit::secagg {

// The phase in which a client stops: it sends nothing from this phase on.
enum class ClientPhase { kAdvertiseKeys = 0, kShareKeys = 1, kMaskedInput = 2, kUnmask = 3 };
inline constexpr int kNumClientPhases = 4;
absl::string_view ClientPhaseName(ClientPhase phase);  // "advertise", "share", "upload", "unmask"
absl::StatusOr<ClientPhase> ParseClientPhase(absl::string_view name);

// Runs body(worker, i) for i in [0, n), possibly in parallel on workers numbered from 0; returns
// when all are done. One worker never runs two bodies at once (so per-worker state is safe).
using ParallelBody = std::function<void(int worker, int64_t i)>;
using ParallelFor = std::function<void(int64_t n, const ParallelBody& body)>;
// Sequential ParallelFor (everything on worker 0).
void RunSequentially(int64_t n, const ParallelBody& body);

struct InMemoryRoundStats {
  // Wall seconds spent inside each client's state machine, per phase, summed over clients and the
  // largest single client.
  double client_seconds_total[kNumClientPhases] = {};
  double client_seconds_max[kNumClientPhases] = {};
  // Seconds in the server's state machine (all phases, including Finish).
  double server_seconds = 0.0;
  double server_finish_seconds = 0.0;  // of which unmasking and mask removal
  // Bytes each client sent (WireBytes), mean and max over the clients that sent anything.
  double client_bytes_sent_mean = 0.0;
  int64_t client_bytes_sent_max = 0;
};

struct InMemoryRoundResult {
  // OK with the unmasked sum, or the server's ABORTED status (the round revealed nothing).
  absl::Status status;
  std::vector<uint64_t> sum;      // sum of the inputs of `included`, mod 2^bits
  std::vector<int32_t> included;  // U3: clients whose inputs are in the sum
  // Clients caught misbehaving (SecAggServer::culprits; also when the round aborted).
  std::vector<SecAggCulprit> culprits;
  InMemoryRoundStats stats;
};

// Runs a round of config.num_clients clients. `input(worker, i)` gives client i's vector (called
// once, only for clients that reach the masked-input phase, possibly from several workers at once).
// `drop_at[i]`, if set, is the phase in which client i goes silent. A client-side error other than
// a dropout is returned as an error (honest clients never fail in a correct run).
absl::StatusOr<InMemoryRoundResult> RunInMemoryRound(
    const ProtocolConfig& config,
    const std::function<absl::StatusOr<std::vector<uint64_t>>(int worker, int32_t i)>& input,
    const std::vector<std::optional<ClientPhase>>& drop_at,
    const ParallelFor& parallel_for = RunSequentially);

}  // namespace fedkit::secagg

#endif  // FEDKIT_PRIVACY_SECAGG_IN_MEMORY_ROUND_H_
