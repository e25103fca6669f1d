#include "metrics.hpp"

#include <fmt/format.h>

namespace synthorg::http_api {

std::string label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Metrics::observe(std::string_view method, std::string_view pattern, int status, double seconds) {
  // Unmatched paths share one label, so scanning for random URLs cannot grow the series.
  std::string route = pattern.empty() ? "unmatched" : std::string(pattern);
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(method), route, status}];
  auto& histogram = latency_[{std::string(method), route}];
  ++histogram.count;
  histogram.sum += seconds;
  for (std::size_t i = 0; i < buckets.size(); ++i)
    if (seconds <= buckets[i]) ++histogram.counts[i];
}

std::string Metrics::render() const {
  std::string out =
      "# HELP synthorg_http_requests_total HTTP requests answered, by method, route and status.\n"
      "# TYPE synthorg_http_requests_total counter\n";
  std::lock_guard lock(mutex_);
  for (const auto& [key, count] : requests_) {
    const auto& [method, route, status] = key;
    out += fmt::format("synthorg_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}\n", label(method),
                       label(route), status, count);
  }
  out +=
      "# HELP synthorg_http_request_duration_seconds Time from a whole request to its response written.\n"
      "# TYPE synthorg_http_request_duration_seconds histogram\n";
  for (const auto& [key, histogram] : latency_) {
    auto labels = fmt::format("method=\"{}\",route=\"{}\"", label(key.first), label(key.second));
    for (std::size_t i = 0; i < buckets.size(); ++i)
      out += fmt::format("synthorg_http_request_duration_seconds_bucket{{{},le=\"{}\"}} {}\n", labels, buckets[i],
                         histogram.counts[i]);
    out += fmt::format("synthorg_http_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n", labels, histogram.count);
    out += fmt::format("synthorg_http_request_duration_seconds_sum{{{}}} {}\n", labels, histogram.sum);
    out += fmt::format("synthorg_http_request_duration_seconds_count{{{}}} {}\n", labels, histogram.count);
  }
  return out;
}

}  // namespace synthorg::http_api
