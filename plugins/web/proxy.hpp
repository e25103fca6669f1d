// The API behind the web listener when it is not in this kernel (or for WebSocket upgrades,
// which an in-process dispatch cannot carry): a streaming reverse proxy over Beast, one upstream
// connection per request, with X-Forwarded-* headers, timeouts, 502/504 problems, and a byte
// tunnel after a 101.
#pragma once

#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "static_files.hpp"

namespace synthorg::web {

struct UpstreamTarget {
  std::string host;
  std::string port;
};

// "http://backend:3001" → {backend, 3001}; throws std::invalid_argument naming what is wrong
// (https, a path, no host).
UpstreamTarget parse_upstream(const std::string& url);

struct ProxyOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{60'000};  // for the answer to begin, and between its chunks
};

// Who asked, for X-Forwarded-* and the request id.
struct ForwardInfo {
  std::string remote_address;
  std::string request_id;
};

struct ProxyOutcome {
  std::optional<StaticReply> failure;  // nothing was sent: the caller sends this (502/504)
  int status = 0;                      // the upstream's status, when it answered
  std::uint64_t bytes = 0;
  bool keep_alive = false;             // the client connection can take another request
};

// Forwards one request and streams the answer back to `client` as it arrives. The client
// connection is kept only when the answer was complete and the request allowed it.
boost::asio::awaitable<ProxyOutcome> proxy_request(boost::beast::tcp_stream& client,
                                                   boost::beast::http::request<boost::beast::http::string_body>& request,
                                                   UpstreamTarget target, ForwardInfo info, ProxyOptions options,
                                                   std::string nonce, bool hsts);

// Forwards an Upgrade request; on 101 relays the answer and then the bytes both ways until either
// side closes (the client stream is moved into the tunnel). Any other answer is relayed as is.
boost::asio::awaitable<ProxyOutcome> proxy_upgrade(boost::beast::tcp_stream& client, boost::beast::flat_buffer& leftover,
                                                   boost::beast::http::request<boost::beast::http::string_body>& request,
                                                   UpstreamTarget target, ForwardInfo info, ProxyOptions options,
                                                   std::string nonce, bool hsts);

}  // namespace synthorg::web
