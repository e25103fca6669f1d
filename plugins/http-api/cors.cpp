#include "cors.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace synthorg::http_api {
namespace {

// What the API's routes read from a browser's request: a preflight asking for anything else is
// refused, naming it, rather than allowed and ignored.
constexpr std::array kAllowedHeaders{std::string_view("authorization"), std::string_view("content-type"),
                                     std::string_view("if-match"),      std::string_view("if-none-match"),
                                     std::string_view("x-request-id"),  std::string_view("traceparent"),
                                     std::string_view("tracestate")};
constexpr std::array kAllowedMethods{std::string_view("GET"), std::string_view("HEAD"),  std::string_view("POST"),
                                     std::string_view("PUT"), std::string_view("PATCH"), std::string_view("DELETE")};
// What a page may read from an answer beyond the CORS-safelisted ones.
constexpr std::string_view kExposedHeaders = "ETag, Location, Retry-After, WWW-Authenticate, X-Request-Id";
constexpr std::string_view kSetting = "api.cors_allowed_origins (SYNTHORG_API_CORS_ALLOWED_ORIGINS)";

std::string lowered(std::string_view text) {
  std::string out(text);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// scheme://host[:port] as a browser sends it: lower case, no default port.
std::string normalised(std::string_view origin) {
  auto out = lowered(origin);
  for (std::string_view suffix : {std::string_view(":80"), std::string_view(":443")}) {
    bool is_default = suffix == ":80" ? out.starts_with("http://") : out.starts_with("https://");
    if (is_default && out.ends_with(suffix)) out.resize(out.size() - suffix.size());
  }
  return out;
}

std::string_view trimmed(std::string_view text) {
  auto from = text.find_first_not_of(" \t");
  if (from == std::string_view::npos) return {};
  return text.substr(from, text.find_last_not_of(" \t") - from + 1);
}

}  // namespace

CorsPolicy::CorsPolicy(const nlohmann::json& origins) {
  for (const auto& item : origins) {
    const auto& origin = item.get_ref<const std::string&>();
    if (origin == "*") {
      any_ = true;
    } else {
      origins_.push_back(normalised(origin));
    }
  }
}

bool CorsPolicy::allowed(std::string_view origin) const {
  if (origin.empty()) return false;
  return any_ || std::ranges::find(origins_, origin) != origins_.end();
}

bool CorsPolicy::is_preflight(const HttpRequest& request) {
  return request.method == "OPTIONS" && !request.header("origin").empty() &&
         !request.header("access-control-request-method").empty();
}

HttpResponse CorsPolicy::preflight(const HttpRequest& request) const {
  auto origin = request.header("origin");
  auto refuse = [&](std::string detail) {
    auto response = HttpResponse::problem(403, "cors_refused", std::move(detail));
    if (!any_) response.header("vary", "Origin");
    return response;
  };
  if (!allowed(origin))
    return refuse(fmt::format("the origin {} may not call this API from a browser; to allow it, add it to {}",
                              origin, kSetting));
  auto method = request.header("access-control-request-method");
  if (std::ranges::find(kAllowedMethods, method) == kAllowedMethods.end())
    return refuse(fmt::format("the method {} is not served to browsers; the API's methods are {}", method,
                              fmt::join(kAllowedMethods, ", ")));
  std::string headers;
  auto requested = request.header("access-control-request-headers");
  for (std::size_t start = 0; start <= requested.size();) {
    auto end = std::min(requested.find(',', start), requested.size());
    auto name = lowered(trimmed(requested.substr(start, end - start)));
    start = end + 1;
    if (name.empty()) continue;
    if (std::ranges::find(kAllowedHeaders, name) == kAllowedHeaders.end())
      return refuse(fmt::format("the request header {} is not read by this API; the headers a browser may send are {}",
                                name, fmt::join(kAllowedHeaders, ", ")));
    headers += (headers.empty() ? "" : ", ") + name;
  }
  HttpResponse response;
  response.status = 204;
  decorate(origin, response);
  response.header("access-control-allow-methods", fmt::format("{}", fmt::join(kAllowedMethods, ", ")));
  if (!headers.empty()) response.header("access-control-allow-headers", std::move(headers));
  response.header("access-control-max-age", "600");
  if (!any_) response.header("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  return response;
}

void CorsPolicy::decorate(std::string_view origin, HttpResponse& response) const {
  if (empty()) return;
  if (!any_ && response.status != 204) response.header("vary", "Origin");
  if (!allowed(origin)) return;
  if (any_) {
    // Any origin: never with credentials (a browser refuses `*` with them, and a page from
    // anywhere must not act with a user's cookies).
    response.header("access-control-allow-origin", "*");
  } else {
    response.header("access-control-allow-origin", std::string(origin));
    response.header("access-control-allow-credentials", "true");
  }
  response.header("access-control-expose-headers", std::string(kExposedHeaders));
}

}  // namespace synthorg::http_api
