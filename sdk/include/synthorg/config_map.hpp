// A config map is the one table a plugin writes about its configuration. From it come
// validation (unknown keys are errors, with "did you mean"), defaults, the JSON Schema
// (`synthorg config schema`) and the generated reference in docs/.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace synthorg {

enum class FieldType {
  string,
  integer,
  number,
  boolean,
  duration,     // "250ms", "10s", "5m", "2h", "1d" or compounds like "1m30s"; applied as ms
  string_list,
  string_map,   // object of string values, e.g. environment variables
  enumeration,  // one of `choices`
  object,       // free-form JSON object, checked only for being an object
};
std::string_view type_name(FieldType type) noexcept;

struct ConfigField {
  std::string name;
  FieldType type = FieldType::string;
  std::string description;
  nlohmann::json default_value;  // null when required
  bool required = false;
  bool sensitive = false;  // masked wherever the value is shown
  std::optional<double> minimum;
  std::optional<double> maximum;
  std::string pattern;  // ECMAScript regex a string must match in full
  std::vector<std::string> choices;
};

// One problem found in configuration: where, what, and how to fix it.
struct ConfigIssue {
  std::string path;     // dotted key path, e.g. "plugins.hello.config.repeat"
  std::string message;  // what is wrong, quoting the bad value
  std::string fix;      // what to write instead
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const noexcept { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

class ConfigMap {
 public:
  ConfigMap& string(std::string name, std::string default_value, std::string description);
  ConfigMap& integer(std::string name, std::int64_t default_value, std::string description);
  ConfigMap& number(std::string name, double default_value, std::string description);
  ConfigMap& boolean(std::string name, bool default_value, std::string description);
  ConfigMap& duration(std::string name, std::string default_value, std::string description);
  ConfigMap& string_list(std::string name, std::vector<std::string> default_value,
                         std::string description);
  ConfigMap& string_map(std::string name, std::string description);
  ConfigMap& enumeration(std::string name, std::vector<std::string> choices,
                         std::string default_value, std::string description);
  ConfigMap& object(std::string name, std::string description);

  // Modifiers of the field declared last.
  ConfigMap& required();  // no default: the key must be given
  ConfigMap& range(std::optional<double> minimum, std::optional<double> maximum);
  ConfigMap& pattern(std::string regex);
  ConfigMap& sensitive();

  // Checks `input` (an object, or null for "nothing given"), and returns it with every
  // default filled in and durations as integer milliseconds. Appends what is wrong to
  // `issues`, with paths under `path_prefix`.
  nlohmann::json apply(const nlohmann::json& input, std::string_view path_prefix,
                       std::vector<ConfigIssue>& issues) const;
  // The same, throwing ConfigError when anything is wrong.
  nlohmann::json apply(const nlohmann::json& input, std::string_view path_prefix = {}) const;

  nlohmann::json json_schema() const;  // a JSON Schema (2020-12) object schema
  nlohmann::json to_json() const;      // what crosses the C descriptor
  static ConfigMap from_json(const nlohmann::json& serialised);

  const std::vector<ConfigField>& fields() const noexcept { return fields_; }
  const ConfigField* find(std::string_view name) const noexcept;

 private:
  ConfigMap& add(ConfigField field);
  ConfigField& last();
  std::vector<ConfigField> fields_;
};

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept;
// The closest candidate within a small edit distance, or empty.
std::string did_you_mean(std::string_view given, const std::vector<std::string>& candidates);

}  // namespace synthorg
