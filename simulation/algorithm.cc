#include "simulation/algorithm.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedkit::simulation {
namespace {

// One row per algorithm.
constexpr std::pair<Algorithm, absl::string_view> kAlgorithmNames[] = {
    {Algorithm::kFedAvg, "fedavg"},
    {Algorithm::kScaffold, "scaffold"},
    {Algorithm::kFedNova, "fednova"},
    {Algorithm::kFedBuff, "fedbuff"},
};

}  // namespace

absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view text) {
  for (const auto& [algorithm, name] : kAlgorithmNames) {
    if (text == name) return algorithm;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown algorithm \"", absl::CHexEscape(text),
                                                 "\"; accepted: ", AlgorithmNames()));
}

absl::string_view AlgorithmName(Algorithm algorithm) {
  for (const auto& [a, name] : kAlgorithmNames) {
    if (a == algorithm) return name;
  }
  return "unknown";
}

std::string AlgorithmNames() {
  return absl::StrJoin(kAlgorithmNames, " | ",
                       [](std::string* out, const auto& row) { absl::StrAppend(out, row.second); });
}

}  // namespace fedkit::simulation
