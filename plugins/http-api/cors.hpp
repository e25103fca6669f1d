// Cross-origin access to the API from browsers on other origins (the setting
// api.cors_allowed_origins, SYNTHORG_API_CORS_ALLOWED_ORIGINS): the Fetch standard's CORS
// protocol, with exact origin matching. A pure policy: the server asks it for preflight answers
// and for the headers of ordinary answers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

// What each item of the setting must look like: `*`, or scheme://host[:port] with no path.
inline constexpr std::string_view kOriginPattern =
    R"(\*|[Hh][Tt][Tt][Pp][Ss]?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?)";

class CorsPolicy {
 public:
  CorsPolicy() = default;
  // From the setting's value (a list the Settings service has already checked against
  // kOriginPattern). Scheme and host are compared without case and a default port (:80 for
  // http, :443 for https) is dropped, as browsers serialise an Origin.
  explicit CorsPolicy(const nlohmann::json& origins);

  bool allows_any_origin() const noexcept { return any_; }
  bool empty() const noexcept { return !any_ && origins_.empty(); }

  // A browser's preflight: OPTIONS with Origin and Access-Control-Request-Method.
  static bool is_preflight(const HttpRequest& request);
  // The answer to a preflight: 204 with the Access-Control-Allow-* headers, or 403 saying which
  // of the origin, the method or a header is not allowed and how to allow it.
  HttpResponse preflight(const HttpRequest& request) const;
  // Adds the CORS headers of an ordinary answer to a request from `origin` (empty: none was sent).
  void decorate(std::string_view origin, HttpResponse& response) const;

 private:
  bool allowed(std::string_view origin) const;

  bool any_ = false;
  std::vector<std::string> origins_;  // normalised
};

}  // namespace synthorg::http_api
