#include "monitoring/metrics_endpoint.h"

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedkit::monitoring {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Create(
    const std::string& listen, std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", listen, "' is not HOST:PORT (e.g. 127.0.0.1:9464)"));
  }
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->collectables_ = std::move(collectables);
  try {
    // Two threads: a scrape is one small request every few seconds.
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", e.what()));
  }
  for (const auto& c : endpoint->collectables_) endpoint->exposer_->RegisterCollectable(c);
  const std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  endpoint->port_ = ports.front();
  return endpoint;
}

}  // namespace fedkit::monitoring
