// The support page's files (services/web/page/), embedded into the binary at
// build time by embed_files.cmake, so predlogd serves its page with nothing
// beside it on disk.
#ifndef PREDLOG_SERVICES_WEB_PAGE_FILES_H_
#define PREDLOG_SERVICES_WEB_PAGE_FILES_H_

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace predlog::web {

struct PageFile {
  absl::string_view name;     // "index.html", "app.js": the file name in page/
  absl::string_view content;  // its bytes, exactly
};

// Every file of services/web/page/ but its README.md, by name. Static data.
absl::Span<const PageFile> PageFiles();

}  // namespace predlog::web

#endif  // PREDLOG_SERVICES_WEB_PAGE_FILES_H_
