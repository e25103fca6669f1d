#include "metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "server.hpp"
#include "websocket.hpp"

namespace synthorg::http_api {

void RequestMetrics::observe(std::string_view method, std::string_view pattern, int status, double seconds) {
  // Unmatched paths share one label, so scanning for random URLs cannot grow the series.
  std::string_view route = pattern.empty() ? "unmatched" : pattern;
  // Likewise any method token a client makes up.
  static constexpr std::string_view known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  if (std::find(std::begin(known), std::end(known), method) == std::end(known)) method = "other";
  // The series key "METHOD route status", built without a format string: this runs per request.
  char key[256];
  std::size_t length = 0;
  auto put = [&](std::string_view part) {
    auto n = std::min(part.size(), sizeof key - 8 - length);  // room left for " " and the status
    std::memcpy(key + length, part.data(), n);
    length += n;
  };
  put(method);
  put(" ");
  put(route);
  key[length++] = ' ';
  length = static_cast<std::size_t>(std::to_chars(key + length, key + sizeof key, status).ptr - key);
  auto key_view = std::string_view(key, length);
  std::lock_guard lock(mutex_);
  auto found = series_.find(key_view);
  if (found == series_.end()) {
    Series series{
        metrics_->counter("synthorg_http_requests_total", "HTTP requests answered, by method, route and status.",
                          {{"method", std::string(method)}, {"route", std::string(route)}, {"status", std::to_string(status)}}),
        metrics_->histogram("synthorg_http_request_duration_seconds", "Time from a whole request to its response written.",
                            {{"method", std::string(method)}, {"route", std::string(route)}})};
    found = series_.emplace(std::string(key_view), std::move(series)).first;
  }
  found->second.requests->add();
  found->second.duration->observe(seconds);
}

Token RequestMetrics::watch(const ServerStats& stats, const WebSocketStats& websocket, EventBus& bus) {
  auto open = metrics_->gauge("synthorg_http_connections_open", "Open HTTP connections.");
  auto ws_clients = metrics_->gauge("synthorg_ws_clients", "Open WebSocket connections on /api/v1/ws.");
  auto ws_frames = metrics_->counter("synthorg_ws_frames_sent_total", "WebSocket messages written to clients.");
  auto ws_dropped = metrics_->counter("synthorg_ws_slow_clients_dropped_total",
                                      "WebSocket clients closed with 1008 for not reading their events in time.");
  auto refused = metrics_->counter("synthorg_http_connections_refused_total",
                                   "Connections refused at the connection limit.");
  auto published = metrics_->counter("synthorg_bus_events_published_total", "Events published on the bus.");
  auto delivered = metrics_->counter("synthorg_bus_events_delivered_total", "Event deliveries to subscribers.");
  auto dropped = metrics_->counter("synthorg_bus_events_dropped_total", "Deliveries dropped at a full subscriber queue.");
  // Counters only go up: each scrape adds what the source counted since the last one, so a
  // restarted http-api (whose stats start again at 0) continues the series instead of resetting it.
  struct Last {
    std::mutex mutex;
    std::uint64_t refused = 0, published = 0, delivered = 0, dropped = 0, ws_frames = 0, ws_dropped = 0;
  };
  auto last = std::make_shared<Last>();
  auto since = [](std::uint64_t now, std::uint64_t& before) {
    auto delta = now >= before ? now - before : now;
    before = now;
    return static_cast<double>(delta);
  };
  return metrics_->add_collector([=, &stats, &websocket, &bus] {
    open->set(static_cast<double>(stats.connections_open.load()));
    ws_clients->set(static_cast<double>(websocket.clients.load()));
    auto figures = bus.stats();
    std::lock_guard lock(last->mutex);
    refused->add(since(stats.connections_refused.load(), last->refused));
    published->add(since(figures.published, last->published));
    delivered->add(since(figures.delivered, last->delivered));
    dropped->add(since(figures.dropped, last->dropped));
    ws_frames->add(since(websocket.frames_sent.load(), last->ws_frames));
    ws_dropped->add(since(websocket.slow_clients_dropped.load(), last->ws_dropped));
  });
}

}  // namespace synthorg::http_api
