// Macros for propagating absl::Status, in the style of federated-compute's FCP_* macros.
#ifndef FEDKIT_CORE_STATUS_MACROS_H_
#define FEDKIT_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FEDKIT_STATUS_CONCAT_INNER_(x, y) x##y
#define FEDKIT_STATUS_CONCAT_(x, y) FEDKIT_STATUS_CONCAT_INNER_(x, y)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define FEDKIT_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status fedkit_status_ = (expr);          \
    if (!fedkit_status_.ok()) return fedkit_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise moves the value
// into `lhs`, which may be a declaration (`auto x`) or an existing variable.
#define FEDKIT_ASSIGN_OR_RETURN(lhs, rexpr) \
  FEDKIT_ASSIGN_OR_RETURN_IMPL_(FEDKIT_STATUS_CONCAT_(fedkit_statusor_, __LINE__), lhs, rexpr)

#define FEDKIT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // FEDKIT_CORE_STATUS_MACROS_H_
