#include "proxy.hpp"

#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <array>
#include <limits>
#include <memory>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <Poco/URI.h>

#include "security.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

StaticReply failure(int status, std::string_view code, const std::string& detail) {
  return problem_reply(status, code, detail);
}

// The answer to an upstream that failed before its headers arrived: 504 when it was too slow.
StaticReply upstream_failure(const beast::error_code& ec, const ProxyOptions& options) {
  if (ec == beast::error::timeout)
    return failure(504, "upstream_timeout",
                   fmt::format("the API upstream did not answer within {} ms", options.timeout.count()));
  return failure(502, "upstream_failed", fmt::format("the API upstream failed: {}", ec.message()));
}

// Hop-by-hop headers (RFC 9110 §7.6.1) and any the Connection header names.
template <bool isRequest>
void strip_hop_by_hop(http::header<isRequest>& header, bool keep_upgrade) {
  auto connection = header[http::field::connection];
  std::string named(connection.data(), connection.size());
  std::size_t start = 0;
  while (start <= named.size()) {
    auto end = named.find(',', start);
    if (end == std::string::npos) end = named.size();
    auto token = named.substr(start, end - start);
    token.erase(0, token.find_first_not_of(" \t"));
    token.erase(token.find_last_not_of(" \t") + 1);
    if (!token.empty() && !(keep_upgrade && beast::iequals(token, "upgrade"))) header.erase(token);
    start = end + 1;
  }
  for (auto field : {http::field::keep_alive, http::field::proxy_authenticate, http::field::proxy_authorization,
                     http::field::te, http::field::trailer, http::field::transfer_encoding})
    header.erase(field);
  header.erase("Proxy-Connection");
  if (!keep_upgrade) {
    header.erase(http::field::connection);
    header.erase(http::field::upgrade);
  }
}

// The request as the upstream sees it: hop-by-hop headers gone, X-Forwarded-* set from what this
// listener saw (never trusted from the client, which could claim any address).
void prepare_forward(http::request<http::string_body>& request, const ForwardInfo& info, bool upgrade) {
  auto host = request[http::field::host];
  std::string original_host(host.data(), host.size());
  strip_hop_by_hop(request, upgrade);
  request.set("X-Forwarded-For", info.remote_address);
  request.set("X-Forwarded-Proto", "http");
  if (!original_host.empty()) request.set("X-Forwarded-Host", original_host);
  request.set("X-Request-Id", info.request_id);
  if (upgrade) {
    request.set(http::field::connection, "Upgrade");
  } else {
    request.keep_alive(false);  // one upstream connection per request
    if (!request.body().empty() || request.method() == http::verb::post || request.method() == http::verb::put ||
        request.method() == http::verb::patch)
      request.prepare_payload();
  }
}

// Connects to the upstream and sends it the request; a reply to send instead when either fails
// (502, or 504 for a connection that never completes), nullopt on success. `ec` carries a
// write error, which the caller reports with whatever the read then says.
asio::awaitable<std::optional<StaticReply>> send_upstream(beast::tcp_stream& upstream,
                                                          http::request<http::string_body>& request,
                                                          const UpstreamTarget& target, const ForwardInfo& info,
                                                          const ProxyOptions& options, bool upgrade,
                                                          beast::error_code& ec) {
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto endpoints = co_await resolver.async_resolve(target.host, target.port, redirect_error(use_awaitable, ec));
  if (ec)
    co_return failure(502, "upstream_unavailable",
                      fmt::format("the API upstream {} cannot be resolved: {}", target.host, ec.message()));
  upstream.expires_after(options.connect_timeout);
  co_await upstream.async_connect(endpoints, redirect_error(use_awaitable, ec));
  if (ec == beast::error::timeout)
    co_return failure(504, "upstream_timeout",
                      fmt::format("the API upstream {}:{} did not accept a connection within {} ms", target.host,
                                  target.port, options.connect_timeout.count()));
  if (ec)
    co_return failure(502, "upstream_unavailable",
                      fmt::format("the API upstream {}:{} cannot be reached: {}", target.host, target.port,
                                  ec.message()));
  prepare_forward(request, info, upgrade);
  upstream.expires_after(options.timeout);
  co_await http::async_write(upstream, request, redirect_error(use_awaitable, ec));
  co_return std::nullopt;
}

// One direction of a tunnel: bytes from `from` to `to` until either side ends, then both close.
struct Tunnel {
  beast::tcp_stream client;
  beast::tcp_stream upstream;
  explicit Tunnel(beast::tcp_stream c, beast::tcp_stream u) : client(std::move(c)), upstream(std::move(u)) {}
  void close() {
    beast::error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.socket().close(ignored);
    upstream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    upstream.socket().close(ignored);
  }
};

asio::awaitable<void> pump(std::shared_ptr<Tunnel> tunnel, bool to_upstream) {
  auto& from = to_upstream ? tunnel->client : tunnel->upstream;
  auto& to = to_upstream ? tunnel->upstream : tunnel->client;
  std::array<char, 16 * 1024> buffer;
  beast::error_code ec;
  for (;;) {
    auto got = co_await from.socket().async_read_some(asio::buffer(buffer), redirect_error(use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(to.socket(), asio::buffer(buffer.data(), got), redirect_error(use_awaitable, ec));
    if (ec) break;
  }
  tunnel->close();
}

}  // namespace

UpstreamTarget parse_upstream(const std::string& url) {
  Poco::URI uri;
  try {
    uri = Poco::URI(url);
  } catch (const std::exception& error) {
    throw std::invalid_argument(fmt::format("'{}' is not a URL: {}", url, error.what()));
  }
  if (uri.getScheme() != "http")
    throw std::invalid_argument(fmt::format("'{}' must start with http:// (TLS to the upstream is not supported; "
                                            "keep it on a private network)", url));
  if (uri.getHost().empty()) throw std::invalid_argument(fmt::format("'{}' has no host", url));
  if (!uri.getPath().empty() && uri.getPath() != "/")
    throw std::invalid_argument(fmt::format("'{}' has a path; give only scheme, host and port", url));
  return {uri.getHost(), std::to_string(uri.getPort())};
}

asio::awaitable<ProxyOutcome> proxy_request(beast::tcp_stream& client, http::request<http::string_body>& request,
                                            UpstreamTarget target, ForwardInfo info, ProxyOptions options,
                                            std::string nonce, bool hsts) {
  ProxyOutcome outcome;
  bool client_keep_alive = request.keep_alive();
  auto head = request.method() == http::verb::head;
  beast::tcp_stream upstream(co_await asio::this_coro::executor);
  beast::error_code ec;
  if (auto refused = co_await send_upstream(upstream, request, target, info, options, false, ec)) {
    outcome.failure = std::move(refused);
    co_return outcome;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // Streamed through, never held: no limit. Not boost::none: Boost 1.74 compares a Content-Length
  // against an empty optional as if it were exceeded.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (head) parser.skip(true);
  if (!ec) co_await http::async_read_header(upstream, buffer, parser, redirect_error(use_awaitable, ec));
  if (ec) {
    outcome.failure = upstream_failure(ec, options);
    co_return outcome;
  }

  auto& upstream_response = parser.get();
  outcome.status = upstream_response.result_int();
  http::response<http::buffer_body> response{upstream_response.result(), request.version()};
  for (const auto& field : upstream_response.base()) response.insert(field.name_string(), field.value());
  strip_hop_by_hop(response, false);
  set_security_headers(response.base(), nonce, hsts);
  response.set(http::field::server, "synthorg");
  response.set("X-Request-Id", info.request_id);
  auto length = parser.content_length();
  bool bodiless = head || outcome.status == 204 || outcome.status == 304 || outcome.status / 100 == 1;
  if (length) response.content_length(*length);
  else if (!bodiless) response.chunked(true);
  response.keep_alive(client_keep_alive && (length || bodiless || response.chunked()));

  http::response_serializer<http::buffer_body> serializer{response};
  response.body().data = nullptr;
  response.body().more = !bodiless && !parser.is_done();
  client.expires_after(options.timeout);
  co_await http::async_write_header(client, serializer, redirect_error(use_awaitable, ec));
  if (ec) co_return outcome;  // the client went away
  std::array<char, 32 * 1024> chunk;
  bool complete = true;
  while (!bodiless && !parser.is_done()) {
    upstream_response.body().data = chunk.data();
    upstream_response.body().size = chunk.size();
    upstream.expires_after(options.timeout);
    co_await http::async_read(upstream, buffer, parser, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      complete = false;  // headers are out: all that is left is to cut the client off
      break;
    }
    auto got = chunk.size() - upstream_response.body().size;
    outcome.bytes += got;
    response.body().data = chunk.data();
    response.body().size = got;
    response.body().more = !parser.is_done();
    client.expires_after(options.timeout);
    co_await http::async_write(client, serializer, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return outcome;
  }
  if (complete && !bodiless && !serializer.is_done()) {
    response.body().data = nullptr;
    response.body().size = 0;
    response.body().more = false;
    co_await http::async_write(client, serializer, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
  }
  outcome.keep_alive = complete && !ec && response.keep_alive();
  co_return outcome;
}

asio::awaitable<ProxyOutcome> proxy_upgrade(beast::tcp_stream& client, beast::flat_buffer& leftover,
                                            http::request<http::string_body>& request, UpstreamTarget target,
                                            ForwardInfo info, ProxyOptions options, std::string nonce, bool hsts) {
  ProxyOutcome outcome;
  beast::tcp_stream upstream(co_await asio::this_coro::executor);
  beast::error_code ec;
  if (auto refused = co_await send_upstream(upstream, request, target, info, options, true, ec)) {
    outcome.failure = std::move(refused);
    co_return outcome;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1024 * 1024);
  if (!ec) co_await http::async_read_header(upstream, buffer, parser, redirect_error(use_awaitable, ec));
  if (!ec && parser.get().result() != http::status::switching_protocols)
    co_await http::async_read(upstream, buffer, parser, redirect_error(use_awaitable, ec));
  if (ec) {
    outcome.failure = upstream_failure(ec, options);
    co_return outcome;
  }
  auto& answer = parser.get();
  outcome.status = answer.result_int();
  set_security_headers(answer.base(), nonce, hsts);
  client.expires_after(options.timeout);
  if (answer.result() != http::status::switching_protocols) {
    // A refusal (401, 426, ...) goes back as it came, and the connection closes.
    strip_hop_by_hop(answer, false);
    answer.keep_alive(false);
    answer.prepare_payload();
    co_await http::async_write(client, answer, redirect_error(use_awaitable, ec));
    co_return outcome;
  }
  http::response_serializer<http::string_body> serializer{answer};
  co_await http::async_write_header(client, serializer, redirect_error(use_awaitable, ec));
  if (ec) co_return outcome;
  // Bytes that arrived behind the headers, either way, go first.
  if (buffer.size() > 0)
    co_await asio::async_write(client.socket(), buffer.data(), redirect_error(use_awaitable, ec));
  if (!ec && leftover.size() > 0)
    co_await asio::async_write(upstream.socket(), leftover.data(), redirect_error(use_awaitable, ec));
  leftover.consume(leftover.size());
  if (ec) co_return outcome;
  client.expires_never();
  upstream.expires_never();
  auto executor = client.get_executor();
  auto tunnel = std::make_shared<Tunnel>(std::move(client), std::move(upstream));
  asio::co_spawn(executor, pump(tunnel, true), asio::detached);
  asio::co_spawn(executor, pump(tunnel, false), asio::detached);
  co_return outcome;
}

}  // namespace synthorg::web
