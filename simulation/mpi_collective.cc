#include "simulation/mpi_collective.h"

#include <mpi.h>

#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"

namespace fedkit::simulation {

absl::StatusOr<std::unique_ptr<MpiCollective>> MpiCollective::Init(int* argc, char*** argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    return absl::InternalError("MPI_Init_thread failed");
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return std::unique_ptr<MpiCollective>(new MpiCollective(rank, size));
}

MpiCollective::~MpiCollective() { MPI_Finalize(); }

absl::StatusOr<std::vector<std::string>> MpiCollective::AllGather(const std::string& mine) {
  if (mine.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("a partial result over 2 GiB cannot be gathered");
  }
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(size_);
  if (MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD) !=
      MPI_SUCCESS) {
    return absl::UnavailableError("MPI_Allgather of the partial sizes failed");
  }
  std::vector<int> offsets(size_);
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = static_cast<int>(total);
    total += lengths[r];
  }
  if (total > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError("the gathered partial results exceed 2 GiB");
  }
  std::string all(static_cast<size_t>(total), '\0');
  if (MPI_Allgatherv(mine.data(), length, MPI_BYTE, all.data(), lengths.data(), offsets.data(),
                     MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return absl::UnavailableError("MPI_Allgatherv of the partial results failed");
  }
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(offsets[r], lengths[r]);
  return out;
}

bool LaunchedByMpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

}  // namespace fedkit::simulation
