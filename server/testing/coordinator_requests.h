// Requests the RoundCoordinator tests send, built the way a device builds them. Test-only.
#ifndef FEDKIT_SERVER_TESTING_COORDINATOR_REQUESTS_H_
#define FEDKIT_SERVER_TESTING_COORDINATOR_REQUESTS_H_

#include <cstdint>
#include <string>

#include "core/parameter_layout.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit::server::coordinator_testing {

// The tests' model: "w" of 2 values and "b" of 1 (HeaderFor's default size).
inline ParameterLayout ThreeValueLayout() {
  ParameterLayout layout;
  layout.Append("w", {2});
  layout.Append("b", {1});
  return layout;
}

// A check-in of `client_id` at API version 1.
inline v1::CheckInRequest CheckInOf(const std::string& client_id) {
  v1::CheckInRequest r;
  r.set_client_id(client_id);
  r.set_api_version(1);
  return r;
}

// The header of `client_id`'s plain update for assignment `a`: `examples` examples, a delta of
// `total_size` values.
inline v1::UpdateHeader HeaderFor(const v1::RoundAssignment& a, const std::string& client_id,
                                  int64_t examples, int64_t total_size = 3) {
  v1::UpdateHeader h;
  h.set_client_id(client_id);
  h.set_assignment_id(a.assignment_id());
  h.set_round(a.round());
  h.set_num_examples(examples);
  h.set_total_size(total_size);
  return h;
}

}  // namespace fedkit::server::coordinator_testing

#endif  // FEDKIT_SERVER_TESTING_COORDINATOR_REQUESTS_H_
