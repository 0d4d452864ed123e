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
  // `eval_rows`: rows of `eval` per client (its own test examples), or empty for none.
  NaturalDataset(DatasetInfo info, Examples train, std::vector<std::vector<int64_t>> rows,
                 Examples eval, std::vector<std::vector<int64_t>> eval_rows)
      : info_(std::move(info)),
        train_(std::move(train)),
        rows_(std::move(rows)),
        eval_(std::move(eval)),
        eval_rows_(std::move(eval_rows)) {}

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
  bool has_client_test_examples() const override { return !eval_rows_.empty(); }
  Examples ClientTestExamples(int64_t client) const override {
    if (eval_rows_.empty() || client < 0 || client >= num_clients()) {
      return FederatedDataset::ClientTestExamples(client);
    }
    return eval_.Select(eval_rows_[static_cast<size_t>(client)]);
  }

 private:
  DatasetInfo info_;
  Examples train_;
  std::vector<std::vector<int64_t>> rows_;
  Examples eval_;
  std::vector<std::vector<int64_t>> eval_rows_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FederatedDataset>> MakeNaturalDataset(NaturalDatasetParts parts,
                                                                     int64_t max_clients) {
  const int64_t dim = parts.info.feature_dim();
  const bool test_rows_given = !parts.test_client_rows.empty();
  if (test_rows_given) {
    const int64_t test_size = parts.test.has_value() ? parts.test->size() : 0;
    bool valid =
        parts.test.has_value() && parts.test_client_rows.size() == parts.client_rows.size();
    for (const std::vector<int64_t>& r : parts.test_client_rows) {
      for (int64_t row : r) valid = valid && row >= 0 && row < test_size;
    }
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          parts.source, ": the per-client test rows do not match the clients and the test set"));
    }
  }
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::vector<int64_t>> eval_rows;  // per kept client, rows of the eval set
  rows.reserve(parts.client_rows.size());
  for (size_t c = 0; c < parts.client_rows.size(); ++c) {
    if (parts.client_rows[c].empty()) continue;
    rows.push_back(std::move(parts.client_rows[c]));
    if (test_rows_given) eval_rows.push_back(std::move(parts.test_client_rows[c]));
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
  if (max_clients > 0) {
    rows.resize(static_cast<size_t>(max_clients));
    if (test_rows_given) eval_rows.resize(static_cast<size_t>(max_clients));
  }

  Examples eval;
  eval.feature_dim = dim;
  if (parts.test.has_value()) {
    eval = *std::move(parts.test);
    eval.feature_dim = dim;
  } else {
    std::vector<int64_t> held_out;
    for (std::vector<int64_t>& r : rows) {
      const size_t n_eval = r.size() / static_cast<size_t>(kHoldOutDenominator);
      std::vector<int64_t>& mine = eval_rows.emplace_back();
      for (size_t i = 0; i < n_eval; ++i) mine.push_back(static_cast<int64_t>(held_out.size() + i));
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
                                          std::move(rows), std::move(eval), std::move(eval_rows));
}

}  // namespace fedkit::data
