#include "simulation/scaffold.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace fedkit::simulation {

absl::StatusOr<std::unique_ptr<Scaffold>> Scaffold::Create(
    int64_t dimension, int64_t population, double learning_rate,
    std::unique_ptr<ControlVariateStore> store) {
  if (dimension < 1) return absl::InvalidArgumentError("dimension must be >= 1");
  if (population < 1) return absl::InvalidArgumentError("population must be >= 1");
  if (!(learning_rate > 0) || !std::isfinite(learning_rate)) {
    return absl::InvalidArgumentError("learning rate must be > 0");
  }
  if (store == nullptr || store->dimension() != dimension) {
    return absl::InvalidArgumentError("SCAFFOLD needs a control variate store of the dimension");
  }
  auto scaffold =
      std::unique_ptr<Scaffold>(new Scaffold(population, learning_rate, std::move(store)));
  scaffold->c_.assign(dimension, 0.0);
  scaffold->round_sum_.assign(dimension, 0.0);
  return scaffold;
}

Scaffold::Scaffold(int64_t population, double learning_rate,
                   std::unique_ptr<ControlVariateStore> store)
    : population_(population), learning_rate_(learning_rate), store_(std::move(store)) {}

absl::StatusOr<std::vector<float>> Scaffold::Correction(int64_t client) const {
  FEDKIT_ASSIGN_OR_RETURN(std::vector<float> correction, store_->Get(client));
  for (size_t j = 0; j < correction.size(); ++j) {
    correction[j] = static_cast<float>(c_[j] - static_cast<double>(correction[j]));
  }
  return correction;
}

absl::StatusOr<int64_t> Scaffold::OnUpload(int64_t client, int64_t /*weight*/,
                                           client::ClientUpdate& update) {
  if (update.delta.size() != c_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client ", client, " uploaded ", update.delta.size(), " values, expected ", c_.size()));
  }
  if (update.steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("client ", client, " ran no local step"));
  }
  // delta_c = c_i+ - c_i = -c + (x - y) / (K lr) = -c - delta_y / (K lr).
  const double scale = 1.0 / (static_cast<double>(update.steps) * learning_rate_);
  std::vector<float> delta_c(c_.size());
  for (size_t j = 0; j < c_.size(); ++j) {
    delta_c[j] = static_cast<float>(-c_[j] - static_cast<double>(update.delta[j]) * scale);
  }
  FEDKIT_RETURN_IF_ERROR(store_->Add(client, delta_c));
  for (size_t j = 0; j < c_.size(); ++j) round_sum_[j] += static_cast<double>(delta_c[j]);
  return static_cast<int64_t>(delta_c.size() * sizeof(float));
}

absl::Status Scaffold::EndRound(std::optional<std::vector<float>>& /*average*/) {
  const double population = static_cast<double>(population_);
  for (size_t j = 0; j < c_.size(); ++j) {
    c_[j] += round_sum_[j] / population;
    round_sum_[j] = 0.0;
  }
  return absl::OkStatus();
}

}  // namespace fedkit::simulation
