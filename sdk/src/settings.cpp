// The parts of the Settings contract that callers and the kernel share.
#include "synthorg/services/settings.hpp"

#include <cctype>

namespace synthorg {

std::string_view to_string(SettingType type) noexcept {
  switch (type) {
    case SettingType::string: return "str";
    case SettingType::integer: return "int";
    case SettingType::number: return "float";
    case SettingType::boolean: return "bool";
    case SettingType::enumeration: return "enum";
    case SettingType::json: return "json";
    case SettingType::list: return "list";
  }
  return "str";
}

std::string_view to_string(SettingSource source) noexcept {
  switch (source) {
    case SettingSource::env: return "env";
    case SettingSource::database: return "database";
    case SettingSource::config: return "config";
    case SettingSource::default_value: return "default";
  }
  return "default";
}

std::string SettingDefinition::env_name() const {
  std::string name = "SYNTHORG_";
  for (char c : space) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  name += '_';
  for (char c : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

void to_json(nlohmann::json& out, const SettingChanged& event) {
  out = {{"namespace", event.space}, {"key", event.key}, {"source", to_string(event.source)},
         {"restart_required", event.restart_required}, {"actor", event.actor}, {"value", event.value}};
}

}  // namespace synthorg
