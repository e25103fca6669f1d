// The route table behind the HttpRouter service: literal and {param} segments, matched per
// method, and the OpenAPI document assembled from every route's fragment.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

struct Match {
  std::shared_ptr<const RouteSpec> route;  // null when nothing matched
  std::map<std::string, std::string, std::less<>> params;
  std::vector<std::string> allowed_methods;  // when the path matched but the method did not
  std::string pattern;                        // for metrics labels
};

class Router final : public HttpRouter, public std::enable_shared_from_this<Router> {
 public:
  Token add(RouteSpec route) override;
  Token add_schema(std::string name, nlohmann::json schema) override;

  // Applied to every route mounted from now on (set before any route is), to replace its handler
  // or proxy resolver: tracing wraps each in a server span this way, without the server knowing.
  using Wrapper = std::function<void(RouteSpec& route)>;
  void wrap_routes(Wrapper wrapper) { wrapper_ = std::move(wrapper); }

  Match match(std::string_view method, std::string_view path) const;
  nlohmann::json openapi(std::string_view version) const;
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::string> segments;  // "{name}" for parameters
    std::shared_ptr<const RouteSpec> route;
  };
  mutable std::shared_mutex mutex_;
  std::vector<Entry> entries_;
  std::map<std::string, nlohmann::json> schemas_;
  Wrapper wrapper_;
};

std::vector<std::string> split_path(std::string_view path);

}  // namespace synthorg::http_api
