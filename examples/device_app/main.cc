// A minimal app taking part in federated training with its own on-device data.
//
//   app --server HOST:PORT (--tls-ca CA.pem | --insecure) [--model seed | --model PATH.pt]
//       [--examples N] [--client-id ID]
//
// The model must be the one the coordinator runs (same registry name, or the same TorchScript file).
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "client/federated_client.h"
#include "models/model.h"
#include "models/tensor_examples.h"
#include "models/torchscript_model.h"

namespace {

int Fail(const std::string& what, const absl::Status& status) {
  std::cerr << "app: " << what << ": " << status << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  fedkit::client::ConnectionOptions connection;
  std::string model_name = "seed";
  std::string client_id = "device-app";
  int64_t num_examples = 200;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--server" && has_value) connection.server = argv[++i];
    else if (arg == "--tls-ca" && has_value) connection.tls_ca_file = argv[++i];
    else if (arg == "--insecure") connection.insecure = true;  // plaintext: local testing only
    else if (arg == "--model" && has_value) model_name = argv[++i];
    else if (arg == "--examples" && has_value) num_examples = std::atoll(argv[++i]);
    else if (arg == "--client-id" && has_value) client_id = argv[++i];
    else {
      std::cerr << "usage: app --server HOST:PORT (--tls-ca CA.pem | --insecure) "
                   "[--model NAME|PATH.pt] [--examples N] [--client-id ID]\n";
      return 2;
    }
  }

  // 1. The model: a registry name or a TorchScript file, for Fashion-MNIST-shaped inputs.
  const fedkit::data::DatasetInfo info{{1, 28, 28}, 10};
  absl::StatusOr<std::shared_ptr<fedkit::models::Model>> model =
      fedkit::models::CreateModel(model_name, info, /*seed=*/0);
  if (!model.ok()) return Fail("--model", model.status());

  // 2. The app's own training data, as LibTorch tensors (here random), converted to Examples.
  torch::manual_seed(1);
  const torch::Tensor features = torch::randn({num_examples, 1, 28, 28});
  const torch::Tensor labels = torch::randint(0, info.num_classes, {num_examples}, torch::kLong);
  absl::StatusOr<fedkit::data::Examples> examples =
      fedkit::models::ExamplesFromTensors(features, labels);
  if (!examples.ok()) return Fail("examples", examples.status());

  // 3. A channel to the coordinator (does not connect yet).
  absl::StatusOr<std::unique_ptr<fedkit::client::CoordinatorChannel>> channel =
      fedkit::client::ConnectGrpc(connection);
  if (!channel.ok()) return Fail("connect", channel.status());

  // 4. Take part until the coordinator says the run is finished.
  fedkit::client::FederatedClientOptions options;
  options.client_id = client_id;
  absl::StatusOr<std::string> identity = fedkit::models::ModelIdentity(model_name);
  if (!identity.ok()) return Fail("--model", identity.status());
  options.model_name = *identity;  // the coordinator refuses a device with another model
  options.log = [](absl::string_view line) { std::cerr << "app: " << line << "\n"; };
  fedkit::client::FederatedClient client(std::move(options), std::move(*channel),
                                         std::move(*model), std::move(*examples));
  const absl::Status status = client.Run();
  if (!status.ok()) return Fail("run", status);
  std::cerr << "app: done; contributed to " << client.rounds_contributed() << " rounds\n";
  return 0;
}
