#include "http_relay.hpp"

#include <array>
#include <limits>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace synthorg::http_relay {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::size_t kChunk = 16 * 1024;
constexpr auto kNoLimit = std::numeric_limits<std::uint64_t>::max();

// Headers that describe one connection, never forwarded (RFC 9110 7.6.1); and, unless the
// upstream is our own API, the caller's credentials, which are not the upstream's business.
bool dropped(beast::string_view name, bool forward_credentials) {
  static constexpr beast::string_view names[] = {
      "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
      "trailer",    "transfer-encoding", "upgrade", "expect"};
  for (auto candidate : names)
    if (beast::iequals(name, candidate)) return true;
  return !forward_credentials && beast::iequals(name, "authorization");
}

// Fields named by Connection: are hop-by-hop too.
bool named_by_connection(beast::string_view name, beast::string_view connection) {
  for (auto token : http::token_list(connection))
    if (beast::iequals(name, token)) return true;
  return false;
}

template <bool isRequest, class From, class To>
void copy_end_to_end(const http::message<isRequest, From>& from, http::message<isRequest, To>& to,
                     bool forward_credentials) {
  auto connection = from[http::field::connection];
  for (const auto& field : from.base()) {
    auto name = field.name_string();
    if (dropped(name, forward_credentials) || named_by_connection(name, connection)) continue;
    to.insert(field.name_string(), field.value());
  }
}

// The Cookie header without the session cookie; empty when nothing else was in it.
std::string without_session_cookie(std::string_view header) {
  std::string kept;
  while (!header.empty()) {
    auto end = header.find(';');
    auto pair = header.substr(0, end);
    auto name = pair.substr(0, pair.find('='));
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (name != session_cookie && !pair.empty()) {
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      kept += (kept.empty() ? "" : "; ") + std::string(pair);
    }
    if (end == std::string_view::npos) break;
    header.remove_prefix(end + 1);
  }
  return kept;
}

bool is_upgrade(const http::request<http::buffer_body>& request) {
  auto connection = request[http::field::connection];
  if (request[http::field::upgrade].empty()) return false;
  for (auto token : http::token_list(connection))
    if (beast::iequals(token, "upgrade")) return true;
  return false;
}

HttpResponse unreachable(const beast::error_code& ec) {
  if (ec == beast::error::timeout)
    return HttpResponse::problem(504, "upstream_timeout", "the service behind this route did not answer in time")
        .header("retry-after", "1");
  return HttpResponse::problem(502, "upstream_unreachable",
                               fmt::format("the service behind this route cannot be reached ({})", ec.message()))
      .header("retry-after", "1");
}

// An IP address is used as it is; a name (an api_upstream such as http://backend:3001) is
// resolved by asio's resolver, whose lookups run on a thread of its own, never the I/O thread.
// Under the stream's expiry, which the caller has set.
asio::awaitable<void> connect(beast::tcp_stream& stream, const ProxyTarget& target, beast::error_code& ec) {
  auto address = asio::ip::make_address(target.host, ec);
  if (!ec) {
    co_await stream.async_connect(tcp::endpoint(address, target.port), asio::redirect_error(asio::use_awaitable, ec));
    co_return;
  }
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto endpoints = co_await resolver.async_resolve(target.host, std::to_string(target.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
}

// Copies bytes one way until either side ends; then closes both, which ends the other way too.
asio::awaitable<void> pump(beast::tcp_stream& from, beast::tcp_stream& to) {
  std::array<char, kChunk> chunk;
  beast::error_code ec;
  for (;;) {
    auto got = co_await from.async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(to, asio::buffer(chunk.data(), got), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
  }
  beast::error_code ignored;
  from.socket().shutdown(tcp::socket::shutdown_both, ignored);
  to.socket().shutdown(tcp::socket::shutdown_both, ignored);
  from.socket().close(ignored);
  to.socket().close(ignored);
}

// After a 101: bytes both ways, leftovers first, until either side closes. No timeout: an idle
// WebSocket is normal; the server's drain closes the client side, which ends both.
asio::awaitable<void> tunnel(ProxyExchange& exchange, beast::tcp_stream& upstream) {
  beast::error_code ec;
  exchange.client.expires_never();
  upstream.expires_never();
  auto& early = exchange.upstream.buffer;  // the upstream may speak right after its 101
  if (early.size() > 0)
    co_await asio::async_write(exchange.client, early.data(), asio::redirect_error(asio::use_awaitable, ec));
  early.consume(early.size());
  auto& pending = exchange.client_buffer;
  if (!ec && pending.size() > 0)
    co_await asio::async_write(upstream, pending.data(), asio::redirect_error(asio::use_awaitable, ec));
  pending.consume(pending.size());
  if (ec) co_return;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer finished(executor, asio::steady_timer::time_point::max());
  bool other_done = false;
  asio::co_spawn(executor, pump(upstream, exchange.client), [&](std::exception_ptr) {
    other_done = true;
    finished.cancel();
  });
  co_await pump(exchange.client, upstream);
  if (!other_done) co_await finished.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

// The handler holds the state, not the Deadline: a wait that completes after its owner is
// gone, or after a newer arm(), finds a stale generation and touches nothing.
struct Deadline::State {
  State(tcp::socket& socket) : socket(socket), timer(socket.get_executor()) {}
  tcp::socket& socket;
  asio::steady_timer timer;
  std::uint64_t generation = 0;
  bool fired = false;
};

Deadline::Deadline(tcp::socket& socket) : state_(std::make_shared<State>(socket)) {}

Deadline::~Deadline() { disarm(); }

void Deadline::arm(std::chrono::milliseconds timeout) {
  auto generation = ++state_->generation;
  state_->fired = false;
  state_->timer.expires_after(timeout);
  state_->timer.async_wait([state = state_, generation](const beast::error_code& ec) {
    if (ec || generation != state->generation) return;
    state->fired = true;
    beast::error_code ignored;
    state->socket.cancel(ignored);
  });
}

void Deadline::disarm() {
  ++state_->generation;
  state_->timer.cancel();
}

bool Deadline::fired() const noexcept { return state_->fired; }

asio::awaitable<ProxyResult> relay(ProxyExchange exchange) {
  ProxyResult result;
  const auto& target = exchange.target;
  const auto client_version = exchange.head.get().version();
  const bool head_request = exchange.head.get().method() == http::verb::head;
  const bool expects_continue = beast::iequals(exchange.head.get()[http::field::expect], "100-continue");
  http::request_parser<http::buffer_body> in{std::move(exchange.head)};
  in.body_limit(kNoLimit);

  http::request<http::buffer_body> out;
  out.method_string(in.get().method_string());
  out.target(target.target);
  out.version(11);
  copy_end_to_end(in.get(), out, exchange.forward_credentials);
  if (auto cookie = in.get()[http::field::cookie]; !cookie.empty() && !exchange.forward_credentials) {
    auto kept = without_session_cookie(std::string_view(cookie.data(), cookie.size()));
    if (kept.empty()) out.erase(http::field::cookie);
    else out.set(http::field::cookie, kept);
  }
  auto forwarded_for = in.get()["x-forwarded-for"];
  out.set("x-forwarded-for", forwarded_for.empty() ? exchange.remote
                                                   : std::string(forwarded_for) + ", " + exchange.remote);
  if (in.get()["x-forwarded-proto"].empty()) out.set("x-forwarded-proto", "http");
  if (auto host = in.get()[http::field::host]; !host.empty()) out.set("x-forwarded-host", host);
  out.set("x-request-id", exchange.request_id);
  for (const auto& [name, value] : target.headers) out.set(name, value);
  const bool upgrade = is_upgrade(in.get());
  if (upgrade) {
    out.set(http::field::connection, "upgrade");
    out.set(http::field::upgrade, in.get()[http::field::upgrade]);
  }
  if (in.get().chunked()) out.chunked(true);

  beast::error_code ec;
  // Answers are written in parts as they come: Nagle must not hold a part back for an ACK.
  beast::error_code ignored;
  exchange.client.socket().set_option(tcp::no_delay(true), ignored);
  const auto key = fmt::format("{}:{}", target.host, target.port);
  auto& connection = exchange.upstream;
  std::array<char, kChunk> chunk;
  std::optional<http::response_parser<http::buffer_body>> answer;

  // A kept-alive upstream connection may have been closed meanwhile: a request without a body is
  // sent once more on a fresh connection when the reused one fails before any answer.
  for (int attempt = 0;; ++attempt) {
    bool reused = connection.stream && connection.key == key;
    if (!reused) {
      connection.stream.emplace(co_await asio::this_coro::executor);
      connection.buffer.clear();
      connection.key = key;
      connection.stream->expires_after(exchange.connect_timeout.value_or(exchange.upstream_timeout));
      co_await connect(*connection.stream, target, ec);
      if (ec) {
        connection.stream.reset();
        result.problem = unreachable(ec);
        co_return result;
      }
      connection.stream->socket().set_option(tcp::no_delay(true), ec);
    }
    auto& upstream = *connection.stream;
    http::request_serializer<http::buffer_body> writer{out};
    upstream.expires_after(exchange.upstream_timeout);
    if (in.is_done()) {
      out.body().data = nullptr;
      out.body().size = 0;
      out.body().more = false;
      co_await http::async_write(upstream, writer, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      out.body().data = nullptr;
      out.body().more = true;
      // The head goes out with the first part of the body (one write, no Nagle wait between),
      // unless the caller waits for 100 Continue before sending any.
      if (expects_continue) {
        co_await http::async_write_header(upstream, writer, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec)
          co_await asio::async_write(exchange.client,
                                     asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")),
                                     asio::redirect_error(asio::use_awaitable, ec));
      }
      // Not tcp_stream's expiry: that closes the socket, and a stalled caller is owed its 408.
      Deadline deadline(exchange.client.socket());
      exchange.client.expires_never();
      while (!ec && !writer.is_done()) {
        if (!in.is_done()) {
          in.get().body().data = chunk.data();
          in.get().body().size = chunk.size();
          deadline.arm(exchange.request_timeout);
          co_await http::async_read_some(exchange.client, exchange.client_buffer, in,
                                         asio::redirect_error(asio::use_awaitable, ec));
          deadline.disarm();
          if (ec == http::error::need_buffer) ec = {};
          if (ec) {  // the caller broke off or stalled: nothing more can be read from it
            connection.stream.reset();
            if (deadline.fired())
              result.problem = HttpResponse::problem(
                  408, "request_timeout",
                  fmt::format("the request body stopped arriving: nothing for {} ms", exchange.request_timeout.count()));
            co_return result;
          }
          out.body().size = chunk.size() - in.get().body().size;
          // No bytes this time (a chunk header only): nothing to write, or Beast would write an
          // empty chunk, which ends a chunked body.
          out.body().data = out.body().size ? chunk.data() : nullptr;
          out.body().more = !in.is_done();
        } else {
          out.body().data = nullptr;
          out.body().size = 0;
          out.body().more = false;
        }
        upstream.expires_after(exchange.upstream_timeout);
        co_await http::async_write(upstream, writer, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
      }
    }
    if (!ec) {
      // 1xx answers other than 101 are interim: skip them (we asked for no 100-continue).
      do {
        answer.emplace();
        answer->body_limit(kNoLimit);
        if (head_request) answer->skip(true);
        upstream.expires_after(exchange.upstream_timeout);
        co_await http::async_read_header(upstream, connection.buffer, *answer,
                                         asio::redirect_error(asio::use_awaitable, ec));
      } while (!ec && answer->get().result_int() / 100 == 1 && answer->get().result_int() != 101);
    }
    if (!ec) break;
    connection.stream.reset();
    bool retry = reused && attempt == 0 && in.is_done() && ec != beast::error::timeout;
    if (!retry) {
      result.problem = unreachable(ec);
      co_return result;
    }
  }

  auto& upstream = *connection.stream;
  const auto& head = answer->get();
  result.status = head.result_int();
  http::response<http::buffer_body> back;
  back.result(head.result_int());
  back.reason(head.reason());
  back.version(client_version);
  copy_end_to_end(head, back, true);
  back.set("x-request-id", exchange.request_id);
  if (exchange.decorate_answer) exchange.decorate_answer(back.base());
  const bool upgraded = result.status == 101 && upgrade;
  const bool has_body = !head_request && result.status / 100 != 1 && result.status != 204 && result.status != 304;
  bool keep_alive = exchange.keep_alive && !upgraded;
  if (upgraded) {
    back.set(http::field::connection, "upgrade");
    back.set(http::field::upgrade, head[http::field::upgrade]);
  } else if (has_body && (head.chunked() || !head.has_content_length())) {
    // Streamed, or delimited by the upstream closing: chunked to an HTTP/1.1 client, else
    // delimited by our closing too.
    if (client_version >= 11) back.chunked(true);
    else keep_alive = false;
  }
  if (!upgraded) back.keep_alive(keep_alive);

  http::response_serializer<http::buffer_body> writer{back};
  exchange.client.expires_after(exchange.request_timeout);
  if (!has_body || answer->is_done()) {
    back.body().data = nullptr;
    back.body().size = 0;
    back.body().more = false;
    co_await http::async_write(exchange.client, writer, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    // The head goes out with the first part of the body, in one write.
    back.body().data = nullptr;
    back.body().more = true;
    while (!ec && !writer.is_done()) {
      if (!answer->is_done()) {
        answer->get().body().data = chunk.data();
        answer->get().body().size = chunk.size();
        upstream.expires_after(exchange.upstream_timeout);
        // Some, not all: what the upstream sends goes on at once (server-sent events, progress).
        co_await http::async_read_some(upstream, connection.buffer, *answer,
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {  // the upstream broke off mid-answer: the client cannot be told but by a close
          connection.stream.reset();
          co_return result;
        }
        back.body().size = chunk.size() - answer->get().body().size;
        back.body().data = back.body().size ? chunk.data() : nullptr;  // as above
        back.body().more = !answer->is_done();
      } else {
        back.body().data = nullptr;
        back.body().size = 0;
        back.body().more = false;
      }
      result.bytes += back.body().size;
      exchange.client.expires_after(exchange.request_timeout);
      co_await http::async_write(exchange.client, writer, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
    }
  }
  exchange.client.expires_never();
  if (ec) {
    connection.stream.reset();
    co_return result;
  }
  if (upgraded) {
    co_await tunnel(exchange, upstream);
    connection.stream.reset();
    co_return result;
  }
  if (!head.keep_alive() || !answer->is_done()) connection.stream.reset();
  result.keep_alive = keep_alive;
  co_return result;
}

}  // namespace synthorg::http_relay
