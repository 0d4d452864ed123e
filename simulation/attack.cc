#include "simulation/attack.h"

#include <cmath>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/decimal.h"
#include "core/seeds.h"
#include "privacy/noise.h"
#include "server/client_sampler.h"

namespace fedkit::simulation {

absl::Status ValidateAttackSpec(const AttackSpec& spec) {
  const bool uses_scale = spec.kind == AttackKind::kScale;
  const bool uses_sigma = spec.kind == AttackKind::kNoise;
  if ((!uses_scale && spec.scale != 0.0) || (!uses_sigma && spec.sigma != 0.0)) {
    return absl::InvalidArgumentError("the attack spec sets a parameter its kind does not use");
  }
  if (uses_scale && !std::isfinite(spec.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("attack scale ", spec.scale, " is not finite"));
  }
  if (uses_sigma && !(std::isfinite(spec.sigma) && spec.sigma > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("attack noise sigma ", spec.sigma, " is not finite and positive"));
  }
  return absl::OkStatus();
}

absl::string_view AcceptedAttackSpecs() {
  return "none | sign-flip | scale:S | label-flip | noise:SIGMA";
}

absl::StatusOr<AttackSpec> ParseAttackSpec(absl::string_view text) {
  auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid attack \"", absl::CHexEscape(text),
                                                   "\": ", why,
                                                   "; accepted: ", AcceptedAttackSpecs()));
  };
  const size_t colon = text.find(':');
  const absl::string_view name = text.substr(0, colon);
  const bool has_argument = colon != absl::string_view::npos;
  const absl::string_view argument = has_argument ? text.substr(colon + 1) : absl::string_view();
  AttackSpec spec;
  if (name == "none" || name == "sign-flip" || name == "label-flip") {
    if (has_argument) return invalid(absl::StrCat(name, " takes no parameter"));
    spec.kind = name == "none"        ? AttackKind::kNone
                : name == "sign-flip" ? AttackKind::kSignFlip
                                      : AttackKind::kLabelFlip;
    return spec;
  }
  if (name == "scale") {
    if (!has_argument)
      return invalid("scale needs :S, the factor an attacker's delta is scaled by");
    if (!ParsePlainDecimal(argument, /*allow_sign=*/true, &spec.scale)) {
      return invalid("S must be a finite decimal number");
    }
    spec.kind = AttackKind::kScale;
    return spec;
  }
  if (name == "noise") {
    if (!has_argument) return invalid("noise needs :SIGMA, the standard deviation per coordinate");
    if (!ParsePlainDecimal(argument, /*allow_sign=*/false, &spec.sigma) || !(spec.sigma > 0)) {
      return invalid("SIGMA must be a finite decimal number > 0");
    }
    spec.kind = AttackKind::kNoise;
    return spec;
  }
  return invalid("unknown attack");
}

std::string FormatAttackSpec(const AttackSpec& spec) {
  switch (spec.kind) {
    case AttackKind::kNone:
      return "none";
    case AttackKind::kSignFlip:
      return "sign-flip";
    case AttackKind::kScale:
      return absl::StrCat("scale:", ShortestDecimal(spec.scale));
    case AttackKind::kLabelFlip:
      return "label-flip";
    case AttackKind::kNoise:
      return absl::StrCat("noise:", ShortestDecimal(spec.sigma));
  }
  return "none";
}

uint64_t AttackerSetSeed(uint64_t run_seed) { return DeriveSeed(run_seed, {kAttackerSetTag}); }

absl::StatusOr<int64_t> NumAttackers(int64_t population, double fraction) {
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the attackers' fraction must be in [0, 1), got ", fraction));
  }
  if (population < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative population ", population));
  }
  return static_cast<int64_t>(std::llround(fraction * static_cast<double>(population)));
}

absl::StatusOr<std::vector<int64_t>> ChooseAttackers(int64_t population, double fraction,
                                                     uint64_t run_seed) {
  absl::StatusOr<int64_t> count = NumAttackers(population, fraction);
  if (!count.ok()) return count.status();
  if (*count == 0) return std::vector<int64_t>();
  return server::SampleClients(population, *count, AttackerSetSeed(run_seed));
}

uint64_t AttackNoiseSeed(uint64_t run_seed, int64_t round, int64_t client) {
  return DeriveSeed(run_seed,
                    {static_cast<uint64_t>(round), static_cast<uint64_t>(client), kAttackNoiseTag});
}

bool AttackTrains(const AttackSpec& spec) { return spec.kind != AttackKind::kNoise; }

absl::Status FlipLabels(int num_classes, data::Examples& examples) {
  if (num_classes < 2 || examples.is_regression()) {
    return absl::InvalidArgumentError(
        "label flipping needs a classification dataset with at least two classes");
  }
  for (int64_t y : examples.labels) {
    if (y < 0 || y >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is outside [0, ", num_classes, ")"));
    }
  }
  for (int64_t& y : examples.labels) y = num_classes - 1 - y;
  return absl::OkStatus();
}

absl::Status ApplyAttack(const AttackSpec& spec, uint64_t noise_seed, std::vector<float>& delta) {
  if (absl::Status valid = ValidateAttackSpec(spec); !valid.ok()) return valid;
  switch (spec.kind) {
    case AttackKind::kNone:
    case AttackKind::kLabelFlip:
      return absl::OkStatus();
    case AttackKind::kSignFlip:
      for (float& v : delta) v = -v;
      return absl::OkStatus();
    case AttackKind::kScale:
      for (float& v : delta) v = static_cast<float>(spec.scale * static_cast<double>(v));
      return absl::OkStatus();
    case AttackKind::kNoise: {
      std::vector<double> gaussians(delta.size());
      privacy::SeededRandomSource random(noise_seed);
      privacy::FillStandardGaussian(random, absl::MakeSpan(gaussians));
      for (size_t i = 0; i < delta.size(); ++i) {
        delta[i] = static_cast<float>(spec.sigma * gaussians[i]);
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown attack kind");
}

}  // namespace fedkit::simulation
