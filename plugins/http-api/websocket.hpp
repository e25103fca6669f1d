// GET /api/v1/ws: live events from the bus to signed-in clients. One bus subscription feeds
// every client; each frame is serialised once and shared. A client whose queue fills is dropped
// (close 1008) so a slow reader never slows anyone else.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "synthorg/bus.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

struct WebSocketLimits {
  std::size_t max_message_bytes = 64 * 1024;  // client frames; larger closes with 1009
  std::size_t queue_frames = 1024;            // server frames waiting per client; beyond: dropped
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

  // Takes over a connection whose upgrade request passed the gate.
  void accept(boost::beast::tcp_stream stream, boost::beast::http::request<boost::beast::http::string_body> request,
              Principal principal);
  const WebSocketStats& stats() const noexcept { return stats_; }

 private:
  friend class WsClient;
  void deliver(const Event& event);
  void forget(WsClient* client);

  EventBus& bus_;
  WebSocketLimits limits_;
  log::Logger log_;
  Subscription subscription_;
  std::mutex mutex_;
  std::set<std::shared_ptr<WsClient>> clients_;
  WebSocketStats stats_;
  std::atomic<bool> stopped_{false};
};

}  // namespace synthorg::http_api
