// L2 clipping of model deltas.
#ifndef FEDKIT_PRIVACY_CLIPPING_H_
#define FEDKIT_PRIVACY_CLIPPING_H_

#include "absl/types/span.h"

namespace fedkit::privacy {

// L2 norm of `values`, accumulated in double.
double L2Norm(absl::Span<const float> values);

// Scales `delta` in place by min(1, clip_norm / ||delta||_2) so its L2 norm is at most clip_norm.
// clip_norm <= 0 means no clipping. Returns the norm before clipping.
double ClipL2InPlace(absl::Span<float> delta, double clip_norm);

}  // namespace fedkit::privacy

#endif  // FEDKIT_PRIVACY_CLIPPING_H_
