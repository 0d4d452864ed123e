// Simulated Byzantine clients (model poisoning), to measure what robust aggregation
// (aggregation/robust.h) buys. A fixed subset of the population are attackers; whenever one is
// sampled it uploads, instead of its honest delta:
//
//   sign-flip    the negation of its honest delta.
//   scale:S      S times its honest delta (model replacement, Bagdasaryan et al. 2020).
//   label-flip   the delta of training on its own data with every label y replaced by
//                num_classes - 1 - y (classification only).
//   noise:SIGMA  i.i.d. N(0, SIGMA^2) per coordinate, without training.
//
// Attackers do not clip on the device (they are malicious) and report their real example count;
// the coordinator's checks of an upload apply to them as to anyone (the simulator models them).
//
// Determinism: which clients attack depends only on the run's seed, the population and the
// fraction (AttackerSetSeed); the noise attack's values only on (run seed, round, client)
// (AttackNoiseSeed). Nothing depends on threads or on the order clients are trained in.
//
// Errors (absl/status/status.h): INVALID_ARGUMENT, quoting the text or naming the value.
// Thread safety: pure functions (ApplyAttack and FlipLabels write only their argument).
#ifndef FEDKIT_SIMULATION_ATTACK_H_
#define FEDKIT_SIMULATION_ATTACK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/examples.h"

namespace fedkit::simulation {

enum class AttackKind { kNone, kSignFlip, kScale, kLabelFlip, kNoise };

struct AttackSpec {
  AttackKind kind = AttackKind::kNone;
  double scale = 0.0;  // scale: S, finite
  double sigma = 0.0;  // noise: SIGMA, finite and > 0
  // Parameters a kind does not use are 0.
  bool operator==(const AttackSpec&) const = default;
};

// "none | sign-flip | scale:S | label-flip | noise:SIGMA", for usage messages.
absl::string_view AcceptedAttackSpecs();

// Parses exactly one of the accepted forms (lower case, no spaces). S is a decimal number with an
// optional sign ("10", "-4", "1e3"), SIGMA a decimal number. INVALID_ARGUMENT, quoting the text
// and listing the accepted forms, for anything else, including an S that is not finite and a SIGMA
// that is not finite and positive.
absl::StatusOr<AttackSpec> ParseAttackSpec(absl::string_view text);

// OK for a spec the parser could return; INVALID_ARGUMENT for an S that is not finite, a SIGMA that
// is not finite and positive, or a parameter the kind does not use that is not 0.
absl::Status ValidateAttackSpec(const AttackSpec& spec);

// The text ParseAttackSpec reads back as `spec` (for a valid spec): "none", "scale:10".
std::string FormatAttackSpec(const AttackSpec& spec);

// The attacker set's seed: DeriveSeed(run_seed, {kAttackerSetTag}) (core/seeds.h), a stream no
// other seed of a run uses.
inline constexpr uint64_t kAttackerSetTag = 0x61747461636b6572;  // "attacker"
uint64_t AttackerSetSeed(uint64_t run_seed);

// round(fraction * population) (half away from zero). INVALID_ARGUMENT unless fraction is in
// [0, 1) and population >= 0.
absl::StatusOr<int64_t> NumAttackers(int64_t population, double fraction);

// The attackers: NumAttackers(population, fraction) distinct client indices in [0, population),
// drawn uniformly by server::SampleClients with AttackerSetSeed(run_seed), ascending. Empty when
// there are none. INVALID_ARGUMENT as NumAttackers.
absl::StatusOr<std::vector<int64_t>> ChooseAttackers(int64_t population, double fraction,
                                                     uint64_t run_seed);

// The noise attack's stream for `client` in `round`: DeriveSeed(run_seed, {round, client,
// kAttackNoiseTag}).
inline constexpr uint64_t kAttackNoiseTag = 0x6e6f697365;  // "noise"
uint64_t AttackNoiseSeed(uint64_t run_seed, int64_t round, int64_t client);

// Whether an attacker of this kind trains (all but noise; label-flip on flipped labels).
bool AttackTrains(const AttackSpec& spec);

// Label flipping: y -> num_classes - 1 - y for every label. INVALID_ARGUMENT (examples unchanged)
// unless num_classes >= 2, the examples are a classification set (not regression) and every label
// is in [0, num_classes).
absl::Status FlipLabels(int num_classes, data::Examples& examples);

// Turns an attacker's honest delta into its upload, in place: negated (sign-flip), times S
// (scale:S, each coordinate rounded to float), replaced by SIGMA x standard Gaussians drawn from
// privacy::SeededRandomSource(noise_seed) (noise; the size of `delta` is kept), left as it is
// (label-flip: the delta is already the attack's, none). INVALID_ARGUMENT (delta unchanged) for a
// spec ValidateAttackSpec refuses.
// The result may hold infinities (a large S): the coordinator's checks refuse such an upload.
absl::Status ApplyAttack(const AttackSpec& spec, uint64_t noise_seed, std::vector<float>& delta);

}  // namespace fedkit::simulation

#endif  // FEDKIT_SIMULATION_ATTACK_H_
