// Simulator throughput against a bare LibTorch training loop doing the same SGD steps.
//
// Both sides train the mlp (2NN) on the same Fashion-MNIST clients with batch 10 and report SGD
// steps per second. The bare loop is the least a simulator could do: one model per thread, forward,
// backward, optimizer step over the clients' minibatches, nothing else (no parameter load per
// client, no delta, no clipping, no aggregation, no sampling). The simulator runs real rounds of
// fedkit-sim. With T threads the bare loop runs T independent loops over a T-th of the steps each,
// the ideal scaling. At the end the binary prints simulator / bare-loop ratios for 1 and 2 threads,
// and the ratio of the same 2NN as a TorchScript model (written in Python) to the built-in mlp.
// BM_BareLoopOf and BM_SimulatorOf measure cross-client batching (fedkit-sim --client-batching) on
// 1 thread for logreg, mlp and cnn: the bare loop, the simulator without it and with groups of 10
// and 40 clients (the cnn trains 1 local epoch instead of 5). BM_KernelFloorOf bounds what any
// batching could reach for logreg and mlp: the same clients' SGD steps with nothing but the BLAS
// calls and loops the arithmetic needs (see KernelFloorLoop).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data/federated_dataset.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "simulation/simulator.h"

namespace fedkit {
namespace {

constexpr int64_t kPopulation = 1000;
constexpr int64_t kClientsPerRound = 40;
constexpr int kEpochs = 5;  // the headline Fashion-MNIST setup's local epochs
constexpr int kBatch = 10;
constexpr double kLearningRate = 0.1;

const data::FederatedDataset& Dataset() {
  static const data::FederatedDataset* dataset = [] {
    data::FederatedDatasetOptions options;
    options.dataset = *data::ParseDatasetSpec("fmnist");
    options.num_clients = kPopulation;
    options.partition = *data::ParsePartitionSpec("dirichlet:0.5");
    options.seed = 1;
    auto made = data::MakeFederatedDataset(options);
    if (!made.ok()) {
      std::fprintf(stderr, "throughput_bench: %s\n", std::string(made.status().message()).c_str());
      std::exit(1);
    }
    return made->release();
  }();
  return *dataset;
}

// The clients of the bench's one fixed round (the first kClientsPerRound), and their SGD step
// count.
int64_t StepsPerRound(int epochs = kEpochs) {
  int64_t steps = 0;
  for (int64_t c = 0; c < kClientsPerRound; ++c) {
    steps += epochs * ((Dataset().NumTrainExamples(c) + kBatch - 1) / kBatch);
  }
  return steps;
}

// Cross-client batching (--client-batching) is measured per model on 1 thread; the cnn's steps
// cost about a hundred times the mlp's, so it trains 1 local epoch instead of 5.
const char* const kModels[] = {"logreg", "mlp", "cnn"};
int EpochsOf(const std::string& model) { return model == "cnn" ? 1 : kEpochs; }

void BareLoop(models::Model* model, int thread, int num_threads, int epochs = kEpochs) {
  models::UseSingleThreadedCompute();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(kLearningRate));
  for (int64_t c = thread; c < kClientsPerRound; c += num_threads) {
    const data::Examples ex = Dataset().TrainExamples(c);
    const int64_t n = ex.size();
    auto x = torch::from_blob(const_cast<float*>(ex.features.data()), {n, ex.feature_dim});
    auto y = torch::from_blob(const_cast<int64_t*>(ex.labels.data()), {n}, torch::kInt64);
    for (int e = 0; e < epochs; ++e) {
      auto order = torch::randperm(n, torch::kInt64);
      for (int64_t start = 0; start < n; start += kBatch) {
        auto idx = order.slice(0, start, std::min(n, start + kBatch));
        optimizer.zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x.index_select(0, idx)),
                                                         y.index_select(0, idx));
        loss.backward();
        optimizer.step();
      }
    }
  }
}

void BM_BareLibTorchLoop(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t steps = StepsPerRound();
  std::vector<std::shared_ptr<models::Model>> thread_models;
  for (int t = 0; t < threads; ++t) {
    thread_models.push_back(*models::CreateModel("mlp", Dataset().info(), 1));
  }
  for (auto _ : state) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back(BareLoop, thread_models[t].get(), t, threads, kEpochs);
    }
    for (auto& w : workers) w.join();
  }
  state.SetItemsProcessed(state.iterations() * steps);
}

// The first kClientsPerRound clients of Dataset() as a whole population, so that every simulated
// round trains exactly the clients the bare loop trains.
class FirstClients : public data::FederatedDataset {
 public:
  int64_t num_clients() const override { return kClientsPerRound; }
  const data::DatasetInfo& info() const override { return Dataset().info(); }
  int64_t NumTrainExamples(int64_t c) const override { return Dataset().NumTrainExamples(c); }
  data::Examples TrainExamples(int64_t c) const override { return Dataset().TrainExamples(c); }
  const data::Examples& EvalExamples() const override { return Dataset().EvalExamples(); }
};

void RunSimulator(benchmark::State& state, const std::string& model, int threads,
                  int64_t client_batching = 0) {
  static const FirstClients clients;
  const int epochs = EpochsOf(model);
  simulation::SimulationOptions options;
  options.model = model;
  options.clients_per_round = kClientsPerRound;
  options.rounds = 1 << 30;  // never reaches the last round, so RunRound does not evaluate
  options.plan = {.local_epochs = epochs, .batch_size = kBatch, .learning_rate = kLearningRate};
  options.threads = threads;
  options.client_batching = client_batching;
  options.eval_every = 0;
  options.seed = 1;
  auto sim = simulation::Simulator::Create(options, &clients);
  if (!sim.ok()) {
    state.SkipWithError(std::string(sim.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    auto round = (*sim)->RunRound();
    if (!round.ok()) {
      state.SkipWithError(std::string(round.status().message()).c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * StepsPerRound(epochs));
}

void BM_Simulator(benchmark::State& state) {
  RunSimulator(state, "mlp", static_cast<int>(state.range(0)));
}

// The same 2NN written in Python (models/python/make_model.py 2nn) and run as TorchScript.
void BM_SimulatorTorchScript2nn(benchmark::State& state) {
  RunSimulator(state, FEDKIT_BENCH_TORCHSCRIPT_2NN, static_cast<int>(state.range(0)));
}

// Cross-client batching, 1 thread, per model (range 0 indexes kModels): the bare loop, the
// simulator as it is, and the simulator with --client-batching range(1).
void BM_BareLoopOf(benchmark::State& state) {
  const std::string model = kModels[state.range(0)];
  std::shared_ptr<models::Model> m = *models::CreateModel(model, Dataset().info(), 1);
  for (auto _ : state) BareLoop(m.get(), 0, 1, EpochsOf(model));
  state.SetItemsProcessed(state.iterations() * StepsPerRound(EpochsOf(model)));
}

void BM_SimulatorOf(benchmark::State& state) {
  RunSimulator(state, kModels[state.range(0)], 1, state.range(1));
}

// A lower bound on the time of the bare loop's work for a fully connected model (logreg: 784-10;
// mlp: 784-200-200-10 with ReLU): the same clients, epochs, batches of 10 and softmax
// cross-entropy SGD steps, computed with one cblas_sgemm per matrix product, the SGD update fused
// into the weight-gradient product (W -= lr G^T A as one sgemm with beta = 1), plain loops for
// biases, ReLU and the softmax, every buffer allocated once, no autograd, no dispatch, no
// optimizer object. Cross-client batching keeps each client's arithmetic (its own weights, its
// own batches), so it cannot make a step cheaper than this: steps/s here over the bare loop's is
// the most any batching could gain over the bare loop on this BLAS. The BLAS is the one LibTorch
// is linked with here (libblas.so.3, OpenBLAS on Debian).
class KernelFloorLoop {
 public:
  explicit KernelFloorLoop(std::vector<int> widths) : widths_(std::move(widths)) {
    std::mt19937 rng(1);
    for (size_t l = 0; l + 1 < widths_.size(); ++l) {
      const float bound = 1.0f / std::sqrt(static_cast<float>(widths_[l]));
      std::uniform_real_distribution<float> init(-bound, bound);
      weights_.emplace_back(static_cast<size_t>(widths_[l + 1]) * widths_[l]);
      for (float& w : weights_.back()) w = init(rng);
      biases_.emplace_back(widths_[l + 1], 0.0f);
    }
    for (int w : widths_) {
      acts_.emplace_back(static_cast<size_t>(kBatch) * w);
      grads_.emplace_back(static_cast<size_t>(kBatch) * w);
    }
  }

  void Run(int epochs) {
    const int layers = static_cast<int>(weights_.size());
    const int in = widths_[0];
    for (int64_t c = 0; c < kClientsPerRound; ++c) {
      const data::Examples ex = Dataset().TrainExamples(c);
      const int64_t n = ex.size();
      std::vector<int64_t> order(n);
      for (int e = 0; e < epochs; ++e) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng_);
        for (int64_t start = 0; start < n; start += kBatch) {
          const int b = static_cast<int>(std::min<int64_t>(kBatch, n - start));
          for (int i = 0; i < b; ++i) {  // gather the batch
            std::copy_n(ex.features.data() + order[start + i] * in, in,
                        acts_[0].data() + static_cast<size_t>(i) * in);
          }
          for (int l = 0; l < layers; ++l) {  // A[l+1] = act(A[l] W[l]^T + b[l])
            const int k = widths_[l], m = widths_[l + 1];
            float* out = acts_[l + 1].data();
            for (int i = 0; i < b; ++i) std::copy_n(biases_[l].data(), m, out + i * m);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, m, k, 1.0f, acts_[l].data(), k,
                        weights_[l].data(), k, 1.0f, out, m);
            if (l + 1 < layers) {
              for (int i = 0; i < b * m; ++i) out[i] = std::max(out[i], 0.0f);
            }
          }
          // dL/dlogits of the mean cross-entropy: (softmax - onehot) / b.
          const int classes = widths_.back();
          float* g = grads_.back().data();
          const float* logits = acts_.back().data();
          for (int i = 0; i < b; ++i) {
            const float* row = logits + i * classes;
            const float top = *std::max_element(row, row + classes);
            float sum = 0;
            for (int j = 0; j < classes; ++j) sum += (g[i * classes + j] = std::exp(row[j] - top));
            for (int j = 0; j < classes; ++j) g[i * classes + j] /= sum * static_cast<float>(b);
            g[i * classes + ex.labels[order[start + i]]] -= 1.0f / static_cast<float>(b);
          }
          for (int l = layers - 1; l >= 0; --l) {
            const int k = widths_[l], m = widths_[l + 1];
            const float* go = grads_[l + 1].data();
            if (l > 0) {  // dA[l] = dZ[l+1] W[l], masked by ReLU'(A[l]), before W[l] moves
              float* gi = grads_[l].data();
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, k, m, 1.0f, go, m,
                          weights_[l].data(), k, 0.0f, gi, k);
              const float* a = acts_[l].data();
              for (int i = 0; i < b * k; ++i) gi[i] = a[i] > 0 ? gi[i] : 0.0f;
            }
            // W[l] -= lr dZ^T A[l] and b[l] -= lr sum dZ.
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, k, b,
                        -static_cast<float>(kLearningRate), go, m, acts_[l].data(), k, 1.0f,
                        weights_[l].data(), k);
            for (int i = 0; i < b; ++i) {
              for (int j = 0; j < m; ++j) {
                biases_[l][j] -= static_cast<float>(kLearningRate) * go[i * m + j];
              }
            }
          }
        }
      }
    }
  }

  // Test accuracy of the weights trained so far (a check that the floor did the arithmetic).
  double EvalAccuracy() const {
    const data::Examples& ex = Dataset().EvalExamples();
    const int in = widths_[0];
    int64_t correct = 0;
    std::vector<float> a, next;
    for (int64_t r = 0; r < ex.size(); ++r) {
      a.assign(ex.features.begin() + r * in, ex.features.begin() + (r + 1) * in);
      for (size_t l = 0; l < weights_.size(); ++l) {
        const int k = widths_[l], m = widths_[l + 1];
        next = biases_[l];
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.0f, weights_[l].data(), k, a.data(), 1,
                    1.0f, next.data(), 1);
        if (l + 1 < weights_.size()) {
          for (float& v : next) v = std::max(v, 0.0f);
        }
        a.swap(next);
      }
      correct += std::max_element(a.begin(), a.end()) - a.begin() == ex.labels[r];
    }
    return static_cast<double>(correct) / static_cast<double>(ex.size());
  }

 private:
  std::vector<int> widths_;
  std::vector<std::vector<float>> weights_, biases_, acts_, grads_;
  std::mt19937 rng_{1};
};

void BM_KernelFloorOf(benchmark::State& state) {
  const std::string model = kModels[state.range(0)];
  models::UseSingleThreadedCompute();  // OpenBLAS on 1 thread too
  KernelFloorLoop loop(model == "logreg" ? std::vector<int>{784, 10}
                                         : std::vector<int>{784, 200, 200, 10});
  for (auto _ : state) loop.Run(kEpochs);
  state.SetItemsProcessed(state.iterations() * StepsPerRound(kEpochs));
  // Trained round after round on the same 40 clients: it must have learned.
  state.counters["test_accuracy"] = loop.EvalAccuracy();
}

BENCHMARK(BM_BareLibTorchLoop)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);
BENCHMARK(BM_Simulator)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);
BENCHMARK(BM_SimulatorTorchScript2nn)
    ->ArgName("threads")
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);

BENCHMARK(BM_BareLoopOf)
    ->ArgName("model")
    ->DenseRange(0, 2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);
BENCHMARK(BM_KernelFloorOf)
    ->ArgName("model")
    ->DenseRange(0, 1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);
BENCHMARK(BM_SimulatorOf)
    ->ArgNames({"model", "batching"})
    ->ArgsProduct({{0, 1, 2}, {0, 10, 40}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);

// Prints the usual console table, then simulator/bare ratios of the median SGD steps per second
// over the repetitions (run with --benchmark_repetitions=N
// --benchmark_enable_random_interleaving=true so machine noise hits both sides alike).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      auto it = run.counters.find("items_per_second");
      if (it != run.counters.end()) {
        samples_[run.run_name.function_name + "/" + run.run_name.args].push_back(it->second);
      }
    }
  }

  void PrintRatios() const {
    std::printf("\nBLAS: %s\n", models::BlasDescription());
    const double bare1 = Median("BM_BareLibTorchLoop/threads:1");
    const double bare2 = Median("BM_BareLibTorchLoop/threads:2");
    const double sim1 = Median("BM_Simulator/threads:1");
    const double sim2 = Median("BM_Simulator/threads:2");
    if (bare1 > 0 && sim1 > 0) {
      std::printf("1 thread : simulator %.0f steps/s, bare loop %.0f steps/s, ratio %.3f\n", sim1,
                  bare1, sim1 / bare1);
    }
    if (bare2 > 0 && sim2 > 0) {
      std::printf("2 threads: simulator %.0f steps/s, bare loop %.0f steps/s, ratio %.3f\n", sim2,
                  bare2, sim2 / bare2);
    }
    if (bare1 > 0 && sim2 > 0) {
      std::printf("simulator on 2 threads / bare loop on 1 thread: %.3f\n", sim2 / bare1);
    }
    const double script1 = Median("BM_SimulatorTorchScript2nn/threads:1");
    if (sim1 > 0 && script1 > 0) {
      std::printf(
          "1 thread : TorchScript 2NN %.0f steps/s, built-in mlp %.0f steps/s, ratio %.3f\n",
          script1, sim1, script1 / sim1);
    }
    for (int m = 0; m < 3; ++m) {
      const std::string model = std::to_string(m);
      const double bare = Median("BM_BareLoopOf/model:" + model);
      const double plain = Median("BM_SimulatorOf/model:" + model + "/batching:0");
      if (bare <= 0 || plain <= 0) continue;
      std::printf("%-6s 1 thread: bare loop %.0f steps/s, simulator %.0f (%.3f x bare)", kModels[m],
                  bare, plain, plain / bare);
      for (const char* n : {"10", "40"}) {
        const double batched = Median("BM_SimulatorOf/model:" + model + "/batching:" + n);
        if (batched > 0) {
          std::printf(", --client-batching %s %.0f (%.3f x bare, %.3f x simulator)", n, batched,
                      batched / bare, batched / plain);
        }
      }
      std::printf("\n");
      const double floor = Median("BM_KernelFloorOf/model:" + model);
      if (floor > 0) {
        std::printf(
            "%-6s 1 thread: BLAS-only floor %.0f steps/s = %.3f x bare: no batching of "
            "this model's arithmetic can reach more than that\n",
            kModels[m], floor, floor / bare);
      }
    }
  }

 private:
  double Median(const std::string& key) const {
    auto it = samples_.find(key);
    if (it == samples_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }

  std::map<std::string, std::vector<double>> samples_;
};

}  // namespace
}  // namespace fedkit

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  fedkit::models::UseSingleThreadedCompute();
  fedkit::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
