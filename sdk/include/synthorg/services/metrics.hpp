// Metrics: counters, gauges and histograms with labels, rendered once for GET /metrics in the
// Prometheus text format (0.0.4). The telemetry plugin provides it (with process metrics);
// without it http-api keeps a registry of its own from make_metrics_registry(), so /metrics
// works either way and every family is rendered by the same code.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "synthorg/token.hpp"

namespace synthorg {

// Label name → value, in the family's declared order.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Handles are cheap to call from any thread and stay valid while the Metrics service lives:
// look one up once (or per label set) and keep it rather than looking it up per event.
class Counter {
 public:
  virtual ~Counter() = default;
  virtual void add(double value = 1) noexcept = 0;  // negative values are ignored
};

class Gauge {
 public:
  virtual ~Gauge() = default;
  virtual void set(double value) noexcept = 0;
  virtual void add(double value) noexcept = 0;
};

class Histogram {
 public:
  virtual ~Histogram() = default;
  virtual void observe(double value) noexcept = 0;
};

class Metrics {
 public:
  static constexpr std::string_view service_id = "synthorg.Metrics/1";
  virtual ~Metrics() = default;

  // The series `name` + `labels`, created on first use. Names follow Prometheus
  // ([a-zA-Z_:][a-zA-Z0-9_:]*), label names [a-zA-Z_][a-zA-Z0-9_]*. Asking again with the same
  // name returns the same family; another type, or other label names, for a name in use throws
  // std::invalid_argument. `help` and `buckets` are taken from the first declaration.
  virtual std::shared_ptr<Counter> counter(std::string_view name, std::string_view help,
                                           const MetricLabels& labels = {}) = 0;
  virtual std::shared_ptr<Gauge> gauge(std::string_view name, std::string_view help,
                                       const MetricLabels& labels = {}) = 0;
  // `buckets`: upper bounds, increasing; empty gives default_buckets().
  virtual std::shared_ptr<Histogram> histogram(std::string_view name, std::string_view help,
                                               const MetricLabels& labels = {},
                                               std::vector<double> buckets = {}) = 0;

  // Called (no lock held) before every render, to set gauges whose values are read rather than
  // counted: open connections, resident memory. The token removes it.
  virtual Token add_collector(std::function<void()> collect) = 0;

  // Every family, once, in the text exposition format.
  virtual std::string render() = 0;

  // Seconds, from 0.5 ms to 5 s: request latencies.
  static std::vector<double> default_buckets() {
    return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
  }
};

// The SDK's registry behind Metrics: one implementation for the telemetry plugin and for
// http-api's fallback.
std::shared_ptr<Metrics> make_metrics_registry();

}  // namespace synthorg
