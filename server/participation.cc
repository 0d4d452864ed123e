#include "server/participation.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/round_coordinator.h"

namespace fedkit::server {
namespace {

using nlohmann::json;

absl::StatusOr<std::vector<std::string>> IdList(const json& line, const char* field,
                                                const std::string& where) {
  if (!line.contains(field) || !line[field].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": '", field, "' must be a list of ids"));
  }
  std::vector<std::string> ids;
  for (const json& id : line[field]) {
    if (!id.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": '", field, "' holds a value that is not a string"));
    }
    ids.push_back(id.get<std::string>());
    if (absl::Status valid = ValidateClientId(ids.back()); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": '", field, "': ", valid.message()));
    }
    if (ids.size() > 1 && !(ids[ids.size() - 2] < ids.back())) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": '", field, "' is not sorted without repeats at '", ids.back(), "'"));
    }
  }
  return ids;
}

absl::Status CheckSubset(const std::vector<std::string>& part, const char* part_name,
                         const std::vector<std::string>& whole, const char* whole_name,
                         const std::string& where) {
  for (const std::string& id : part) {
    if (!std::binary_search(whole.begin(), whole.end(), id)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": '", id, "' is in '", part_name,
                                                     "' but not in '", whole_name, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string ParticipationToJson(const RoundParticipation& participation) {
  json line;
  line["round"] = participation.round;
  line["attempt"] = participation.attempt;
  line["pool"] = participation.pool;
  line["assigned"] = participation.assigned;
  line["aggregated"] = participation.aggregated;
  // As a string: JSON readers commonly hold numbers as doubles, exact only up to 2^53.
  if (participation.sampling_seed.has_value()) {
    line["sampling_seed"] = absl::StrCat(*participation.sampling_seed);
  }
  return line.dump();
}

absl::StatusOr<std::vector<RoundParticipation>> ParseParticipation(absl::string_view text,
                                                                   absl::string_view source) {
  std::vector<RoundParticipation> rounds;
  int line_number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (raw.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    const std::string where = absl::StrCat(source, ":", line_number);
    const json line = json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
    if (line.is_discarded() || !line.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    RoundParticipation p;
    for (const char* field : {"round", "attempt"}) {
      if (!line.contains(field) || !line[field].is_number_integer() ||
          line[field].get<int64_t>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": '", field, "' must be a non-negative integer"));
      }
    }
    if (line.contains("sampling_seed")) {
      uint64_t seed = 0;
      if (!line["sampling_seed"].is_string() ||
          !absl::SimpleAtoi(line["sampling_seed"].get<std::string>(), &seed)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": 'sampling_seed' must be a string holding a decimal 64-bit unsigned integer"));
      }
      p.sampling_seed = seed;
    }
    p.round = line["round"].get<int64_t>();
    p.attempt = line["attempt"].get<int64_t>();
    const int64_t expected = rounds.empty() ? 1 : rounds.back().round + 1;
    if (p.round != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": round ", p.round, " where round ", expected, " was expected"));
    }
    absl::StatusOr<std::vector<std::string>> pool = IdList(line, "pool", where);
    if (!pool.ok()) return pool.status();
    absl::StatusOr<std::vector<std::string>> assigned = IdList(line, "assigned", where);
    if (!assigned.ok()) return assigned.status();
    absl::StatusOr<std::vector<std::string>> aggregated = IdList(line, "aggregated", where);
    if (!aggregated.ok()) return aggregated.status();
    p.pool = *std::move(pool);
    p.assigned = *std::move(assigned);
    p.aggregated = *std::move(aggregated);
    if (absl::Status s = CheckSubset(p.assigned, "assigned", p.pool, "pool", where); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckSubset(p.aggregated, "aggregated", p.assigned, "assigned", where);
        !s.ok()) {
      return s;
    }
    rounds.push_back(std::move(p));
  }
  return rounds;
}

absl::StatusOr<std::vector<RoundParticipation>> ReadParticipationFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseParticipation(text.str(), path);
}

}  // namespace fedkit::server
