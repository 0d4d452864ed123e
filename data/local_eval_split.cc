#include "data/local_eval_split.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/sampling.h"
#include "core/seeds.h"

namespace fedkit::data {
namespace {

constexpr uint64_t kLocalEvalStream = 0x6c6f63616c;  // "local"

}  // namespace

absl::Status ValidateLocalEvalSplitOptions(const LocalEvalSplitOptions& options) {
  if (!(options.fraction > 0.0 && options.fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("`fraction` must be in (0, 1), got ", options.fraction));
  }
  return absl::OkStatus();
}

int64_t LocalHeldOutCount(int64_t n, double fraction) {
  if (n < 2) return 0;
  const int64_t rounded = std::llround(fraction * static_cast<double>(n));
  return std::clamp<int64_t>(rounded, 1, n - 1);
}

ClientRowSplit SplitClientRows(int64_t n, double fraction, uint64_t seed, int64_t client) {
  ClientRowSplit split;
  split.held_out = SampleIndices(
      n, LocalHeldOutCount(n, fraction),
      DeriveSeed(seed, {kLocalEvalStream, static_cast<uint64_t>(client)}));  // ascending
  split.train.reserve(static_cast<size_t>(n) - split.held_out.size());
  auto next_held_out = split.held_out.begin();
  for (int64_t row = 0; row < n; ++row) {
    if (next_held_out != split.held_out.end() && *next_held_out == row) {
      ++next_held_out;
    } else {
      split.train.push_back(row);
    }
  }
  return split;
}

absl::StatusOr<std::unique_ptr<LocalEvalDataset>> LocalEvalDataset::Create(
    const FederatedDataset* base, const LocalEvalSplitOptions& options) {
  if (base == nullptr) return absl::InvalidArgumentError("no base dataset");
  if (absl::Status valid = ValidateLocalEvalSplitOptions(options); !valid.ok()) return valid;
  return std::unique_ptr<LocalEvalDataset>(new LocalEvalDataset(base, options));
}

int64_t LocalEvalDataset::NumTrainExamples(int64_t client) const {
  const int64_t n = base_->NumTrainExamples(client);
  return split_ ? n - LocalHeldOutCount(n, options_.fraction) : n;
}

Examples LocalEvalDataset::TrainExamples(int64_t client) const {
  Examples all = base_->TrainExamples(client);
  if (!split_) return all;
  return all.Select(SplitClientRows(all.size(), options_.fraction, options_.seed, client).train);
}

Examples LocalEvalDataset::ClientTestExamples(int64_t client) const {
  if (!split_) return base_->ClientTestExamples(client);
  Examples all = base_->TrainExamples(client);
  return all.Select(SplitClientRows(all.size(), options_.fraction, options_.seed, client).held_out);
}

}  // namespace fedkit::data
