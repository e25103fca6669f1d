// libFuzzer target: arbitrary bytes as a company.yaml through the kernel's parser
// (parse_company_config in kernel/company_config.cpp): YAML, ${VAR} and ${VAR:-default}
// expansion with nested defaults, and the checks of every section. A bad file must come out as
// ConfigFileError, which `synthorg` prints with file positions, and never as another exception.
// Then the bytes, as printable text, as the default of a quoted reference: to a set variable it
// must come out as the variable's value whatever the default holds; to an unset one, as the
// default itself when that holds no '$'.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "company_config.hpp"
#include "synthorg/plugin.hpp"

namespace {

using synthorg::kernel::CompanyConfig;

std::optional<CompanyConfig> parse(std::string_view text) {
  try {
    return synthorg::kernel::parse_company_config(text, "company.yaml", "/etc/synthorg", "/usr/lib/synthorg/plugins");
  } catch (const synthorg::kernel::ConfigFileError& e) {
    if (std::string_view(e.what()).empty()) __builtin_trap();
    return std::nullopt;
  }
}

}  // namespace

// Two definitions the linked files name but the parser never reaches: the built-in company.yaml,
// which CMake generates into the build tree (only load_company_config reads it), and the plugin
// host's sweep (plugin_file.cpp is linked for valid_plugin_name; PluginInstance calls it).
std::string_view synthorg::kernel::embedded_company_yaml() { return {}; }
std::size_t synthorg::PluginContext::sweep() { __builtin_trap(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("SYNTHORG_FUZZ_SET", "set-value", 1);
  unsetenv("SYNTHORG_FUZZ_UNSET");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)parse(input);
  // '"' and '\' would end or escape the quotes; '}' would end the reference.
  std::string text;
  for (char c : input)
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '}') text += c;
  auto set = parse("company_name: \"${SYNTHORG_FUZZ_SET:-" + text + "}\"\n");
  if (set ? set->company_name != "set-value" : text.find('$') == std::string::npos) __builtin_trap();
  if (text.find('$') != std::string::npos) return 0;
  auto unset = parse("company_name: \"${SYNTHORG_FUZZ_UNSET:-" + text + "}\"\n");
  if (unset ? unset->company_name != text : !text.empty()) __builtin_trap();
  return 0;
}
