// Small builders for the OpenAPI fragments a plugin gives with each route (RouteSpec::openapi),
// so every plugin describes answers the same way. Header-only.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace synthorg::openapi {

// A reference to a schema in components/schemas (HttpRouter::add_schema; "Problem" is always there).
inline nlohmann::json ref(std::string_view schema) {
  return {{"$ref", "#/components/schemas/" + std::string(schema)}};
}

// An application/json answer with that schema.
inline nlohmann::json json_response(std::string description, nlohmann::json schema) {
  return {{"description", std::move(description)},
          {"content", {{"application/json", {{"schema", std::move(schema)}}}}}};
}

// An application/problem+json answer (RFC 9457).
inline nlohmann::json problem_response(std::string description) {
  return {{"description", std::move(description)},
          {"content", {{"application/problem+json", {{"schema", ref("Problem")}}}}}};
}

}  // namespace synthorg::openapi
