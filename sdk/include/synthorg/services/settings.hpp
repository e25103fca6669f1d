// Settings: runtime-tunable values that plugins define and operators change without a restart.
// Resolution, first match wins: SYNTHORG_<NAMESPACE>_<KEY> env -> the database (Store) ->
// company.yaml `settings:` -> the definition's default. Sensitive values are encrypted at rest
// with Fernet (SYNTHORG_SETTINGS_KEY) and shown as "********". Provided by the kernel.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/token.hpp"

namespace synthorg {

// `list`: a JSON array of strings, each matching `pattern` when one is given; in the environment
// either that JSON array or the strings separated by commas. Appended, so the others keep their values.
enum class SettingType { string, integer, number, boolean, enumeration, json, list };
enum class SettingSource { env, database, config, default_value };

std::string_view to_string(SettingType type) noexcept;
std::string_view to_string(SettingSource source) noexcept;  // "env", "database", "config", "default"

struct SettingDefinition {
  std::string space;  // the namespace: ^[a-z][a-z0-9_]*$, usually the plugin's concern ("backup")
  std::string key;    // ^[a-z][a-z0-9_]*$
  SettingType type = SettingType::string;
  nlohmann::json default_value;  // must pass the validators below
  std::string description;
  bool sensitive = false;         // encrypted at rest, never logged, shown as ********
  bool restart_required = false;  // a change takes effect at the next start
  std::optional<double> minimum, maximum;  // integer and number
  std::string pattern;                     // string, list: the whole value (each item) must match (ECMAScript)
  std::vector<std::string> choices;        // enumeration

  // "SYNTHORG_BACKUP_KEEP" for backup.keep.
  std::string env_name() const;
};

struct SettingValue {
  nlohmann::json value;  // the effective value (for sensitive ones too: callers must not log it)
  SettingSource source = SettingSource::default_value;
  // Set when a higher-priority value exists but cannot be used (a stored value that the current
  // key cannot decrypt, say): the value above comes from the next source down.
  std::string problem;
};

// What the API and `synthorg settings` show: the value redacted when sensitive.
struct SettingView {
  SettingDefinition definition;
  nlohmann::json shown_value;
  SettingSource source = SettingSource::default_value;
  std::string problem;
};

enum class SettingsErrc {
  unknown,      // no such setting (404)
  invalid,      // the value or definition breaks a rule (422 / refused at start)
  pinned,       // set by an environment variable, so it cannot be changed here (409)
  unavailable,  // no Store to write to, or it failed (503)
};

class SettingsError : public std::runtime_error {
 public:
  SettingsError(SettingsErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  SettingsErrc code() const noexcept { return code_; }

 private:
  SettingsErrc code_;
};

// Published on the bus when an effective value changes.
struct SettingChanged {
  static constexpr std::string_view topic = "settings.changed";
  std::string space, key;
  SettingSource source = SettingSource::default_value;
  bool restart_required = false;
  std::string actor;
  nlohmann::json value;  // omitted (null) for sensitive settings
};
void to_json(nlohmann::json& out, const SettingChanged& event);

class Settings {
 public:
  static constexpr std::string_view service_id = "synthorg.Settings/1";
  virtual ~Settings() = default;

  // Registers a definition; the token removes it. Throws SettingsError(invalid) for a bad
  // definition, a bad value in the environment or company.yaml, or a sensitive setting while
  // SYNTHORG_SETTINGS_KEY is missing or malformed.
  virtual Token define(SettingDefinition definition) = 0;

  // Cheap (served from memory); may be called from any thread.
  virtual SettingValue get(std::string_view space, std::string_view key) const = 0;
  // Validates and stores the value (encrypted when sensitive), then publishes settings.changed.
  // Blocks on the Store: call from the blocking pool. A full Store is its StoreError(full), left
  // as it is so the caller can say so (507 store_full); any other Store failure is unavailable.
  virtual void set(std::string_view space, std::string_view key, const nlohmann::json& value,
                   std::string_view actor) = 0;
  // Removes the stored value, so the next source down applies.
  virtual void reset(std::string_view space, std::string_view key, std::string_view actor) = 0;
  virtual std::vector<SettingView> list() const = 0;
};

}  // namespace synthorg
