#include "router.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

#include <boost/container/small_vector.hpp>

namespace synthorg::http_api {
namespace {

bool is_param(const std::string& segment) { return segment.size() > 2 && segment.front() == '{' && segment.back() == '}'; }
// {*name}: the rest of the path.
bool is_tail(const std::string& segment) { return is_param(segment) && segment[1] == '*'; }
std::string param_name(const std::string& segment) { return segment.substr(is_tail(segment) ? 2 : 1, segment.size() - (is_tail(segment) ? 3 : 2)); }

bool valid_segment(const std::string& segment) {
  if (is_param(segment)) {
    auto name = param_name(segment);
    if (name.empty()) return false;
    return std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
  }
  return !segment.empty() && std::all_of(segment.begin(), segment.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Literal segments win over parameters, so /a/me beats /a/{id} whatever the mount order.
int specificity(const std::vector<std::string>& segments) {
  int score = 0;
  for (const auto& segment : segments) score = score * 2 + (is_param(segment) ? 0 : 1);
  return score;
}

}  // namespace

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> segments;
  std::size_t start = 1;
  if (path.empty() || path.front() != '/') return {"\x01"};  // matches nothing
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    segments.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  if (segments.size() == 1 && segments.front().empty()) segments.clear();  // "/"
  return segments;
}

Token Router::add(RouteSpec route) {
  static const std::set<std::string> methods{"GET", "POST", "PUT", "DELETE", "PATCH"};
  if (!methods.contains(route.method)) throw std::invalid_argument("route method '" + route.method + "' is not one of GET, POST, PUT, DELETE, PATCH");
  auto segments = split_path(route.pattern);
  for (const auto& segment : segments)
    if (!valid_segment(segment))
      throw std::invalid_argument("route pattern '" + route.pattern + "' has a bad segment '" + segment + "'");
  for (std::size_t i = 0; i + 1 < segments.size(); ++i)
    if (is_tail(segments[i]))
      throw std::invalid_argument("route pattern '" + route.pattern + "': {*" + param_name(segments[i]) + "} must be the last segment");
  if (!route.handler == !route.proxy)
    throw std::invalid_argument("route " + route.method + " " + route.pattern + " needs exactly one of a handler and a proxy resolver");
  if (route.access == Access::role && route.role != "viewer" && route.role != "operator" && route.role != "admin")
    throw std::invalid_argument("route " + route.pattern + ": role must be viewer, operator or admin");
  if (wrapper_) wrapper_(route);
  auto shared = std::make_shared<const RouteSpec>(std::move(route));
  {
    std::unique_lock lock(mutex_);
    for (const auto& entry : entries_)
      if (entry.route->method == shared->method && entry.segments == segments)
        throw std::invalid_argument("route " + shared->method + " " + shared->pattern + " is already mounted");
    entries_.push_back({segments, shared});
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const Entry& a, const Entry& b) { return specificity(a.segments) > specificity(b.segments); });
  }
  std::weak_ptr<Router> self = weak_from_this();
  return Token([self, shared] {
    if (auto router = self.lock()) {
      std::unique_lock lock(router->mutex_);
      std::erase_if(router->entries_, [&](const Entry& entry) { return entry.route == shared; });
    }
  });
}

Token Router::add_schema(std::string name, nlohmann::json schema) {
  {
    std::unique_lock lock(mutex_);
    if (schemas_.contains(name)) throw std::invalid_argument("OpenAPI schema '" + name + "' is already defined");
    schemas_[name] = std::move(schema);
  }
  std::weak_ptr<Router> self = weak_from_this();
  return Token([self, name] {
    if (auto router = self.lock()) {
      std::unique_lock lock(router->mutex_);
      router->schemas_.erase(name);
    }
  });
}

Match Router::match(std::string_view method, std::string_view path) const {
  // Views into `path`, not strings: matching runs for every request and allocated a vector of
  // strings each time.
  boost::container::small_vector<std::string_view, 16> segments;
  if (path.empty() || path.front() != '/') return {};
  for (std::size_t start = 1; start <= path.size();) {
    auto end = std::min(path.find('/', start), path.size());
    segments.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  if (segments.size() == 1 && segments.front().empty()) segments.clear();  // "/"

  Match result;
  std::shared_lock lock(mutex_);
  for (const auto& entry : entries_) {
    bool tail = !entry.segments.empty() && is_tail(entry.segments.back());
    auto fixed = entry.segments.size() - (tail ? 1 : 0);
    if (tail ? segments.size() < fixed : segments.size() != fixed) continue;
    bool same = true;
    for (std::size_t i = 0; i < fixed && same; ++i)
      same = is_param(entry.segments[i]) ? !segments[i].empty() : entry.segments[i] == segments[i];
    if (!same) continue;
    if (entry.route->method != method && !(method == "HEAD" && entry.route->method == "GET")) {
      result.allowed_methods.push_back(entry.route->method);
      continue;
    }
    // The most specific match wins (entries are sorted so); the methods allowed elsewhere only
    // matter for a 405, which a match rules out.
    result.allowed_methods.clear();
    result.route = entry.route;
    result.pattern = entry.route->pattern;
    for (std::size_t i = 0; i < fixed; ++i)
      if (is_param(entry.segments[i])) result.params[param_name(entry.segments[i])] = segments[i];
    if (tail) {
      auto rest_start = fixed == 0 ? path.substr(1) : path.substr(segments[fixed - 1].data() + segments[fixed - 1].size() - path.data());
      if (!rest_start.empty() && rest_start.front() == '/' && fixed > 0) rest_start.remove_prefix(1);
      result.params[param_name(entry.segments.back())] = std::string(rest_start);
    }
    break;
  }
  return result;
}

nlohmann::json Router::openapi(std::string_view version) const {
  using nlohmann::json;
  json problem = {{"type", "object"},
                  {"required", {"type", "code", "status", "detail"}},
                  {"properties",
                   {{"type", {{"type", "string"}}},
                    {"code", {{"type", "string"}}},
                    {"title", {{"type", "string"}}},
                    {"status", {{"type", "integer"}}},
                    {"detail", {{"type", "string"}}}}}};
  json document = {
      {"openapi", "3.1.0"},
      {"info", {{"title", "SynthOrg Kernel API"}, {"version", version}}},
      {"paths", json::object()},
      {"components",
       {{"schemas", {{"Problem", problem}}},
        {"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}, {"bearerFormat", "JWT"}}},
          {"cookie", {{"type", "apiKey"}, {"in", "cookie"}, {"name", std::string(session_cookie)}}}}}}}};
  std::shared_lock lock(mutex_);
  for (const auto& [name, schema] : schemas_) document["components"]["schemas"][name] = schema;
  for (const auto& entry : entries_) {
    const auto& route = *entry.route;
    json operation = route.openapi.is_object() ? route.openapi : json::object();
    if (!operation.contains("responses")) operation["responses"] = json::object();
    if (operation["responses"].empty()) operation["responses"]["200"] = {{"description", "OK"}};
    operation["responses"]["default"] = {
        {"description", "A problem (RFC 9457)"},
        {"content", {{"application/problem+json", {{"schema", {{"$ref", "#/components/schemas/Problem"}}}}}}}};
    // Who may call it, for readers of the document (an OpenAPI extension field).
    operation["x-synthorg-access"] = route.access == Access::open        ? std::string("open")
                                     : route.access == Access::signed_in ? std::string("signed in")
                                                                         : "role " + route.role;
    if (route.access != Access::open) operation["security"] = json::array({{{"bearer", json::array()}}, {{"cookie", json::array()}}});
    json parameters = operation.value("parameters", json::array());
    std::string path;  // OpenAPI has no rest-of-path template: {*name} reads {name}, described
    for (const auto& segment : entry.segments) {
      path += "/" + (is_param(segment) ? "{" + param_name(segment) + "}" : segment);
      if (is_param(segment))
        parameters.push_back({{"name", param_name(segment)},
                              {"in", "path"},
                              {"required", true},
                              {"schema", {{"type", "string"}}}});
      if (is_tail(segment)) parameters.back()["description"] = "the rest of the path, slashes included";
    }
    if (path.empty()) path = "/";
    if (!parameters.empty()) operation["parameters"] = parameters;
    std::string method = route.method;
    std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::tolower(c); });
    document["paths"][path][method] = operation;
  }
  return document;
}

std::size_t Router::size() const {
  std::shared_lock lock(mutex_);
  return entries_.size();
}

}  // namespace synthorg::http_api
