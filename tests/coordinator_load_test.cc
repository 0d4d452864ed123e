// Load test (label "long"): 1,000 concurrent device clients, each a thread running the real client
// library over gRPC on loopback, against a fedkit-coordinator process, mlp model, several rounds.
// Prints the coordinator's per-round wall time and CPU time, the clients' training time, and the
// coordinator's peak memory. Run: ctest --test-dir build -L long -R Load --output-on-failure
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <queue>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_format.h"
#include "client/federated_client.h"
#include "data/federated_dataset.h"
#include "gtest/gtest.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "tests/sim_runner.h"
#include "tests/subprocess.h"

namespace fedkit {
namespace {

using testing_util::PollUntil;
using testing_util::Subprocess;

constexpr int kClients = 1000;
constexpr int kRounds = 3;

// Coordinator CPU seconds (user + system) from /proc/PID/stat.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), {});
  const size_t close = content.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(content.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Peak resident memory (VmHWM) in MiB from /proc/PID/status.
double PeakRssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// Starts the coordinator with `flags` after "--listen 127.0.0.1:0 --insecure" and returns the
// address it serves on ("" if it did not start within a minute).
std::string StartCoordinator(Subprocess& coordinator, const std::vector<std::string>& flags,
                             const std::string& log) {
  std::vector<std::string> argv = {FEDKIT_COORDINATOR_BINARY, "--listen", "127.0.0.1:0",
                                   "--insecure"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  if (!coordinator.Start(argv, log)) return "";
  std::smatch match;
  const std::regex serving("serving on port (\\d+)");
  std::string out;
  const bool serving_now = PollUntil(
      [&] {
        out = coordinator.Output();
        return std::regex_search(out, match, serving);
      },
      std::chrono::seconds(60));
  return serving_now ? "127.0.0.1:" + std::string(match[1]) : "";
}

TEST(CoordinatorLoadTest, ThousandConcurrentClientsOverLoopback) {
  const std::string dir = ::testing::TempDir() + "/fedkit_load";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Subprocess coordinator;
  const std::string address = StartCoordinator(coordinator,
                                               {"--model",
                                                "mlp",
                                                "--rounds",
                                                std::to_string(kRounds),
                                                "--clients-per-round",
                                                std::to_string(kClients),
                                                "--local-epochs",
                                                "1",
                                                "--batch-size",
                                                "10",
                                                "--client-lr",
                                                "0.1",
                                                "--retry-interval",
                                                "1",
                                                "--round-timeout",
                                                "900",
                                                "--eval-data",
                                                "/usr/share/datasets/fashion-mnist",
                                                "--metrics-out",
                                                dir + "/metrics.jsonl",
                                                "--linger",
                                                "20"},
                                               dir + "/coordinator.log");
  ASSERT_FALSE(address.empty()) << coordinator.Output();

  data::FederatedDatasetOptions options;
  options.dataset = *data::ParseDatasetSpec("fmnist");
  options.num_clients = kClients;
  options.partition = *data::ParsePartitionSpec("iid");
  auto dataset = data::MakeFederatedDataset(options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();

  const double cpu_before = CpuSeconds(coordinator.pid());
  std::atomic<int> finished_ok{0};
  std::atomic<int64_t> contributions{0};
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      models::UseSingleThreadedCompute();
      client::ConnectionOptions connection;
      connection.server = address;
      connection.insecure = true;
      connection.call_timeout = absl::Minutes(10);
      auto channel = client::ConnectGrpc(connection);
      if (!channel.ok()) return;
      auto model = models::CreateModel("mlp", (*dataset)->info(), 0);
      if (!model.ok()) return;
      client::FederatedClientOptions client_options;
      client_options.client_id = absl::StrFormat("load-%06d", i);
      client_options.client_index = i;
      client_options.jitter_seed = i;
      client::FederatedClient device(client_options, std::move(*channel), *model,
                                     (*dataset)->TrainExamples(i));
      if (device.Run().ok()) ++finished_ok;
      contributions += device.rounds_contributed();
    });
  }
  for (auto& t : threads) t.join();
  const double cpu_after = CpuSeconds(coordinator.pid());
  const double peak_mib = PeakRssMiB(coordinator.pid());
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  EXPECT_EQ(finished_ok.load(), kClients);
  EXPECT_EQ(contributions.load(), int64_t{kClients} * kRounds);

  auto metrics = ReadJsonLines(dir + "/metrics.jsonl");
  ASSERT_EQ(metrics.size(), static_cast<size_t>(kRounds));
  struct rusage self;
  getrusage(RUSAGE_SELF, &self);
  const double client_cpu = self.ru_utime.tv_sec + self.ru_stime.tv_sec +
                            (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
  std::printf("load test: %d clients, model mlp, %d rounds\n", kClients, kRounds);
  for (const auto& m : metrics) {
    std::printf("  round %d: %.2f s wall (round start to commit), accuracy %.4f\n",
                m["round"].get<int>(), m["seconds"].get<double>(), m["accuracy"].get<double>());
  }
  std::printf("  coordinator CPU: %.2f s in all, %.2f s per round, %.2f ms per accepted update\n",
              cpu_after - cpu_before, (cpu_after - cpu_before) / kRounds,
              1e3 * (cpu_after - cpu_before) / static_cast<double>(contributions.load()));
  std::printf("  clients' CPU (this process: training, gRPC client): %.2f s in all\n", client_cpu);
  std::printf("  coordinator peak RSS: %.1f MiB\n", peak_mib);
  EXPECT_GT(peak_mib, 0);
}

// 10,000 concurrent devices, 1,000 per round, on this 2-core machine. The load generator drives
// the devices as state machines over the real gRPC channel (client::ConnectGrpc): 64 worker
// threads, each with one channel, serve every 64th device in order of when it is due (a check-in
// after the retry interval the coordinator gave, or a download and upload once assigned). Devices
// do not train: they upload a small fixed delta, so the machine's CPU goes to the coordinator
// and to gRPC, which is what the test measures (coordinator RSS and CPU per accepted update).
TEST(CoordinatorLoadTest, TenThousandDevicesThousandPerRound) {
  constexpr int kDevices = 10000;
  constexpr int kPerRound = 1000;
  constexpr int kWorkers = 64;
  const std::string dir = ::testing::TempDir() + "/fedkit_load_10k";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Subprocess coordinator;
  const std::string address = StartCoordinator(
      coordinator,
      {"--model", "mlp", "--rounds", std::to_string(kRounds), "--clients-per-round",
       std::to_string(kPerRound), "--retry-interval", "5", "--round-timeout", "900",
       "--selection-timeout", "5", "--eval-data", "/usr/share/datasets/fashion-mnist",
       "--metrics-out", dir + "/metrics.jsonl", "--linger", "30"},
      dir + "/coordinator.log");
  ASSERT_FALSE(address.empty()) << coordinator.Output();

  const double cpu_before = CpuSeconds(coordinator.pid());
  std::atomic<int64_t> contributions{0}, finished{0}, errors{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      client::ConnectionOptions connection;
      connection.server = address;
      connection.insecure = true;
      connection.call_timeout = absl::Minutes(5);
      auto channel = client::ConnectGrpc(connection);
      ASSERT_TRUE(channel.ok()) << channel.status();
      using Due = std::pair<absl::Time, int>;
      std::priority_queue<Due, std::vector<Due>, std::greater<>> queue;
      for (int i = w; i < kDevices; i += kWorkers) {
        queue.push({absl::Now() + absl::Milliseconds(i % 5000), i});  // staggered arrival
      }
      std::vector<float> params;
      v1::ParameterLayout layout;
      while (!queue.empty()) {
        const auto [due, i] = queue.top();
        queue.pop();
        if (const absl::Time now = absl::Now(); due > now) absl::SleepFor(due - now);
        v1::CheckInRequest check_in;
        check_in.set_client_id(absl::StrFormat("dev-%05d", i));
        check_in.set_api_version(1);
        absl::StatusOr<v1::CheckInResponse> r = (*channel)->CheckIn(check_in);
        if (!r.ok()) {
          ++errors;
          queue.push({absl::Now() + absl::Seconds(1), i});
          continue;
        }
        if (r->has_finished()) {
          ++finished;
          continue;
        }
        if (r->has_retry_later()) {
          queue.push({absl::Now() + absl::Seconds(r->retry_later().retry_after_seconds()), i});
          continue;
        }
        const v1::RoundAssignment& a = r->assignment();
        v1::GetModelRequest get;
        get.set_client_id(check_in.client_id());
        get.set_assignment_id(a.assignment_id());
        get.set_round(a.round());
        absl::Status got = (*channel)->GetModel(get, a.model_size(), &params, &layout);
        if (got.ok()) {
          std::vector<float> delta(params.size());
          for (size_t j = 0; j < delta.size(); ++j) {
            delta[j] = 1e-4f * static_cast<float>(static_cast<int>((i + j) % 7) - 3);
          }
          v1::UpdateHeader header;
          header.set_client_id(check_in.client_id());
          header.set_assignment_id(a.assignment_id());
          header.set_round(a.round());
          header.set_num_examples(6);
          header.set_total_size(static_cast<int64_t>(delta.size()));
          if ((*channel)->UploadUpdate(header, delta).ok()) ++contributions;
        }
        queue.push({absl::Now() + absl::Seconds(1), i});
      }
    });
  }
  for (auto& t : workers) t.join();
  const double cpu_after = CpuSeconds(coordinator.pid());
  const double peak_mib = PeakRssMiB(coordinator.pid());
  EXPECT_EQ(coordinator.Wait(), 0) << coordinator.Output();
  EXPECT_EQ(finished.load(), kDevices);
  EXPECT_GE(contributions.load(), int64_t{kPerRound} * kRounds);
  auto metrics = ReadJsonLines(dir + "/metrics.jsonl");
  ASSERT_EQ(metrics.size(), static_cast<size_t>(kRounds));
  std::printf("load test: %d devices, %d per round, model mlp, %d rounds\n", kDevices, kPerRound,
              kRounds);
  for (const auto& m : metrics) {
    std::printf("  round %d: %.2f s wall (round start to commit), %d participants\n",
                m["round"].get<int>(), m["seconds"].get<double>(), m["participants"].get<int>());
  }
  std::printf("  coordinator CPU: %.2f s in all, %.2f ms per accepted update (%lld accepted)\n",
              cpu_after - cpu_before,
              1e3 * (cpu_after - cpu_before) / static_cast<double>(contributions.load()),
              static_cast<long long>(contributions.load()));
  std::printf("  check-in errors retried: %lld\n", static_cast<long long>(errors.load()));
  std::printf("  coordinator peak RSS: %.1f MiB\n", peak_mib);
  EXPECT_GT(peak_mib, 0);
}

}  // namespace
}  // namespace fedkit
