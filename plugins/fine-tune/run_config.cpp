#include <cmath>

#include <fmt/format.h>

#include "options.hpp"
#include "synthorg/config_map.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;

// One number field: its limits and default. The same table gives validation and the schema.
struct NumberField {
  std::string_view name;
  bool integer;
  double minimum, maximum;
  bool exclusive_minimum, exclusive_maximum;
  double fallback;
  std::string_view description;
};

constexpr std::size_t max_options_bytes = 16 * 1024;

const std::array<NumberField, 4> fields = {{
    {"epochs", true, 1, 1000, false, false, 3, "Passes over the training data"},
    {"learning_rate", false, 0, 1, true, false, 2e-5, "Optimiser step size, above 0 and at most 1"},
    {"batch_size", true, 1, 4096, false, false, 16, "Examples per training step"},
    {"validation_split", false, 0, 1, false, true, 0.1, "Share of the data held out for evaluation, 0 to below 1"},
}};

[[noreturn]] void refuse(std::string_view field, const std::string& detail) {
  throw Problem(400, "invalid_run_config", fmt::format("{}: {}", field, detail), {{"field", field}});
}

std::string allowed(const NumberField& field) {
  return fmt::format("{} {} {} and {} {}", field.integer ? "a whole number" : "a number",
                     field.exclusive_minimum ? "above" : "from", field.minimum,
                     field.exclusive_maximum ? "below" : "at most", field.maximum);
}

}  // namespace

json parse_run_config(std::string_view body) {
  json given = body.empty() ? json::object() : parse_client_json(body);
  if (given.is_discarded() || !given.is_object())
    throw Problem(400, "invalid_body",
                  fmt::format("the body must be a JSON object such as {{\"epochs\": 3}}, nesting at most {} levels",
                              max_client_json_depth));
  std::vector<std::string> known = {"options"};
  for (const auto& field : fields) known.emplace_back(field.name);
  for (const auto& [key, value] : given.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    auto near = did_you_mean(key, known);
    refuse(key, "is not a run setting" + (near.empty() ? fmt::format(" (known: {})", fmt::join(known, ", "))
                                                       : fmt::format("; did you mean \"{}\"?", near)));
  }
  json config = json::object();
  for (const auto& field : fields) {
    if (!given.contains(field.name) || given[field.name].is_null()) {
      config[field.name] = field.integer ? json(static_cast<std::int64_t>(field.fallback)) : json(field.fallback);
      continue;
    }
    const auto& value = given[field.name];
    bool number = field.integer ? value.is_number_integer() : value.is_number();
    double x = number ? value.get<double>() : 0;
    bool low = field.exclusive_minimum ? x <= field.minimum : x < field.minimum;
    bool high = field.exclusive_maximum ? x >= field.maximum : x > field.maximum;
    if (!number || !std::isfinite(x) || low || high)
      refuse(field.name, fmt::format("{} is not allowed; give {}", value.dump(), allowed(field)));
    config[field.name] = value;
  }
  auto options = given.value("options", json::object());
  if (options.is_null()) options = json::object();
  if (!options.is_object()) refuse("options", "must be a JSON object, handed to every stage as is");
  if (options.dump().size() > max_options_bytes)
    refuse("options", fmt::format("is larger than {} bytes", max_options_bytes));
  config["options"] = options;
  return config;
}

json run_config_schema() {
  json properties = json::object();
  for (const auto& field : fields) {
    json schema = {{"type", field.integer ? "integer" : "number"}, {"description", field.description}};
    auto number = [&](double value) { return field.integer ? json(static_cast<std::int64_t>(value)) : json(value); };
    schema[field.exclusive_minimum ? "exclusiveMinimum" : "minimum"] = number(field.minimum);
    schema[field.exclusive_maximum ? "exclusiveMaximum" : "maximum"] = number(field.maximum);
    schema["default"] = number(field.fallback);
    properties[std::string(field.name)] = schema;
  }
  properties["options"] = {{"type", "object"},
                           {"description", "Free-form settings handed to every stage in its configuration"}};
  return {{"type", "object"}, {"additionalProperties", false}, {"properties", properties}};
}

}  // namespace synthorg::fine_tune
