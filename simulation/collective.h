// How the processes of one simulation exchange a round's partial results. With one process
// (SingleProcess) nothing is exchanged; under `mpirun -np N fedkit-sim`
// (simulation/mpi_collective.h) every rank trains its share of the round's clients, and the ranks'
// partial aggregates are gathered to every rank and merged there. Because the aggregates are exact
// (aggregation/aggregator.h), every rank then holds the same model as one process would.
//
// Thread safety: a Collective is used by one thread (the simulator's round loop); calls are
// collective: every rank must make the same calls in the same order.
#ifndef FEDKIT_SIMULATION_COLLECTIVE_H_
#define FEDKIT_SIMULATION_COLLECTIVE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedkit::simulation {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;  // 0 <= rank() < size()
  virtual int size() const = 0;
  // Every rank's `mine`, indexed by rank, on every rank. UNAVAILABLE if the transport fails.
  virtual absl::StatusOr<std::vector<std::string>> AllGather(const std::string& mine) = 0;
};

// One process: rank 0 of 1.
class SingleProcess final : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  absl::StatusOr<std::vector<std::string>> AllGather(const std::string& mine) override {
    return std::vector<std::string>{mine};
  }
};

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_COLLECTIVE_H_
