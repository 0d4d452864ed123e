// The Collective over MPI (Open MPI from Debian's libopenmpi-dev): `mpirun -np N fedkit-sim ...`
// starts N ranks, which split each round's clients and gather their partial aggregates with
// MPI_Allgatherv. Built only when CMake finds MPI (FEDKIT_WITH_MPI).
//
// Ownership: Init calls MPI_Init_thread (MPI_THREAD_FUNNELED: only the thread that called Init
// makes MPI calls) and the object's destructor calls MPI_Finalize; create at most one per process.
#ifndef FEDKIT_SIMULATION_MPI_COLLECTIVE_H_
#define FEDKIT_SIMULATION_MPI_COLLECTIVE_H_

#include <memory>

#include "simulation/collective.h"

namespace fedkit::simulation {

class MpiCollective final : public Collective {
 public:
  // INTERNAL if MPI cannot be initialised.
  static absl::StatusOr<std::unique_ptr<MpiCollective>> Init(int* argc, char*** argv);
  ~MpiCollective() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::StatusOr<std::vector<std::string>> AllGather(const std::string& mine) override;

 private:
  MpiCollective(int rank, int size) : rank_(rank), size_(size) {}
  const int rank_;
  const int size_;
};

// Whether this process was started by mpirun (Open MPI's or PMIx's environment is set).
bool LaunchedByMpirun();

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_MPI_COLLECTIVE_H_
