// The streaming reverse proxy behind proxy routes (RouteSpec::proxy): one exchange relays the
// request body to the upstream as it arrives and the answer back as it comes, chunk by chunk,
// and a WebSocket (any 101) upgrade becomes a byte tunnel. Runs as a coroutine on the client
// session's strand.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>  // asio 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

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
  const ProxyTarget& target;
  UpstreamConnection& upstream;
  std::string request_id;
  std::string remote;
  bool keep_alive;  // the client's wish, already false while draining
  std::chrono::milliseconds request_timeout;   // to read each part of the client's body
  std::chrono::milliseconds upstream_timeout;  // to connect, and for each wait on the upstream
};

struct ProxyResult {
  // Set when nothing was sent to the client yet: answer with it (502, 504, ...).
  std::optional<HttpResponse> problem;
  int status = 0;  // what the upstream answered, 0 when it did not
  std::uint64_t bytes = 0;
  bool keep_alive = false;  // the client connection can read its next request
};

boost::asio::awaitable<ProxyResult> relay(ProxyExchange exchange);

}  // namespace synthorg::http_api
