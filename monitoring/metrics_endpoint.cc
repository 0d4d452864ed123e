#include "monitoring/metrics_endpoint.h"

#include <utility>

#include "prometheus/text_serializer.h"

namespace fedkit::monitoring {

std::string MetricsEndpoint::Exposition(
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& c : collectables) {
    std::vector<prometheus::MetricFamily> more = c->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Create(
    const std::string& listen, std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->collectables_ = std::move(collectables);
  const MetricsEndpoint* self = endpoint.get();
  auto http = HttpEndpoint::Create(
      {.name = "metrics", .listen = listen},
      {{.path = "/metrics", .handler = [self] {
          return HttpResponse{.status = 200,
                              .content_type = "text/plain; version=0.0.4; charset=utf-8",
                              .body = Exposition(self->collectables_),
                              .cache_control = "no-store"};
        }}});
  if (!http.ok()) return http.status();
  endpoint->http_ = *std::move(http);
  return endpoint;
}

}  // namespace fedkit::monitoring
