// Keeping LibTorch, OpenMP and BLAS from spawning threads that fight FedKit's own worker pool.
#ifndef FEDKIT_MODELS_COMPUTE_THREADS_H_
#define FEDKIT_MODELS_COMPUTE_THREADS_H_

namespace fedkit::models {

// Makes LibTorch intra-op parallelism (OpenMP) single-threaded for the calling thread and for
// threads created afterwards, and sets OpenBLAS's own pool (if OpenBLAS is the loaded BLAS) to one
// thread. FedKit parallelises across clients instead: one worker per core, each running serial
// kernels. Call once per worker thread before it runs LibTorch code. Idempotent.
void UseSingleThreadedCompute();

// Name of the BLAS library LibTorch's matmuls resolve to (e.g. "OpenBLAS 0.3.21 ..." or
// "reference BLAS"), for logs and benchmark reports.
const char* BlasDescription();

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_COMPUTE_THREADS_H_
