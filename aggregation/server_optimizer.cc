#include "aggregation/server_optimizer.h"

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace fedkit::aggregation {
namespace {

using Kind = ServerOptimizerOptions::Kind;

absl::Status CheckSize(absl::string_view what, size_t actual, size_t expected) {
  if (actual == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " has ", actual, " values, expected ", expected));
}

absl::Status CheckApplyArgs(absl::Span<const float> averaged_delta, absl::Span<float> model,
                            size_t dimension) {
  FEDKIT_RETURN_IF_ERROR(CheckSize("averaged_delta", averaged_delta.size(), dimension));
  return CheckSize("model", model.size(), dimension);
}

// A checkpoint is external input: reject a wrong length or non-finite values before they can
// poison every later round.
absl::Status CheckState(absl::Span<const double> state, size_t expected_size) {
  FEDKIT_RETURN_IF_ERROR(CheckSize("optimizer state", state.size(), expected_size));
  for (size_t i = 0; i < state.size(); ++i) {
    if (!std::isfinite(state[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state[", i, "] is not finite (", state[i], ")"));
    }
  }
  return absl::OkStatus();
}

// State layout: m.
class SgdOptimizer final : public ServerOptimizer {
 public:
  SgdOptimizer(double learning_rate, double momentum, int64_t dimension)
      : learning_rate_(learning_rate), momentum_(momentum), m_(dimension, 0.0) {}

  absl::Status Apply(absl::Span<const float> averaged_delta, absl::Span<float> model) override {
    FEDKIT_RETURN_IF_ERROR(CheckApplyArgs(averaged_delta, model, m_.size()));
    for (size_t i = 0; i < m_.size(); ++i) {
      m_[i] = momentum_ * m_[i] + averaged_delta[i];
      model[i] = static_cast<float>(model[i] + learning_rate_ * m_[i]);
    }
    return absl::OkStatus();
  }

  std::vector<double> SaveState() const override { return m_; }

  absl::Status RestoreState(absl::Span<const double> state) override {
    FEDKIT_RETURN_IF_ERROR(CheckState(state, m_.size()));
    m_.assign(state.begin(), state.end());
    return absl::OkStatus();
  }

 private:
  const double learning_rate_;
  const double momentum_;
  std::vector<double> m_;
};

// The v rules of Reddi et al. Alg. 2; `v` is the previous second moment, `d2` is Delta^2.
struct AdagradV {
  double operator()(double v, double d2) const { return v + d2; }
};
struct AdamV {
  double beta2;
  double operator()(double v, double d2) const { return beta2 * v + (1.0 - beta2) * d2; }
};
struct YogiV {
  double beta2;
  double operator()(double v, double d2) const {
    const double diff = v - d2;
    const double sign = static_cast<double>((diff > 0.0) - (diff < 0.0));
    return v - (1.0 - beta2) * d2 * sign;
  }
};

// Adagrad, Adam and Yogi differ only in how v is updated, which VUpdate supplies; taking it as a
// template parameter keeps the per-element loop free of virtual calls.
// State layout: m (dimension values) followed by v (dimension values).
template <typename VUpdate>
class AdaptiveOptimizer final : public ServerOptimizer {
 public:
  AdaptiveOptimizer(const ServerOptimizerOptions& options, int64_t dimension, VUpdate v_update)
      : learning_rate_(options.learning_rate),
        beta1_(options.beta1),
        tau_(options.tau),
        v_update_(v_update),
        m_(dimension, 0.0),
        v_(dimension, options.tau * options.tau) {}

  absl::Status Apply(absl::Span<const float> averaged_delta, absl::Span<float> model) override {
    FEDKIT_RETURN_IF_ERROR(CheckApplyArgs(averaged_delta, model, m_.size()));
    for (size_t i = 0; i < m_.size(); ++i) {
      const double delta = averaged_delta[i];
      m_[i] = beta1_ * m_[i] + (1.0 - beta1_) * delta;
      v_[i] = v_update_(v_[i], delta * delta);
      model[i] = static_cast<float>(model[i] + learning_rate_ * m_[i] / (std::sqrt(v_[i]) + tau_));
    }
    return absl::OkStatus();
  }

  std::vector<double> SaveState() const override {
    std::vector<double> state = m_;
    state.insert(state.end(), v_.begin(), v_.end());
    return state;
  }

  absl::Status RestoreState(absl::Span<const double> state) override {
    const size_t n = m_.size();
    FEDKIT_RETURN_IF_ERROR(CheckState(state, 2 * n));
    // A negative v would make sqrt(v) NaN.
    for (size_t i = n; i < 2 * n; ++i) {
      if (state[i] < 0.0) {
        return absl::InvalidArgumentError(
            absl::StrCat("optimizer state v[", i - n, "] is negative (", state[i], ")"));
      }
    }
    m_.assign(state.begin(), state.begin() + n);
    v_.assign(state.begin() + n, state.end());
    return absl::OkStatus();
  }

 private:
  const double learning_rate_;
  const double beta1_;
  const double tau_;
  const VUpdate v_update_;
  std::vector<double> m_;
  std::vector<double> v_;
};

// Phrased as `x >= 0 && x < 1` (not `x < 0 || x >= 1` as the error) so NaN is rejected too.
absl::Status CheckUnitInterval(absl::string_view name, double value) {
  if (value >= 0.0 && value < 1.0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, " must be in [0, 1), got ", value));
}

absl::Status CheckPositiveFinite(absl::string_view name, double value) {
  if (value > 0.0 && std::isfinite(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must be positive and finite, got ", value));
}

}  // namespace

absl::StatusOr<ServerOptimizerOptions::Kind> ParseServerOptimizerKind(std::string_view text) {
  for (Kind kind : {Kind::kSgd, Kind::kAdam, Kind::kYogi, Kind::kAdagrad}) {
    if (text == ServerOptimizerKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown server optimizer \"", std::string(text),
                                                 "\"; expected sgd, adam, yogi or adagrad"));
}

std::string_view ServerOptimizerKindName(ServerOptimizerOptions::Kind kind) {
  switch (kind) {
    case Kind::kSgd:
      return "sgd";
    case Kind::kAdam:
      return "adam";
    case Kind::kYogi:
      return "yogi";
    case Kind::kAdagrad:
      return "adagrad";
  }
  return "unknown";  // Only reachable through a cast of an out-of-range value.
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> MakeServerOptimizer(
    const ServerOptimizerOptions& options, int64_t dimension) {
  if (dimension < 1) {
    return absl::InvalidArgumentError(absl::StrCat("dimension must be >= 1, got ", dimension));
  }
  // Every field is checked whatever the kind: the defaults are valid, so a bad value is a config
  // mistake worth reporting even if this kind ignores it.
  FEDKIT_RETURN_IF_ERROR(CheckPositiveFinite("learning_rate", options.learning_rate));
  FEDKIT_RETURN_IF_ERROR(CheckPositiveFinite("tau", options.tau));
  FEDKIT_RETURN_IF_ERROR(CheckUnitInterval("momentum", options.momentum));
  FEDKIT_RETURN_IF_ERROR(CheckUnitInterval("beta1", options.beta1));
  FEDKIT_RETURN_IF_ERROR(CheckUnitInterval("beta2", options.beta2));

  switch (options.kind) {
    case Kind::kSgd:
      return std::make_unique<SgdOptimizer>(options.learning_rate, options.momentum, dimension);
    case Kind::kAdagrad:
      return std::make_unique<AdaptiveOptimizer<AdagradV>>(options, dimension, AdagradV{});
    case Kind::kAdam:
      return std::make_unique<AdaptiveOptimizer<AdamV>>(options, dimension, AdamV{options.beta2});
    case Kind::kYogi:
      return std::make_unique<AdaptiveOptimizer<YogiV>>(options, dimension, YogiV{options.beta2});
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown server optimizer kind ", static_cast<int>(options.kind)));
}

}  // namespace fedkit::aggregation
