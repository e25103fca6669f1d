// GET /api/v1/ws: live events from the bus to signed-in clients. One bus subscription feeds
// every client through a subscriber list per channel; each event is framed once (the complete
// WebSocket frame, header and JSON) and shared. A client's queued frames leave in one socket write
// per batch. A client that falls too far behind (its oldest queued frame older than `max_lag`, or
// more than `max_queued_bytes` queued) is dropped (close 1008) so a slow reader never slows
// anyone else.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "synthorg/bus.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

struct WebSocketLimits {
  std::size_t max_message_bytes = 64 * 1024;       // client frames; larger closes with 1009
  std::chrono::milliseconds max_lag{2000};         // oldest frame waiting for a client; older: dropped
  std::size_t max_queued_bytes = 8 * 1024 * 1024;  // frame bytes waiting for a client; beyond: dropped
  std::size_t write_batch_bytes = 64 * 1024;       // at most this much per socket write (one frame at least)
  std::size_t max_per_user = 16;                   // open connections of one user; more get 429
  // Nothing received for half of this: a ping; for all of it: the connection is dropped.
  std::chrono::milliseconds idle_timeout{60'000};
};

struct WebSocketStats {
  std::atomic<std::uint64_t> clients{0};
  std::atomic<std::uint64_t> frames_sent{0};
  std::atomic<std::uint64_t> slow_clients_dropped{0};
};

class WsClient;

// The minimum role to see a channel (the first segment of a topic).
std::string_view channel_role(std::string_view channel) noexcept;

class WebSocketHub : public std::enable_shared_from_this<WebSocketHub> {
 public:
  WebSocketHub(EventBus& bus, WebSocketLimits limits, log::Logger log);
  void start();  // subscribes to the bus
  void stop();   // unsubscribes and closes every client with 1001 (going away)

  // Holds one of the user's max_per_user places; false when they are all taken. A place is
  // given back when the client it was reserved for is gone.
  bool reserve(const std::string& subject);
  // Takes over a connection whose upgrade request passed the gate and reserve(). `closed` runs
  // once the connection's socket is closed (the server counts it until then).
  void accept(boost::beast::tcp_stream stream, boost::beast::http::request<boost::beast::http::string_body> request,
              Principal principal, std::function<void()> closed);
  const WebSocketLimits& limits() const noexcept { return limits_; }
  const WebSocketStats& stats() const noexcept { return stats_; }

 private:
  friend class WsClient;
  void deliver(const Event& event);
  void forget(WsClient* client);
  void release_place(const std::string& subject);  // with mutex_ held
  // With mutex_ held.
  void add_subscriber(WsClient* client, const std::string& channel);
  void remove_subscriber(WsClient* client, const std::string& channel);

  EventBus& bus_;
  WebSocketLimits limits_;
  log::Logger log_;
  Subscription subscription_;
  std::mutex mutex_;
  std::unordered_map<WsClient*, std::shared_ptr<WsClient>> clients_;
  std::unordered_map<std::string, std::size_t> per_user_;  // reserved places by subject
  // Channel → its subscribers; each client knows its index in every list it is on (swap-remove).
  std::unordered_map<std::string, std::vector<WsClient*>> subscribers_;
  WebSocketStats stats_;
  std::atomic<bool> stopped_{false};
};

}  // namespace synthorg::http_api
