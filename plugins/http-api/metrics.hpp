// http-api's metric families, recorded through the Metrics service: the telemetry plugin's
// when it runs, else a registry of http-api's own (make_metrics_registry), so GET /metrics
// renders every family once, by one implementation, whichever plugins are loaded.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "synthorg/bus.hpp"
#include "synthorg/services/metrics.hpp"

namespace synthorg::http_api {

struct ServerStats;
struct WebSocketStats;

class RequestMetrics {
 public:
  explicit RequestMetrics(std::shared_ptr<Metrics> metrics) : metrics_(std::move(metrics)) {}

  void observe(std::string_view method, std::string_view pattern, int status, double seconds);
  // Connection and bus figures are kept elsewhere and read at scrape time.
  Token watch(const ServerStats& stats, const WebSocketStats& websocket, EventBus& bus);
  Metrics& metrics() { return *metrics_; }

 private:
  struct Series {
    std::shared_ptr<Counter> requests;
    std::shared_ptr<Histogram> duration;
  };
  // Transparent, so a lookup needs no key string: the series of a (method, route, status) are
  // looked up in the registry once, then found here per request.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept { return std::hash<std::string_view>{}(key); }
  };
  std::shared_ptr<Metrics> metrics_;
  std::mutex mutex_;
  std::unordered_map<std::string, Series, KeyHash, std::equal_to<>> series_;
};

}  // namespace synthorg::http_api
