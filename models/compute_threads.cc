#include "models/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

namespace fedkit::models {
namespace {

// OpenBLAS keeps a process-wide pthread pool that ignores OpenMP settings; it is reached through
// dlsym because FedKit does not link OpenBLAS directly (LibTorch links libblas.so.3, which Debian's
// alternatives point at OpenBLAS when it is installed).
using SetThreadsFn = void (*)(int);
using GetConfigFn = char* (*)();

}  // namespace

void UseSingleThreadedCompute() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  at::set_num_threads(1);
  if (auto set_threads =
          reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_threads(1);
  }
}

const char* BlasDescription() {
  if (auto get_config = reinterpret_cast<GetConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    return get_config();
  }
  return "not OpenBLAS (likely the reference BLAS)";
}

}  // namespace fedkit::models
