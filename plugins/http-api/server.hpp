// The HTTP/1.1 server on Boost.Beast: one async session per connection on the kernel's
// io_context, strict limits, problem+json errors, request ids, access log, graceful drain.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>

#include "cors.hpp"
#include "router.hpp"
#include "synthorg/log.hpp"

namespace synthorg::http_api {

class WebSocketHub;

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  std::chrono::milliseconds request_timeout{10'000};  // from the first byte to the whole request
  std::chrono::milliseconds idle_timeout{60'000};     // a kept-alive connection waiting for a request
  std::chrono::milliseconds upstream_timeout{60'000};  // proxy routes: to connect, and each wait on the upstream
  std::size_t max_connections = 10'000;
};

struct ServerOptions {
  std::string address = "0.0.0.0";
  unsigned short port = 3001;
  Limits limits;
  bool access_log = true;
  // The kernel runs its io_context on one thread: connections need no strand to keep their
  // handlers apart (a strand costs a lock and a queue hop on every completion).
  bool single_io_thread = false;
};

// Decides, per request, whether the caller may use the route; fills request.principal.
// Returns a problem response to send instead, or nullopt to go on.
using Gate = std::function<std::optional<HttpResponse>(const RouteSpec& route, HttpRequest& request)>;

struct ServerStats {
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> connections_refused{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> bad_requests{0};
};

// Called after every response, for metrics: route pattern ("" when none), status, seconds.
using Observer = std::function<void(std::string_view method, std::string_view pattern, int status, double seconds)>;

// Called for a request answered before a route's gate or handler saw it — 404 and 405, and the
// 400, 408, 413 and 431 of a request that could not be read whole — with what was read of it
// (no method when not even its head was). Tracing gives these their span here: no handler
// wrapper ever sees them.
using Unrouted = std::function<void(const HttpRequest& request, int status)>;

class Server {
 public:
  Server(boost::asio::io_context& io, std::shared_ptr<Router> router, Gate gate, Observer observer,
         ServerOptions options, log::Logger log);
  ~Server();

  // Binds and starts accepting; throws std::runtime_error naming the address when it cannot.
  void start();
  // Stops accepting, lets in-flight requests finish (each connection closes after its current
  // response) for up to `grace`, then closes what is left.
  void stop(std::chrono::milliseconds grace);
  unsigned short port() const noexcept { return bound_port_; }
  // Upgrades to GET /api/v1/ws go to the hub (set before start()).
  void set_websocket(std::shared_ptr<WebSocketHub> hub);
  // Before start(); none by default.
  void set_unrouted(Unrouted unrouted);
  // The cross-origin policy; may be replaced at any time (the setting changed), from any thread.
  void set_cors(std::shared_ptr<const CorsPolicy> policy);
  const ServerStats& stats() const noexcept { return stats_; }

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  unsigned short bound_port_ = 0;
  ServerStats stats_;
};

}  // namespace synthorg::http_api
