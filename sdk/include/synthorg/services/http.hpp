// HttpRouter: the one HTTP port, shared. Plugins mount routes on it instead of opening ports;
// http-api (Boost.Beast) serves them. Beast stays out of this header on purpose: plugins see
// plain request and response values.
//
// Handlers run on an I/O thread and must not block: hand database or orchestrator work to
// Executor::try_post_blocking and call the Responder from there when done.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/token.hpp"

namespace synthorg {

// The session cookie the auth plugin sets and http-api reads (and strips before proxying).
inline constexpr std::string_view session_cookie = "synthorg_session";

// Who is calling, as the Authenticator established it.
struct Principal {
  std::string subject;  // the user id ("sub")
  std::string role;     // admin, operator or viewer
  nlohmann::json claims = nlohmann::json::object();
};

struct HttpRequest {
  std::string method;  // upper case
  std::string path;    // without the query, percent-decoding left to the handler
  std::string query;   // after '?', raw
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::map<std::string, std::string, std::less<>> params;  // from {name} segments of the route
  std::string request_id;
  std::string remote_address;
  std::optional<Principal> principal;

  // The first header of that (lower-case) name, or empty.
  std::string_view header(std::string_view name) const;
  // A query parameter, percent-decoded; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
  // ?limit= as a page size from 1 to 1000, `fallback` when absent; throws HttpRequestError
  // (400 invalid_query) when it is anything else.
  std::size_t page_limit(std::size_t fallback = 100) const;
};

// Thrown by a handler (before it responds) to refuse what was sent: the server answers with
// problem(status, code, what()).
class HttpRequestError : public std::runtime_error {
 public:
  HttpRequestError(int status, std::string code, const std::string& detail)
      : std::runtime_error(detail), status_(status), code_(std::move(code)) {}
  int status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }

 private:
  int status_;
  std::string code_;
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  static HttpResponse json(int status, const nlohmann::json& body);
  // RFC 9457 problem details (application/problem+json) with a stable machine-readable code.
  static HttpResponse problem(int status, std::string_view code, std::string_view detail,
                              nlohmann::json extra = nlohmann::json::object());
  HttpResponse& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

// JSON from a client (a request body, a WebSocket message, a token's payload): discarded when it
// is not JSON, or when it nests deeper than `max_depth`. nlohmann parses deep input without
// recursing, but copying or dumping it recurses once a level: a body of a million '[' would
// overflow the stack of whatever thread touched it next. Every parse of client JSON goes here.
inline constexpr int max_client_json_depth = 64;
nlohmann::json parse_client_json(std::string_view text, int max_depth = max_client_json_depth);

// Call exactly once, from any thread.
using Responder = std::function<void(HttpResponse)>;
using HttpHandler = std::function<void(HttpRequest& request, Responder respond)>;

// Where a proxy route forwards the request it matched. http-api streams the request and the
// answer (WebSocket upgrades too), without the caller's credentials (Authorization and the
// session cookie), with X-Forwarded-* added.
struct ProxyTarget {
  std::string host;  // an IP address: nothing is looked up on the I/O thread
  std::uint16_t port = 0;
  std::string target;  // path and query sent upstream, e.g. "/index.html?x=1"
  std::vector<std::pair<std::string, std::string>> headers;  // set on the forwarded request
  // Called once, on an I/O thread, when the exchange ends: the upstream's status, or 0 when it
  // could not be reached or broke off before answering. Must not block.
  std::function<void(int status)> done;
};

// A proxy route's answer: a response of its own (refusal, error), or where to forward.
using ProxyDecision = std::variant<HttpResponse, ProxyTarget>;
using ProxyDecide = std::function<void(ProxyDecision)>;  // call exactly once, from any thread
// Sees the request head only (the body is streamed later, once a target is chosen).
using ProxyResolver = std::function<void(HttpRequest& request, ProxyDecide decide)>;

enum class Access {
  open,       // anyone, no credentials needed
  signed_in,  // any authenticated user
  role,       // a user whose role is at least RouteSpec::role (viewer < operator < admin)
};

struct RouteSpec {
  std::string method;   // GET, POST, PUT, DELETE, PATCH
  // "/api/v1/settings/{ns}/{key}": literal segments and {name} parameters; a last segment
  // {*name} takes the rest of the path, slashes included (possibly empty).
  std::string pattern;
  Access access = Access::signed_in;
  std::string role;          // for Access::role
  nlohmann::json openapi;    // the OpenAPI 3.1 Operation object for this route
  HttpHandler handler;  // exactly one of handler and proxy
  ProxyResolver proxy;  // a streaming reverse proxy route: no body is read before it decides
};

class HttpRouter {
 public:
  static constexpr std::string_view service_id = "synthorg.HttpRouter/1";
  virtual ~HttpRouter() = default;

  // Mounts a route; the token unmounts it. Throws std::invalid_argument for a bad pattern or a
  // route that is already mounted.
  virtual Token add(RouteSpec route) = 0;
  // Adds a named schema to components/schemas of the OpenAPI document.
  virtual Token add_schema(std::string name, nlohmann::json schema) = 0;
};

// Provided by http-api: hands a request to the routes on its HttpRouter from another plugin in
// the same kernel, with no network hop (the web plugin's /api/*). The request is matched, gated
// (Authenticator) and answered exactly as if it had arrived on the API port, 404/405 included;
// `respond` is called exactly once, from any thread. A WebSocket upgrade cannot be carried by a
// value: connect to endpoint() for those.
class HttpDispatcher {
 public:
  static constexpr std::string_view service_id = "synthorg.HttpDispatcher/1";
  virtual ~HttpDispatcher() = default;

  virtual void dispatch(HttpRequest request, Responder respond) = 0;
  // True when `method path` is a proxy route: its body and answer stream, so it cannot travel
  // as a value through dispatch(); send it to endpoint() instead, as upgrades are.
  virtual bool streams(std::string_view method, std::string_view path) const = 0;
  // Where the API port can be reached from this process: its address (loopback when it listens
  // on every address) and port.
  virtual std::pair<std::string, unsigned short> endpoint() const = 0;
};

// Provided by the auth plugin; http-api asks it about every request to a protected route.
class Authenticator {
 public:
  static constexpr std::string_view service_id = "synthorg.Authenticator/1";
  virtual ~Authenticator() = default;

  // From the Authorization bearer header or the session cookie. Never blocks (no database):
  // a signature and claims check, and an in-memory revocation lookup.
  virtual std::optional<Principal> authenticate(const HttpRequest& request) const = 0;
};

// viewer < operator < admin; an unknown role ranks below viewer.
bool role_at_least(std::string_view role, std::string_view required) noexcept;

}  // namespace synthorg
