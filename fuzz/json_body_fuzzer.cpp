// libFuzzer target: arbitrary bytes as a JSON request body through the validation a route runs
// before it does any work. First as the body of POST /api/v1/fine-tune/runs through
// parse_run_config (plugins/fine-tune/run_config.cpp): only its Problem(400) may come out, which
// the route answers as problem+json, never the JSON library's exceptions or another one; a config
// it accepts holds exactly the five settings, each within its documented range, options at most
// 16 KiB, and parses again to itself. Then, for the auth routes (whose body reading lives in their
// handlers, next to the Store), the bytes and a body's "username" and "role" strings through the
// pure rules they apply, normalise_username and valid_role (plugins/auth/users.cpp): a name comes
// out only as 1 to 64 of [a-z0-9._@-] starting with a letter or digit, the input lower-cased.
#include <cctype>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "options.hpp"
#include "synthorg/services/http.hpp"
#include "users.hpp"

namespace {

using nlohmann::json;

bool within(const json& value, bool integer, double low, double high, bool above, bool below) {
  if (integer ? !value.is_number_integer() : !value.is_number()) return false;
  auto x = value.get<double>();
  return std::isfinite(x) && (above ? x > low : x >= low) && (below ? x < high : x <= high);
}

std::optional<json> run_config(std::string_view body) {
  try {
    return synthorg::fine_tune::parse_run_config(body);
  } catch (const synthorg::fine_tune::Problem& e) {
    if (e.status != 400 || (e.code != "invalid_body" && e.code != "invalid_run_config")) __builtin_trap();
    if (std::string_view(e.what()).empty()) __builtin_trap();
    if (e.code == "invalid_run_config" && !e.extra.value("field", json()).is_string()) __builtin_trap();
    if (synthorg::HttpResponse::problem(e.status, e.code, e.what(), e.extra).body.empty()) __builtin_trap();
    return std::nullopt;
  }
}

void check_run_config(std::string_view body, const json& given) {
  auto config = run_config(body);
  if (!config) return;
  if (!config->is_object() || config->size() != 5) __builtin_trap();
  const auto& c = *config;
  if (!within(c.at("epochs"), true, 1, 1000, false, false) ||
      !within(c.at("learning_rate"), false, 0, 1, true, false) ||
      !within(c.at("batch_size"), true, 1, 4096, false, false) ||
      !within(c.at("validation_split"), false, 0, 1, false, true))
    __builtin_trap();
  if (!c.at("options").is_object() || c.at("options").dump().size() > 16 * 1024) __builtin_trap();
  for (const auto& [key, value] : given.items())
    if (!value.is_null() && c.at(key) != value) __builtin_trap();
  if (run_config(c.dump()) != c) __builtin_trap();
}

void check_username(std::string_view given) {
  auto name = synthorg::auth::normalise_username(given);
  bool rule = !given.empty() && given.size() <= 64 && std::isalnum(static_cast<unsigned char>(given.front()));
  for (char c : given)
    rule = rule && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '@' || c == '-') &&
           static_cast<unsigned char>(c) < 0x80;
  if (name.has_value() != rule) __builtin_trap();
  if (!name) return;
  if (name->size() != given.size()) __builtin_trap();
  for (std::size_t i = 0; i < given.size(); ++i)
    if ((*name)[i] != std::tolower(static_cast<unsigned char>(given[i]))) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  static const json none = json::object();
  auto body = json::parse(input, nullptr, false);
  check_run_config(input, body.is_object() ? body : none);  // by reference: a copy recurses as deep as the body
  check_username(input);
  if (!body.is_object()) return 0;
  if (auto name = body.find("username"); name != body.end() && name->is_string())
    check_username(name->get_ref<const std::string&>());
  if (auto role = body.find("role"); role != body.end() && role->is_string()) {
    const auto& text = role->get_ref<const std::string&>();
    if (synthorg::auth::valid_role(text) != (text == "admin" || text == "operator" || text == "viewer"))
      __builtin_trap();
  }
  return 0;
}
