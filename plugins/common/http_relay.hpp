// The one streaming reverse proxy of the first-party plugins (http-api's proxy routes, web's
// /api/* to api_upstream or to the API port): one exchange relays the request body to the
// upstream as it arrives and the answer back as it comes, chunk by chunk, and a WebSocket (any
// 101) upgrade becomes a byte tunnel. Runs as a coroutine on the client session's strand.
// A static library (synthorg-http-relay) linked into each plugin: Beast stays out of the SDK.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>  // asio 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "synthorg/services/http.hpp"

namespace synthorg::http_relay {

// A deadline that cancels the socket's pending operations instead of closing it (what
// tcp_stream's own timeout does), so that a request that stalled half-way can still be answered
// 408. Use it on the socket's strand only; the socket must outlive it.
class Deadline {
 public:
  explicit Deadline(boost::asio::ip::tcp::socket& socket);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(std::chrono::milliseconds timeout);
  void disarm();
  // True when the last armed deadline passed (the pending operation then ends in operation_aborted).
  bool fired() const noexcept;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// The upstream connection of one client connection, kept alive for its next proxied request
// (browsers and benchmarks reuse connections; a connect per request would double the latency).
struct UpstreamConnection {
  std::optional<boost::beast::tcp_stream> stream;
  std::string key;  // host:port it is connected to
  boost::beast::flat_buffer buffer;
};

struct ProxyExchange {
  boost::beast::tcp_stream& client;
  boost::beast::flat_buffer& client_buffer;
  // The request with its header read and its body not yet.
  boost::beast::http::request_parser<boost::beast::http::string_body>& head;
  // host may be a name: it is then resolved (asio's resolver thread, never the I/O thread).
  const ProxyTarget& target;
  UpstreamConnection& upstream;
  std::string request_id;
  std::string remote;
  bool keep_alive;  // the client's wish, already false while draining
  std::chrono::milliseconds request_timeout;   // to read each part of the client's body (408 beyond)
  std::chrono::milliseconds upstream_timeout;  // for each wait on the upstream (504 beyond)
  // To connect; upstream_timeout when not set.
  std::optional<std::chrono::milliseconds> connect_timeout = std::nullopt;
  // Authorization and the synthorg_session cookie are the caller's credentials for this
  // platform's API. Stripped by default: a workload's service must never see them. Only a hop
  // to our own API (the web listener's api_upstream) forwards them.
  bool forward_credentials = false;
  // Called on every answer relayed from the upstream, before its head is written (the web
  // listener sets its security headers there).
  std::function<void(boost::beast::http::fields&)> decorate_answer = {};
};

struct ProxyResult {
  // Set when nothing was sent to the client yet: answer with it (408, 502, 504, ...), then close.
  std::optional<HttpResponse> problem;
  int status = 0;  // what the upstream answered, 0 when it did not
  std::uint64_t bytes = 0;
  bool keep_alive = false;  // the client connection can read its next request
};

boost::asio::awaitable<ProxyResult> relay(ProxyExchange exchange);

}  // namespace synthorg::http_relay
