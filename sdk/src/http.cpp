// The value types of the HttpRouter contract.
#include <charconv>
#include "synthorg/services/http.hpp"

#include <array>

namespace synthorg {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() &&
               hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

std::string_view HttpRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (key == name) return value;
  return {};
}

std::optional<std::string> HttpRequest::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    auto end = rest.find('&');
    auto pair = rest.substr(0, end);
    auto equals = pair.find('=');
    if (percent_decode(pair.substr(0, equals)) == name)
      return equals == std::string_view::npos ? std::string() : percent_decode(pair.substr(equals + 1));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return std::nullopt;
}

std::size_t HttpRequest::page_limit(std::size_t fallback) const {
  auto given = query_param("limit");
  if (!given) return fallback;
  std::size_t value = 0;
  auto [end, error] = std::from_chars(given->data(), given->data() + given->size(), value);
  if (error != std::errc() || end != given->data() + given->size() || value < 1 || value > 1000)
    throw HttpRequestError(400, "invalid_query", "limit must be a whole number from 1 to 1000");
  return value;
}

HttpResponse HttpResponse::json(int status, const nlohmann::json& body) {
  HttpResponse response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  response.headers.emplace_back("content-type", "application/json");
  return response;
}

HttpResponse HttpResponse::problem(int status, std::string_view code, std::string_view detail, nlohmann::json extra) {
  nlohmann::json body = std::move(extra);
  if (!body.is_object()) body = nlohmann::json::object();
  body["type"] = "https://synthorg.dev/problems/" + std::string(code);
  body["code"] = code;
  body["status"] = status;
  body["detail"] = detail;
  if (!body.contains("title")) body["title"] = std::string(code);
  auto response = json(status, body);
  response.headers.front().second = "application/problem+json";
  return response;
}

bool role_at_least(std::string_view role, std::string_view required) noexcept {
  constexpr std::array<std::string_view, 3> ranks{"viewer", "operator", "admin"};
  auto rank = [&](std::string_view name) {
    for (std::size_t i = 0; i < ranks.size(); ++i)
      if (ranks[i] == name) return static_cast<int>(i);
    return -1;
  };
  int have = rank(role), need = rank(required);
  return have >= 0 && need >= 0 && have >= need;
}

nlohmann::json parse_client_json(std::string_view text, int max_depth) {
  struct TooDeep {};
  try {
    return nlohmann::json::parse(
        text,
        [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          if (depth > max_depth) throw TooDeep{};  // abandons the parse before the tree grows
          return true;
        },
        false);
  } catch (const TooDeep&) {
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
}

}  // namespace synthorg
