// Request counters and latency histograms per route, in the Prometheus text format.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace synthorg::http_api {

class Metrics {
 public:
  static constexpr std::array<double, 11> buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};

  void observe(std::string_view method, std::string_view pattern, int status, double seconds);
  // The exposition text for the http_* families; others append their own.
  std::string render() const;

 private:
  struct Histogram {
    std::array<std::uint64_t, buckets.size()> counts{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;  // method, route, status
  std::map<std::pair<std::string, std::string>, Histogram> latency_;             // method, route
};

// A label value escaped as the exposition format requires.
std::string label(std::string_view value);

}  // namespace synthorg::http_api
