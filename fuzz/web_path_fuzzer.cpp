// libFuzzer target: arbitrary bytes as a request target through the web plugin's path check
// (safe_relative_path in plugins/web/static_files.cpp), which percent-decodes the URL path and
// turns it into the path the server opens under its root. Whatever the target, a path it accepts
// must stay under the root once joined to it: relative, no empty, "." or ".." segment after
// decoding, no NUL, backslash or control character; and `hidden` must say whether a segment
// starts with '.', since that is what keeps dotfiles from being served.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "static_files.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view target(reinterpret_cast<const char*>(data), size);
  bool hidden = true;
  auto relative = synthorg::web::safe_relative_path(target, hidden);
  if (!relative) return 0;
  (void)synthorg::web::mime_type(*relative);
  std::string_view path = *relative;
  bool dotted = false;
  for (std::size_t start = 0; !path.empty() && start <= path.size();) {
    auto end = std::min(path.find('/', start), path.size());
    auto segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") __builtin_trap();
    dotted = dotted || segment.front() == '.';
    start = end + 1;
  }
  if (hidden != dotted) __builtin_trap();
  for (char c : path)
    if (c == '\0' || c == '\\' || static_cast<unsigned char>(c) < 0x20) __builtin_trap();
  const std::filesystem::path root("/srv/web-root");
  auto joined = (root / path).lexically_normal();
  if (std::mismatch(root.begin(), root.end(), joined.begin(), joined.end()).first != root.end()) __builtin_trap();
  return 0;
}
