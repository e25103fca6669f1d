// http-api's metric families, recorded through the Metrics service: the telemetry plugin's
// when it runs, else a registry of http-api's own (make_metrics_registry), so GET /metrics
// renders every family once, by one implementation, whichever plugins are loaded.
#pragma once

#include <memory>
#include <string_view>

#include "synthorg/bus.hpp"
#include "synthorg/services/metrics.hpp"

namespace synthorg::http_api {

struct ServerStats;

class RequestMetrics {
 public:
  explicit RequestMetrics(std::shared_ptr<Metrics> metrics) : metrics_(std::move(metrics)) {}

  void observe(std::string_view method, std::string_view pattern, int status, double seconds);
  // Connection and bus figures are kept elsewhere and read at scrape time.
  Token watch(const ServerStats& stats, EventBus& bus);
  Metrics& metrics() { return *metrics_; }

 private:
  std::shared_ptr<Metrics> metrics_;
};

}  // namespace synthorg::http_api
