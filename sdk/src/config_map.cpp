#include "synthorg/config_map.hpp"

#include <algorithm>
#include <cmath>
#include <regex>

namespace synthorg {
namespace {

using nlohmann::json;

std::string join_path(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return std::string(prefix) + "." + std::string(key);
}

std::string show(const json& value) {
  // Replace, not throw, on bytes that are not UTF-8: this text is only ever part of a message.
  auto text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// 10 rather than 10.0: bounds are written as the operator would write them.
std::string number_text(double value) {
  if (std::floor(value) == value && std::fabs(value) < 1e15) return std::to_string(static_cast<std::int64_t>(value));
  return json(value).dump();
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

FieldType type_from_name(std::string_view name) {
  for (auto type : {FieldType::string, FieldType::integer, FieldType::number, FieldType::boolean, FieldType::duration,
                    FieldType::string_list, FieldType::string_map, FieldType::enumeration, FieldType::object})
    if (type_name(type) == name) return type;
  throw std::invalid_argument("unknown config field type \"" + std::string(name) + "\"");
}

std::string example_of(const ConfigField& field) {
  switch (field.type) {
    case FieldType::string: return "a quoted string, e.g. \"text\"";
    case FieldType::integer: return "a whole number, e.g. 8";
    case FieldType::number: return "a number, e.g. 0.5";
    case FieldType::boolean: return "true or false";
    case FieldType::duration: return "a duration with a unit, e.g. 500ms, 10s, 5m, 2h";
    case FieldType::string_list: return "a list of strings, e.g. [\"a\", \"b\"]";
    case FieldType::string_map: return "a map of string values, e.g. {KEY: \"value\"}";
    case FieldType::enumeration: {
      std::string out = "one of ";
      for (std::size_t i = 0; i < field.choices.size(); ++i) out += (i ? ", " : "") + field.choices[i];
      return out;
    }
    case FieldType::object: return "a map of keys and values";
  }
  return "a valid value";
}

}  // namespace

std::string_view type_name(FieldType type) noexcept {
  switch (type) {
    case FieldType::string: return "string";
    case FieldType::integer: return "integer";
    case FieldType::number: return "number";
    case FieldType::boolean: return "boolean";
    case FieldType::duration: return "duration";
    case FieldType::string_list: return "string_list";
    case FieldType::string_map: return "string_map";
    case FieldType::enumeration: return "enum";
    case FieldType::object: return "object";
  }
  return "string";
}

static std::string format_issues(const std::vector<ConfigIssue>& issues) {
  std::string text;
  for (const auto& issue : issues) {
    if (!text.empty()) text += "\n";
    text += issue.path.empty() ? issue.message : issue.path + ": " + issue.message;
    if (!issue.fix.empty()) text += " (fix: " + issue.fix + ")";
  }
  return text;
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(format_issues(issues)), issues_(std::move(issues)) {}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept {
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    std::int64_t amount = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (amount > 1'000'000'000'000LL) return std::nullopt;
      amount = amount * 10 + (text[i++] - '0');
    }
    if (i == start) return std::nullopt;
    std::size_t unit_start = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    auto unit = text.substr(unit_start, i - unit_start);
    std::int64_t scale;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    else return std::nullopt;
    // A duration past what milliseconds in 64 bits hold is not one (found by fuzzing:
    // "240713881645d" overflowed the multiplication).
    std::int64_t part = 0;
    if (__builtin_mul_overflow(amount, scale, &part) || __builtin_add_overflow(total, part, &total)) return std::nullopt;
  }
  return std::chrono::milliseconds(total);
}

std::string did_you_mean(std::string_view given, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, given.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    auto distance = edit_distance(given, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

ConfigMap& ConfigMap::add(ConfigField field) {
  if (find(field.name)) throw std::invalid_argument("config field \"" + field.name + "\" is declared twice");
  fields_.push_back(std::move(field));
  return *this;
}

ConfigField& ConfigMap::last() {
  if (fields_.empty()) throw std::logic_error("a config map modifier needs a field declared before it");
  return fields_.back();
}

ConfigMap& ConfigMap::string(std::string name, std::string default_value, std::string description) {
  return add({std::move(name), FieldType::string, std::move(description), std::move(default_value)});
}
ConfigMap& ConfigMap::integer(std::string name, std::int64_t default_value, std::string description) {
  return add({std::move(name), FieldType::integer, std::move(description), default_value});
}
ConfigMap& ConfigMap::number(std::string name, double default_value, std::string description) {
  return add({std::move(name), FieldType::number, std::move(description), default_value});
}
ConfigMap& ConfigMap::boolean(std::string name, bool default_value, std::string description) {
  return add({std::move(name), FieldType::boolean, std::move(description), default_value});
}
ConfigMap& ConfigMap::duration(std::string name, std::string default_value, std::string description) {
  if (!parse_duration(default_value))
    throw std::invalid_argument("config field \"" + name + "\": default \"" + default_value + "\" is not a duration");
  return add({std::move(name), FieldType::duration, std::move(description), std::move(default_value)});
}
ConfigMap& ConfigMap::string_list(std::string name, std::vector<std::string> default_value, std::string description) {
  return add({std::move(name), FieldType::string_list, std::move(description), std::move(default_value)});
}
ConfigMap& ConfigMap::string_map(std::string name, std::string description) {
  return add({std::move(name), FieldType::string_map, std::move(description), json::object()});
}
ConfigMap& ConfigMap::enumeration(std::string name, std::vector<std::string> choices, std::string default_value,
                                  std::string description) {
  if (std::find(choices.begin(), choices.end(), default_value) == choices.end())
    throw std::invalid_argument("config field \"" + name + "\": default \"" + default_value + "\" is not a choice");
  ConfigField field{std::move(name), FieldType::enumeration, std::move(description), std::move(default_value)};
  field.choices = std::move(choices);
  return add(std::move(field));
}
ConfigMap& ConfigMap::object(std::string name, std::string description) {
  return add({std::move(name), FieldType::object, std::move(description), json::object()});
}

ConfigMap& ConfigMap::required() {
  last().required = true;
  last().default_value = nullptr;
  return *this;
}
ConfigMap& ConfigMap::range(std::optional<double> minimum, std::optional<double> maximum) {
  last().minimum = minimum;
  last().maximum = maximum;
  return *this;
}
ConfigMap& ConfigMap::pattern(std::string regex) {
  std::regex check(regex);  // throws std::regex_error on a bad pattern, at declaration
  last().pattern = std::move(regex);
  return *this;
}
ConfigMap& ConfigMap::sensitive() {
  last().sensitive = true;
  return *this;
}

const ConfigField* ConfigMap::find(std::string_view name) const noexcept {
  for (const auto& field : fields_)
    if (field.name == name) return &field;
  return nullptr;
}

namespace {

// Checks one value against its field; returns the applied value, or null after an issue.
json apply_field(const ConfigField& field, const json& value, const std::string& path, std::vector<ConfigIssue>& issues) {
  auto wrong = [&](std::string message, std::string fix = {}) {
    issues.push_back({path, std::move(message), fix.empty() ? "write " + example_of(field) : std::move(fix)});
    return json();
  };
  auto check_range = [&](double number) -> bool {
    if ((field.minimum && number < *field.minimum) || (field.maximum && number > *field.maximum)) {
      std::string bounds;
      if (field.minimum && field.maximum) bounds = "between " + number_text(*field.minimum) + " and " + number_text(*field.maximum);
      else if (field.minimum) bounds = "at least " + number_text(*field.minimum);
      else bounds = "at most " + number_text(*field.maximum);
      wrong(show(value) + " is out of range", "use a value " + bounds);
      return false;
    }
    return true;
  };
  switch (field.type) {
    case FieldType::string:
    case FieldType::enumeration: {
      if (!value.is_string()) return wrong("expected " + std::string(field.type == FieldType::string ? "a string" : "one of the choices") + ", got " + show(value));
      const auto& text = value.get_ref<const std::string&>();
      if (field.type == FieldType::enumeration &&
          std::find(field.choices.begin(), field.choices.end(), text) == field.choices.end()) {
        auto near = did_you_mean(text, field.choices);
        return wrong(show(value) + " is not a valid choice" + (near.empty() ? "" : "; did you mean \"" + near + "\"?"));
      }
      if (!field.pattern.empty() && !std::regex_match(text, std::regex(field.pattern)))
        return wrong(show(value) + " does not match the pattern " + field.pattern,
                     "write a value matching " + field.pattern);
      return value;
    }
    case FieldType::integer: {
      if (!value.is_number_integer()) return wrong("expected a whole number, got " + show(value));
      if (!check_range(value.get<double>())) return json();
      return value;
    }
    case FieldType::number: {
      if (!value.is_number()) return wrong("expected a number, got " + show(value));
      if (!check_range(value.get<double>())) return json();
      return value.get<double>();
    }
    case FieldType::boolean:
      if (!value.is_boolean()) return wrong("expected true or false, got " + show(value));
      return value;
    case FieldType::duration: {
      if (!value.is_string()) return wrong("expected a duration with a unit, got " + show(value));
      auto parsed = parse_duration(value.get_ref<const std::string&>());
      if (!parsed) return wrong(show(value) + " is not a duration");
      auto millis = parsed->count();
      if ((field.minimum && millis < *field.minimum) || (field.maximum && millis > *field.maximum)) {
        wrong(show(value) + " is out of range", "use a duration between " + std::to_string(static_cast<std::int64_t>(field.minimum.value_or(0))) +
                                                    "ms and " + std::to_string(static_cast<std::int64_t>(field.maximum.value_or(1e15))) + "ms");
        return json();
      }
      return millis;
    }
    case FieldType::string_list: {
      if (!value.is_array()) return wrong("expected a list of strings, got " + show(value));
      for (std::size_t i = 0; i < value.size(); ++i)
        if (!value[i].is_string()) {
          issues.push_back({path + "[" + std::to_string(i) + "]", "expected a string, got " + show(value[i]), "quote the value"});
          return json();
        }
      return value;
    }
    case FieldType::string_map: {
      if (!value.is_object()) return wrong("expected a map of string values, got " + show(value));
      for (const auto& [key, item] : value.items())
        if (!item.is_string()) {
          issues.push_back({path + "." + key, "expected a string, got " + show(item), "quote the value"});
          return json();
        }
      return value;
    }
    case FieldType::object:
      if (!value.is_object()) return wrong("expected a map, got " + show(value));
      return value;
  }
  return value;
}

}  // namespace

json ConfigMap::apply(const json& input, std::string_view path_prefix, std::vector<ConfigIssue>& issues) const {
  json out = json::object();
  if (!input.is_null() && !input.is_object()) {
    issues.push_back({std::string(path_prefix), "expected a map of settings, got " + show(input),
                      "write key: value pairs under this key"});
    return out;
  }
  std::vector<std::string> names;
  for (const auto& field : fields_) names.push_back(field.name);
  if (input.is_object()) {
    for (const auto& [key, value] : input.items()) {
      if (find(key)) continue;
      auto near = did_you_mean(key, names);
      std::string fix;
      if (!near.empty()) fix = "did you mean \"" + near + "\"?";
      else if (names.empty()) fix = "remove it: this takes no settings";
      else {
        fix = "remove it; known keys: ";
        for (std::size_t i = 0; i < names.size(); ++i) fix += (i ? ", " : "") + names[i];
      }
      issues.push_back({join_path(path_prefix, key), "unknown key \"" + key + "\"", fix});
    }
  }
  for (const auto& field : fields_) {
    auto path = join_path(path_prefix, field.name);
    const json* given = input.is_object() && input.contains(field.name) ? &input.at(field.name) : nullptr;
    if (!given || given->is_null()) {
      if (field.required) {
        issues.push_back({path, "required key \"" + field.name + "\" is missing", "add " + field.name + ": " + example_of(field)});
        continue;
      }
      out[field.name] = apply_field(field, field.default_value, path, issues);
      continue;
    }
    auto applied = apply_field(field, *given, path, issues);
    if (!applied.is_null()) out[field.name] = std::move(applied);
  }
  return out;
}

json ConfigMap::apply(const json& input, std::string_view path_prefix) const {
  std::vector<ConfigIssue> issues;
  auto out = apply(input, path_prefix, issues);
  if (!issues.empty()) throw ConfigError(std::move(issues));
  return out;
}

json ConfigMap::json_schema() const {
  json properties = json::object();
  json required = json::array();
  for (const auto& field : fields_) {
    json schema;
    switch (field.type) {
      case FieldType::string: schema = {{"type", "string"}}; break;
      case FieldType::integer: schema = {{"type", "integer"}}; break;
      case FieldType::number: schema = {{"type", "number"}}; break;
      case FieldType::boolean: schema = {{"type", "boolean"}}; break;
      case FieldType::duration:
        schema = {{"type", "string"}, {"pattern", "^([0-9]+(ms|s|m|h|d))+$"}};
        break;
      case FieldType::string_list: schema = {{"type", "array"}, {"items", {{"type", "string"}}}}; break;
      case FieldType::string_map:
        schema = {{"type", "object"}, {"additionalProperties", {{"type", "string"}}}};
        break;
      case FieldType::enumeration: schema = {{"type", "string"}, {"enum", field.choices}}; break;
      case FieldType::object: schema = {{"type", "object"}}; break;
    }
    if (!field.description.empty()) schema["description"] = field.description;
    if (!field.default_value.is_null()) schema["default"] = field.default_value;
    if (field.type != FieldType::duration) {
      if (field.minimum) schema["minimum"] = *field.minimum;
      if (field.maximum) schema["maximum"] = *field.maximum;
    }
    // JSON Schema patterns search; ours must match the whole value, so anchor them.
    if (!field.pattern.empty()) schema["pattern"] = "^(?:" + field.pattern + ")$";
    if (field.sensitive) schema["writeOnly"] = true;
    if (field.required) required.push_back(field.name);
    properties[field.name] = std::move(schema);
  }
  json out = {{"type", "object"}, {"properties", std::move(properties)}, {"additionalProperties", false}};
  if (!required.empty()) out["required"] = std::move(required);
  return out;
}

json ConfigMap::to_json() const {
  json out = json::array();
  for (const auto& field : fields_) {
    json item = {{"name", field.name}, {"type", type_name(field.type)}, {"description", field.description},
                 {"default", field.default_value}, {"required", field.required}, {"sensitive", field.sensitive}};
    if (field.minimum) item["minimum"] = *field.minimum;
    if (field.maximum) item["maximum"] = *field.maximum;
    if (!field.pattern.empty()) item["pattern"] = field.pattern;
    if (!field.choices.empty()) item["choices"] = field.choices;
    out.push_back(std::move(item));
  }
  return out;
}

ConfigMap ConfigMap::from_json(const json& serialised) {
  if (!serialised.is_array()) throw std::invalid_argument("a serialised config map is a JSON array of fields");
  ConfigMap map;
  for (const auto& item : serialised) {
    ConfigField field;
    field.name = item.at("name").get<std::string>();
    field.type = type_from_name(item.at("type").get<std::string>());
    field.description = item.value("description", "");
    field.default_value = item.value("default", json());
    field.required = item.value("required", false);
    field.sensitive = item.value("sensitive", false);
    if (item.contains("minimum")) field.minimum = item["minimum"].get<double>();
    if (item.contains("maximum")) field.maximum = item["maximum"].get<double>();
    field.pattern = item.value("pattern", "");
    if (!field.pattern.empty()) std::regex check(field.pattern);
    if (item.contains("choices")) field.choices = item["choices"].get<std::vector<std::string>>();
    if (field.name.empty()) throw std::invalid_argument("a config field has an empty name");
    map.add(std::move(field));
  }
  return map;
}

}  // namespace synthorg
