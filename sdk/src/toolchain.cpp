#include "synthorg/toolchain.hpp"

#include <algorithm>
#include <vector>

namespace synthorg {
const char* host_toolchain_signature() noexcept { return SYNTHORG_TOOLCHAIN_SIGNATURE; }

namespace {
// "gcc-12;cxx11abi=1;sdk=0;..." → its ';'-separated fields; the first (the compiler) has no '='.
std::vector<std::string_view> fields_of(std::string_view signature) {
  std::vector<std::string_view> fields;
  while (!signature.empty()) {
    auto end = signature.find(';');
    fields.push_back(signature.substr(0, end));
    if (end == std::string_view::npos) break;
    signature.remove_prefix(end + 1);
  }
  return fields;
}
std::string_view key_of(std::string_view field) {
  auto equals = field.find('=');
  return equals == std::string_view::npos ? std::string_view("compiler") : field.substr(0, equals);
}
}  // namespace

std::string toolchain_difference(std::string_view plugin, std::string_view host) {
  auto mine = fields_of(plugin), theirs = fields_of(host);
  std::string out;
  auto add = [&](std::string_view text) { out += (out.empty() ? "" : "; ") + std::string(text); };
  for (auto field : mine) {
    auto match = std::find_if(theirs.begin(), theirs.end(), [&](auto other) { return key_of(other) == key_of(field); });
    if (match == theirs.end())
      add(std::string(field) + " (the host has no " + std::string(key_of(field)) + ")");
    else if (*match != field)
      add(std::string(field) + " (the host: " + std::string(*match) + ")");
  }
  for (auto field : theirs)
    if (std::none_of(mine.begin(), mine.end(), [&](auto other) { return key_of(other) == key_of(field); }))
      add("no " + std::string(key_of(field)) + " (the host: " + std::string(field) + ")");
  return out;
}
}  // namespace synthorg
