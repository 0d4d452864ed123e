// fedkit-client: a device taking part in federated training run by a fedkit coordinator. It holds
// one shard of Fashion-MNIST, built exactly as the simulator builds client --client-index's data.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/yaml_config.h"
#include "client/federated_client.h"
#include "data/federated_dataset.h"
#include "data/idx.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "models/torchscript_model.h"

namespace fedkit::client {
namespace {

struct Flags {
  std::string server;
  std::string data_dir = data::kDefaultFashionMnistDir;
  std::string partition = "iid";
  int64_t num_clients = 0;
  int64_t client_index = -1;
  uint64_t seed = 0;
  std::string model = "mlp";
  std::string client_id;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token;
  bool insecure = false;
};

int UsageError(absl::string_view flag, absl::string_view message) {
  std::cerr << "fedkit-client: " << flag << ": " << message << "\n";
  return 2;
}

// Waits for SIGINT/SIGTERM (blocked in every thread, so only this thread receives them) and cancels
// the client; SIGUSR1 from Stop() ends the wait without cancelling.
class SignalWatcher {
 public:
  // Blocks the signals in the calling thread and in all threads it creates afterwards: call before
  // any thread exists.
  static void BlockSignals() {
    // A shell starts background jobs with SIGINT ignored, and Linux discards ignored signals even
    // while blocked: restore the default disposition so that sigwait() sees them.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    sigset_t set = Set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }

  explicit SignalWatcher(FederatedClient* client)
      : thread_([this, client] {
          const sigset_t set = Set();
          while (true) {
            int signal = 0;
            if (sigwait(&set, &signal) != 0) continue;
            if (signal == SIGUSR1) return;
            if (received_.exchange(signal) == 0) {
              std::cerr << "fedkit-client: " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
                        << ", stopping\n";
            }
            client->Cancel();
          }
        }) {}

  ~SignalWatcher() {
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

  int received() const { return received_.load(); }

 private:
  static sigset_t Set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    return set;
  }

  std::atomic<int> received_{0};
  std::thread thread_;
};

int Run(int argc, char** argv) {
  Flags f;
  CLI::App app("A device taking part in federated training run by a fedkit coordinator",
               "fedkit-client");
  // Required flags first, so that their placeholder values are not shown as defaults.
  app.add_option("--server", f.server, "Coordinator address HOST:PORT")
      ->required()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--num-clients", f.num_clients, "Number of shards the training set is split into")
      ->required()
      ->check(cli::Positive())
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--client-index", f.client_index, "This device's shard, in [0, --num-clients)")
      ->required()
      ->check(cli::NonNegative())
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // A flag given twice (say in a script and again by hand) takes the last value.
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--data-dir", f.data_dir, "Directory of the Fashion-MNIST IDX files");
  app.add_option("--partition", f.partition,
                 "iid | dirichlet:ALPHA | shards:S (must match the simulator/coordinator setup)");
  app.add_option("--seed", f.seed, "Partition seed");
  app.add_option(
      "--model", f.model,
      "Model this device trains: logreg | mlp | cnn | seed, or a TorchScript file PATH.pt");
  app.add_option("--client-id", f.client_id,
                 "Stable device id ([A-Za-z0-9._-], 1..128 chars); default client-NNNNNN");
  app.add_option("--tls-ca", f.tls_ca, "PEM file of the CA that signed the server certificate");
  app.add_option("--tls-cert", f.tls_cert, "Client certificate (PEM) for mutual TLS");
  app.add_option("--tls-key", f.tls_key, "Client private key (PEM) for mutual TLS");
  app.add_option("--tls-server-name", f.tls_server_name,
                 "Name checked against the server certificate instead of the host");
  app.add_option("--token", f.token, "Bearer token sent with every call");
  app.add_flag("--insecure", f.insecure, "Plaintext connection (no TLS); for local testing only");
  cli::AddYamlConfigOption(app);
  if (int code = cli::ParseCommandLine(app, argc, argv); code >= 0) return code;

  if (f.client_index >= f.num_clients) {
    return UsageError("--client-index", absl::StrFormat("%d is not below --num-clients %d",
                                                        f.client_index, f.num_clients));
  }
  absl::StatusOr<data::PartitionSpec> partition = data::ParsePartitionSpec(f.partition);
  if (!partition.ok()) return UsageError("--partition", partition.status().message());
  if (partition->kind == data::PartitionSpec::Kind::kNatural) {
    return UsageError("--partition",
                      "Fashion-MNIST has no natural split; use iid, "
                      "dirichlet:ALPHA or shards:S");
  }
  if (const std::vector<std::string> names = models::ModelNames();
      !models::IsTorchScriptPath(f.model) &&
      std::find(names.begin(), names.end(), f.model) == names.end()) {
    return UsageError("--model", absl::StrCat("unknown model '", f.model,
                                              "'; known models: ", absl::StrJoin(names, ", ")));
  }
  if (f.client_id.empty()) f.client_id = absl::StrFormat("client-%06d", f.client_index);
  if (f.client_id.size() > 128 ||
      f.client_id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789._-") != std::string::npos) {
    return UsageError("--client-id", "use 1..128 characters from [A-Za-z0-9._-]");
  }
  ConnectionOptions connection;
  connection.server = f.server;
  connection.insecure = f.insecure;
  connection.tls_ca_file = f.tls_ca;
  connection.tls_cert_file = f.tls_cert;
  connection.tls_key_file = f.tls_key;
  connection.tls_server_name = f.tls_server_name;
  connection.bearer_token = f.token;
  // Before any thread (gRPC's, LibTorch's, the watcher) exists, so that all of them inherit it.
  SignalWatcher::BlockSignals();
  absl::StatusOr<std::unique_ptr<CoordinatorChannel>> channel = ConnectGrpc(connection);
  if (!channel.ok()) {
    // Messages start with the flag at fault ("--tls-ca: ...").
    std::cerr << "fedkit-client: " << channel.status().message() << "\n";
    return 2;
  }

  models::UseSingleThreadedCompute();
  data::FederatedDatasetOptions data_options;
  data_options.dataset.kind = data::DatasetSpec::Kind::kFashionMnist;
  data_options.data_dir = f.data_dir;
  data_options.num_clients = f.num_clients;
  data_options.partition = *partition;
  data_options.seed = f.seed;
  absl::StatusOr<std::unique_ptr<data::FederatedDataset>> dataset =
      data::MakeFederatedDataset(data_options);
  if (!dataset.ok()) {
    std::cerr << "fedkit-client: " << dataset.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::shared_ptr<models::Model>> model =
      models::CreateModel(f.model, (*dataset)->info(), 0);
  if (!model.ok()) return UsageError("--model", model.status().message());
  data::Examples examples = (*dataset)->TrainExamples(f.client_index);
  dataset->reset();  // the rest of the population is not this device's business

  FederatedClientOptions options;
  options.client_id = f.client_id;
  options.client_index = f.client_index;
  absl::StatusOr<std::string> model_identity = models::ModelIdentity(f.model);
  if (!model_identity.ok()) return UsageError("--model", model_identity.status().message());
  options.model_name = *model_identity;
  options.log = [](absl::string_view line) {
    std::cerr << absl::StrCat("fedkit-client: ", line, "\n") << std::flush;
  };
  std::cerr << absl::StrFormat("fedkit-client: %s (shard %d of %d, %d examples), model %s, %s %s\n",
                               f.client_id, f.client_index, f.num_clients, examples.size(), f.model,
                               f.insecure ? "plaintext to" : "TLS to", f.server);
  FederatedClient client(std::move(options), std::move(*channel), std::move(*model),
                         std::move(examples));
  absl::Status status;
  int signal = 0;
  {
    SignalWatcher watcher(&client);
    status = client.Run();
    signal = watcher.received();
  }
  if (signal != 0 && status.code() == absl::StatusCode::kCancelled) return 128 + signal;
  if (!status.ok()) {
    std::cerr << "fedkit-client: " << status << "\n";
    return 1;
  }
  std::cerr << absl::StrFormat("fedkit-client: done; contributed to %d rounds\n",
                               client.rounds_contributed());
  return 0;
}

}  // namespace
}  // namespace fedkit::client

int main(int argc, char** argv) { return fedkit::client::Run(argc, argv); }
