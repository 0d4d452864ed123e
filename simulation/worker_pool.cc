#include "simulation/worker_pool.h"

#include <atomic>

namespace fedkit::simulation {

WorkerPool::WorkerPool(int num_workers, std::function<void(int)> on_start) {
  if (num_workers < 1) num_workers = 1;
  threads_.reserve(num_workers);
  for (int w = 0; w < num_workers; ++w) {
    threads_.emplace_back([this, w, on_start] {
      if (on_start) on_start(w);
      WorkerLoop(w);
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &running_));
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void WorkerPool::ParallelFor(int64_t count,
                             const std::function<void(int worker, int64_t i)>& body) {
  std::atomic<int64_t> next{0};
  RunOnEachWorker([&](int worker) {
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(worker, i);
  });
}

void WorkerPool::RunOnEachWorker(const std::function<void(int)>& job) {
  absl::MutexLock lock(&mu_);
  job_ = &job;
  running_ = size();
  ++generation_;
  mu_.Await(absl::Condition(
      +[](int* running) { return *running == 0; }, &running_));
  job_ = nullptr;
}

void WorkerPool::WorkerLoop(int worker) {
  uint64_t seen_generation = 0;
  while (true) {
    const std::function<void(int)>* job;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || generation_ != seen_generation;
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
      seen_generation = generation_;
      job = job_;
    }
    (*job)(worker);
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace fedkit::simulation
