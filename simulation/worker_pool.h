// A fixed set of threads and a way to run indexed tasks on them while consuming results in order.
#ifndef FEDKIT_SIMULATION_WORKER_POOL_H_
#define FEDKIT_SIMULATION_WORKER_POOL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace fedkit::simulation {

// Persistent worker threads, so per-thread setup (thread-local LibTorch settings, a model per
// worker) happens once per run rather than once per round.
class WorkerPool {
 public:
  // Starts `num_workers` (>= 1) threads; each runs `on_start(worker)` first if given.
  explicit WorkerPool(int num_workers, std::function<void(int)> on_start = nullptr);
  ~WorkerPool();  // Waits for the current job, then joins.

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }

  // Runs `job(worker)` once on every worker and returns when all have returned. Not reentrant: call
  // from one thread at a time.
  void RunOnEachWorker(const std::function<void(int)>& job);
  // Runs body(worker, i) for every i in [0, count), each once, the workers taking the next index
  // as they free up; returns when all are done. Not reentrant, as RunOnEachWorker.
  void ParallelFor(int64_t count, const std::function<void(int worker, int64_t i)>& body);

 private:
  void WorkerLoop(int worker);

  absl::Mutex mu_;
  const std::function<void(int)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs produce(worker, i) for i in [0, num_tasks) across the pool and feeds each result to
// consume(i, result) in increasing i, one call at a time, so a reduction that is order-sensitive
// (floating-point sums) gives the same answer for any number of workers. At most `window` results
// wait for consumption at once, which bounds memory by the window, not by num_tasks. The first
// error from either callback stops the run and is returned.
template <typename T>
absl::Status RunOrdered(WorkerPool& pool, int64_t num_tasks, int64_t window,
                        const std::function<absl::StatusOr<T>(int worker, int64_t task)>& produce,
                        const std::function<absl::Status(int64_t task, T result)>& consume) {
  if (window < 1) window = 1;
  absl::Mutex mu;
  absl::CondVar progress;  // signalled when a result is consumed or an error is recorded
  int64_t next_task ABSL_GUARDED_BY(mu) = 0;
  int64_t next_to_consume ABSL_GUARDED_BY(mu) = 0;
  bool consuming ABSL_GUARDED_BY(mu) = false;
  absl::Status error ABSL_GUARDED_BY(mu);
  std::vector<std::optional<T>> slots(window);  // slot i % window; guarded by mu

  pool.RunOnEachWorker([&](int worker) {
    absl::MutexLock lock(&mu);
    while (true) {
      // A task may start only when its slot is free: within `window` of the oldest unconsumed one.
      while (error.ok() && next_task < num_tasks && next_task >= next_to_consume + window) {
        progress.Wait(&mu);
      }
      if (!error.ok() || next_task >= num_tasks) return;
      const int64_t task = next_task++;

      mu.Unlock();
      absl::StatusOr<T> result = produce(worker, task);
      mu.Lock();

      if (!result.ok()) {
        if (error.ok()) error = result.status();
        progress.SignalAll();
        return;
      }
      slots[task % window] = std::move(*result);
      if (consuming) continue;  // the worker already draining will pick this result up

      // Drain every consecutive ready result. Only one worker consumes at a time, and consume()
      // runs without the lock so the others keep producing.
      consuming = true;
      while (error.ok() && next_to_consume < num_tasks && slots[next_to_consume % window]) {
        T ready = std::move(*slots[next_to_consume % window]);
        slots[next_to_consume % window].reset();
        const int64_t index = next_to_consume;
        mu.Unlock();
        absl::Status consumed = consume(index, std::move(ready));
        mu.Lock();
        if (!consumed.ok() && error.ok()) error = consumed;
        ++next_to_consume;
        progress.SignalAll();
      }
      consuming = false;
    }
  });
  absl::MutexLock lock(&mu);
  return error;
}

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_WORKER_POOL_H_
