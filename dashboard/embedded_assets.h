// The dashboard page's files (dashboard/static/), compiled into the library: embed_assets.cmake
// turns each file into bytes of a generated C++ source at build time, so the binary serves its
// page without any file on disk and without fetching anything from elsewhere.
//
// Ownership: static data, valid for the whole program. Thread safety: any thread.
#ifndef FEDKIT_DASHBOARD_EMBEDDED_ASSETS_H_
#define FEDKIT_DASHBOARD_EMBEDDED_ASSETS_H_

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedkit::dashboard {

struct Asset {
  absl::string_view path;          // "/index.html": "/" and the file's name under static/
  absl::string_view content_type;  // from the extension, e.g. "text/html; charset=utf-8"
  absl::string_view bytes;         // the file's content, byte for byte
};

// Every embedded file, in file-name order.
absl::Span<const Asset> EmbeddedAssets();

// The file served at `path`, or nullptr if there is none.
const Asset* FindAsset(absl::string_view path);

}  // namespace fedkit::dashboard

#endif  // FEDKIT_DASHBOARD_EMBEDDED_ASSETS_H_
