// Converting LibTorch's exceptions into absl::Status at FedKit's boundaries.
#ifndef FEDKIT_MODELS_TORCH_STATUS_H_
#define FEDKIT_MODELS_TORCH_STATUS_H_

#include <c10/util/Exception.h>

#include <exception>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedkit::models {

// Runs `fn` (returning absl::Status or absl::StatusOr<T>) and turns any exception LibTorch (or the
// standard library) throws into INTERNAL with the exception's message, so no exception crosses a
// public API.
template <typename Fn>
auto CallTorch(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("LibTorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("LibTorch: ") + e.what());
  }
}

}  // namespace fedkit::models

#endif  // FEDKIT_MODELS_TORCH_STATUS_H_
