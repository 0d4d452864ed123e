// DP-FedAvg's configuration and what a run derives from it, in one place for the coordinator and
// the simulator: both take DpSettings and call SetUpDp, so they clip, noise, encode and account
// identically.
//
// Modes (McMahan et al., ICLR 2018: every client's delta is clipped to L2 norm S and weighs 1, and
// the release is (sum + noise) / m with the fixed denominator m = clients per round):
//   central:      the server adds N(0, (z_delta S)^2) per coordinate to the sum (privacy/noise.h);
//                 under secure aggregation it does so to the unmasked sum.
//   distributed:  each client adds its share of discrete Gaussian noise before secure aggregation
//                 masks its update (privacy/distributed_dp_encoding.h, Kairouz et al. 2021), so the
//                 server never sees an un-noised sum. Needs secure aggregation. A round with fewer
//                 survivors than the noise is sized for is not released.
// Adaptive clipping (Andrew et al. 2021, privacy/adaptive_clipping.h) moves S towards a quantile of
// the update norms; the clients' unclipped bits are counted with noise sigma_b = m / 20 and the
// update noise rises to z_delta so that the round costs what z alone would. The accountant
// composes the Poisson-subsampled Gaussian at q = clients sampled per round (over-selection
// included) / population.
//
// Thread safety: plain values and a pure function.
#ifndef FEDKIT_PRIVACY_DP_SETUP_H_
#define FEDKIT_PRIVACY_DP_SETUP_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "privacy/adaptive_clipping.h"
#include "privacy/distributed_dp_encoding.h"

namespace fedkit::privacy {

enum class DpMode { kNone, kCentral, kDistributed };
// "none" | "central" | "distributed"; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<DpMode> ParseDpMode(absl::string_view name);
absl::string_view DpModeName(DpMode mode);

// What the user chooses.
struct DpSettings {
  DpMode mode = DpMode::kNone;
  double noise_multiplier = 0.0;  // z >= 0; 0 = clipping and the fixed denominator, no privacy
  // Adaptive clipping's target quantile gamma in (0, 1); the plan's clip norm is then the initial
  // clip.
  std::optional<double> adaptive_clip_quantile;
  double adaptive_clip_learning_rate = 0.2;  // eta_C
  // Stop before a round that would take epsilon (at delta) above this. Needs z > 0.
  std::optional<double> target_epsilon;
  double delta = 1e-5;
  // Distributed: fraction of sampled clients that may drop while the noise still suffices;
  // nullopt = DropoutToleranceForRate(clients per round, expected dropout rate).
  std::optional<double> dropout_tolerance;
};

// The run DP applies to.
struct DpRoundShape {
  int64_t clients_per_round = 0;  // m, the fixed denominator and the encoding's headroom
  int64_t population = 0;         // devices that may be sampled (q = sampled / population)
  // Clients sampled per round, over-selection included (any of them may be summed): the
  // accountant's q is this over the population. 0 means clients_per_round.
  int64_t sampled_per_round = 0;
  int64_t dim = 0;         // model parameters
  double clip_norm = 0.0;  // S (the initial clip with adaptive clipping)
  // Under secure aggregation: the modulus the unit-weight encoding must fit.
  std::optional<int> secure_aggregation_modulus_bits;
  double expected_dropout_rate = 0.0;  // sizes the default dropout tolerance (distributed)
};

// Every check of DP settings against the run they apply to, in one place for the coordinator and
// the simulator. OK, or INVALID_ARGUMENT for the first problem found, whose message names fields in
// backquotes (`noise_multiplier`; DpSettings' fields and DpRoundShape's `clip_norm`,
// `clients_per_round` and `population`, and `mode`) and whose payload kDpFieldPayload holds the one
// to change, so that a binary can name its own flag (see DpErrorField).
// With mode kNone it only checks that no setting that needs DP is set.
absl::Status ValidateDpSettings(const DpSettings& settings, const DpRoundShape& shape);

// The payload type of ValidateDpSettings' errors: the field's name, without backquotes.
inline constexpr absl::string_view kDpFieldPayload = "type.fedkit.dev/fedkit.privacy.DpField";
// The field a ValidateDpSettings error blames; nullopt for any other status.
std::optional<std::string> DpErrorField(const absl::Status& status);

// What SetUpDp derives (for the round engine, logs and tests).
struct DpSetup {
  double sampling_rate = 0.0;                // q = min(sampled per round, population) / population
  double accounting_noise_multiplier = 0.0;  // what the accountant composes (0: no accounting)
  // Noise stddev on the sum of clipped updates, in units of the clip norm (central: z_delta;
  // distributed: with min_surviving_clients survivors).
  double value_noise_multiplier = 0.0;
  double clipped_count_stddev = 0.0;  // sigma_b (adaptive clipping with z > 0)
  std::optional<AdaptiveClippingOptions> adaptive_clipping;
  // With secure aggregation: the unit-weight fixed-point encoding every client uses (noise-free in
  // central mode).
  std::optional<DistributedDpEncoding> encoding;
};

// INVALID_ARGUMENT for everything ValidateDpSettings refuses (its error, with the field payload),
// or when no encoding fits the modulus (the message says what to change). mode must not be kNone.
absl::StatusOr<DpSetup> SetUpDp(const DpSettings& settings, const DpRoundShape& shape);

// The options of the encoding SetUpDp chose, for a client to derive the same encoding
// (ChooseDistributedDpEncoding is deterministic).
DistributedDpEncodingOptions EncodingOptions(const DpSettings& settings, const DpRoundShape& shape,
                                             double clipped_count_stddev);

// Seeds of reproducible DP noise (simulations and tests; a deployment draws from
// SecureRandomSource): the server's noise on round `round`'s sum and clipped count, and client
// `client_index`'s distributed share, all derived from one base seed.
uint64_t ValueNoiseSeed(uint64_t base, int64_t round);
uint64_t CountNoiseSeed(uint64_t base, int64_t round);
uint64_t ClientNoiseSeed(uint64_t base, int64_t round, int64_t client_index);
// The seed of a DP round's sample (round, and restarts of it after abandonment) when a test fixes
// the coordinator's randomness; a deployment draws it from SecureRandomSource.
uint64_t DpSamplingSeed(uint64_t base, int64_t round, int64_t attempt);

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_DP_SETUP_H_
