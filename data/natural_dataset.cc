#include "data/natural_dataset.h"

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace fedkit::data {
namespace {

class NaturalDataset : public FederatedDataset {
 public:
  NaturalDataset(DatasetInfo info, Examples train, std::vector<std::vector<int64_t>> rows,
                 Examples eval)
      : info_(std::move(info)),
        train_(std::move(train)),
        rows_(std::move(rows)),
        eval_(std::move(eval)) {}

  int64_t num_clients() const override { return static_cast<int64_t>(rows_.size()); }
  const DatasetInfo& info() const override { return info_; }
  int64_t NumTrainExamples(int64_t client) const override {
    if (client < 0 || client >= num_clients()) return 0;
    return static_cast<int64_t>(rows_[static_cast<size_t>(client)].size());
  }
  Examples TrainExamples(int64_t client) const override {
    if (client < 0 || client >= num_clients()) return Examples{train_.feature_dim, {}, {}};
    return train_.Select(rows_[static_cast<size_t>(client)]);
  }
  const Examples& EvalExamples() const override { return eval_; }

 private:
  DatasetInfo info_;
  Examples train_;
  std::vector<std::vector<int64_t>> rows_;
  Examples eval_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeNaturalDataset(NaturalDatasetParts parts,
                                                                     int64_t max_clients) {
  const int64_t dim = parts.info.feature_dim();
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(parts.client_rows.size());
  for (std::vector<int64_t>& r : parts.client_rows) {
    if (!r.empty()) rows.push_back(std::move(r));
  }
  const int64_t available = static_cast<int64_t>(rows.size());
  if (available == 0) {
    return absl::InvalidArgumentError(absl::StrCat(parts.source, ": no client has any examples"));
  }
  if (max_clients > available) {
    return absl::InvalidArgumentError(
        absl::StrCat(parts.source, " has ", available, " clients with examples; --clients ",
                     max_clients, " asks for more (leave it unset to use all of them)"));
  }
  if (max_clients > 0) rows.resize(static_cast<size_t>(max_clients));

  Examples eval;
  eval.feature_dim = dim;
  if (parts.test.has_value()) {
    eval = *std::move(parts.test);
    eval.feature_dim = dim;
  } else {
    std::vector<int64_t> held_out;
    for (std::vector<int64_t>& r : rows) {
      const size_t n_eval = r.size() / static_cast<size_t>(kHoldOutDenominator);
      held_out.insert(held_out.end(), r.end() - static_cast<std::ptrdiff_t>(n_eval), r.end());
      r.resize(r.size() - n_eval);
    }
    eval = parts.examples.Select(held_out);
  }
  if (eval.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        parts.source, ": the eval set is empty (",
        parts.test.has_value() ? "the test data has no examples"
                               : "no client has 10 or more examples to hold out 10% of",
        ")"));
  }
  parts.examples.feature_dim = dim;
  return std::make_unique<NaturalDataset>(std::move(parts.info), std::move(parts.examples),
                                          std::move(rows), std::move(eval));
}

}  // namespace fedkit::data
