#include "server.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <future>
#include <limits>
#include <optional>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <fmt/format.h>

#include "http_framing.hpp"
#include "listener.hpp"
#include "request_id.hpp"
#include "http_relay.hpp"
#include "request.hpp"
#include "websocket.hpp"

namespace synthorg::http_api {
using http_relay::ProxyExchange;
using http_relay::ProxyResult;
using http_relay::UpstreamConnection;
using http_relay::relay;
using http_relay::acceptable_request_id;
using http_relay::new_request_id;
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

void append_decimal(std::string& out, std::uint64_t value) {
  char digits[20];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

// The monotonic clock at the kernel's tick resolution: deadlines of seconds need no better, and
// it is read four times a request.
std::int64_t coarse_now() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// The response head, written by hand into a buffer the session reuses: Beast's message and
// serializer cost an allocation per field and a buffer-sequence walk per write, a good part of
// a small answer's time. Framing headers are ours alone; CR and LF in a handler's header value
// become spaces, so no value can start a header of its own.
void format_head(std::string& out, const HttpResponse& response, unsigned version, bool keep_alive,
                 std::string_view request_id, std::size_t content_length) {
  auto reason = http::obsolete_reason(static_cast<http::status>(response.status));
  out += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  append_decimal(out, static_cast<std::uint64_t>(response.status));
  out += ' ';
  out.append(reason.data(), reason.size());
  out += "\r\nServer: synthorg\r\n";
  // beast::iequals compares ASCII only: header names are tokens, and std::tolower's locale
  // lookup showed in profiles.
  using beast::iequals;
  for (const auto& [name, value] : response.headers) {
    if (iequals(name, "content-length") || iequals(name, "connection") || iequals(name, "transfer-encoding") ||
        iequals(name, "x-request-id") || iequals(name, "server"))
      continue;
    out += name;
    out += ": ";
    auto start = out.size();
    out += value;
    std::replace_if(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
                    [](char c) { return c == '\r' || c == '\n'; }, ' ');
    out += "\r\n";
  }
  out += "X-Request-Id: ";
  out += request_id;
  out += "\r\n";
  // 1xx, 204 and 304 carry no body and so no length (RFC 9110 8.6).
  auto bodiless = response.status < 200 || response.status == 204 || response.status == 304;
  if (!bodiless) {
    out += "Content-Length: ";
    append_decimal(out, content_length);
    out += "\r\n";
  }
  if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
  if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
  out += "\r\n";
}

}  // namespace

class Session;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io, std::shared_ptr<Router> router, Gate gate, Observer observer, ServerOptions options,
       log::Logger log, ServerStats& stats)
      : io(io), acceptor(asio::make_strand(io)), router(std::move(router)), gate(std::move(gate)),
        observer(std::move(observer)), options(std::move(options)), log(std::move(log)), stats(stats) {}

  void accept();
  // Drops a session; `still_open`: its connection lives on elsewhere and is still counted.
  void forget(Session* session, bool still_open = false);
  void sweep();

  asio::io_context& io;
  tcp::acceptor acceptor;
  std::shared_ptr<Router> router;
  Gate gate;
  Observer observer;
  ServerOptions options;
  log::Logger log;
  ServerStats& stats;
  std::shared_ptr<WebSocketHub> websocket;
  Unrouted unrouted;
  std::atomic<std::shared_ptr<const CorsPolicy>> cors;
  std::atomic<bool> cors_configured{false};  // a non-empty list is set: every answer needs its headers
  std::atomic<bool> draining{false};
  asio::steady_timer sweeper{io};  // after `io`, which it is built from
  http_relay::AcceptGuard accept_guard{"http-api", log, acceptor.get_executor(), stats.connections_refused};
  std::mutex sessions_mutex;
  std::set<std::shared_ptr<Session>> sessions;
};

// One connection: read a request (with limits), route it, let the handler answer (possibly from
// another thread), write, and read the next only then, so pipelined requests are answered in order.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    beast::error_code ignored;
    auto endpoint = stream_.socket().remote_endpoint(ignored);
    remote_ = ignored ? "unknown" : endpoint.address().to_string();
  }

  void run() { asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->wait_for_request(); }); }

  // From Server::stop: finish what is in flight, then close; an idle connection closes now.
  void drain(bool force) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), force] {
      if (force || !self->busy_) self->finish();
    });
  }
  void post_expire() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->expire(); });
  }
  // Called by the server's sweeper, on this session's strand, once the deadline has passed.
  void expire() {
    if (deadline_.load() != kNoDeadline) return;  // re-armed since: a newer wait is running
    timed_out_ = true;
    beast::error_code ignored;
    stream_.socket().cancel(ignored);
  }
  // The sweeper's check: true (and disarmed) when the deadline has passed.
  bool take_expired(std::int64_t now) {
    auto deadline = deadline_.load();
    return deadline != kNoDeadline && now > deadline && deadline_.compare_exchange_strong(deadline, kNoDeadline);
  }
  void close() {
    deadline_ = kNoDeadline;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    if (upstream_.stream) upstream_.stream->close();
  }

 private:
  // An idle connection waits under idle_timeout; once bytes arrive, the whole request must come
  // within request_timeout (so headers dribbled slowly cannot hold a connection for long).
  // Reads whatever arrives first under the idle deadline (one speculative read, no extra
  // reactor round trip when bytes are already there), then the rest under the request deadline.
  void wait_for_request() {
    if (server_->draining) return finish();
    if (buffer_.size() > 0) return read_request();
    arm(server_->options.limits.idle_timeout);
    auto space = buffer_.prepare(4096);
    stream_.socket().async_read_some(space, [self = shared_from_this()](beast::error_code ec, std::size_t got) {
      self->deadline_ = kNoDeadline;
      if (ec || self->timed_out_) return self->finish();
      self->buffer_.commit(got);
      self->read_request();
    });
  }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.limits.max_header_bytes));
    // No body limit while the header is read: a proxy route streams any length, so the limit is
    // applied in read_body() once the route is known. (Not boost::none: Beast 1.74 then refuses
    // every Content-Length.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    // Usually the whole header is already in the buffer: parse it here rather than through an
    // asynchronous read that would find nothing to read.
    beast::error_code ec;
    buffer_.consume(parser_->put(buffer_.data(), ec));
    if (ec != http::error::need_more) {
      if (ec) return on_read(ec);
      if (parser_->is_header_done()) {
        if (refuse_bad_framing()) return;
        if (parser_->is_done()) return on_read(ec);
        arm(server_->options.limits.request_timeout);
        return read_body();
      }
    }
    arm(server_->options.limits.request_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec || self->timed_out_) {
        self->deadline_ = kNoDeadline;
        return self->on_read(ec);
      }
      if (self->refuse_bad_framing()) return;
      if (self->parser_->is_done()) {
        self->deadline_ = kNoDeadline;
        return self->on_read(ec);
      }
      self->read_body();
    });
  }

  // A head whose framing cannot be trusted (http_framing.hpp) is answered and the connection
  // closed before any of its body is read: what follows it might be taken for a request.
  bool refuse_bad_framing() {
    auto error = http_relay::framing_error(parser_->get(), parser_->get().version());
    if (!error) return false;
    deadline_ = kNoDeadline;
    ++server_->stats.bad_requests;
    reply_and_close(HttpResponse::problem(error->status, error->code, error->detail));
    return true;
  }

  // A body follows the header. A proxy route streams it to its upstream; every other route gets
  // it whole, under the body limit and the request deadline armed at the first byte.
  void read_body() {
    const auto& head = parser_->get();
    auto target = std::string_view(head.target().data(), head.target().size());
    auto route = server_->router->match(std::string(head.method_string()), target.substr(0, target.find('?'))).route;
    if (route && route->proxy) {
      deadline_ = kNoDeadline;
      return on_read({});
    }
    // Read whole, so held to the limit: a declared length now, a chunked body as it comes.
    const auto limit = server_->options.limits.max_body_bytes;
    if (auto declared = parser_->content_length(); declared && *declared > limit) {
      deadline_ = kNoDeadline;
      return on_read(http::error::body_limit);
    }
    parser_->body_limit(limit);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->deadline_ = kNoDeadline;
      self->on_read(ec);
    });
  }

  // Our own deadline rather than tcp_stream's: that one closes the socket, and a request that
  // timed out half-way still deserves its 408. One sweeper per server checks every deadline a
  // few times a second, so arming costs a store instead of a timer (and a timerfd syscall).
  void arm(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    deadline_ = coarse_now() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  }

  void on_read(beast::error_code ec) {
    started_ = Clock::now();
    if (timed_out_) {
      ++server_->stats.bad_requests;
      return reply_and_close(HttpResponse::problem(408, "request_timeout",
                                                   fmt::format("the request did not arrive within {} ms",
                                                               server_->options.limits.request_timeout.count())));
    }
    if (ec == http::error::end_of_stream || ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
      return finish();
    if (ec) {
      ++server_->stats.bad_requests;
      if (ec == http::error::header_limit)
        return reply_and_close(HttpResponse::problem(
            431, "headers_too_large",
            fmt::format("the request headers exceed {} bytes", server_->options.limits.max_header_bytes)));
      if (ec == http::error::body_limit)
        return reply_and_close(HttpResponse::problem(
            413, "body_too_large",
            fmt::format("the request body exceeds {} bytes", server_->options.limits.max_body_bytes)));
      if (ec == http::error::partial_message) return finish();  // the peer went away mid-request
      return reply_and_close(HttpResponse::problem(400, "malformed_request",
                                                   fmt::format("the request is not valid HTTP/1.1: {}", ec.message())));
    }
    dispatch_request(parser_->get());
  }

  // An upgrade to /api/v1/ws that passes the gate leaves this session for the hub.
  bool try_websocket(http::request<http::string_body>& message) {
    static const RouteSpec ws_route{"GET", "/api/v1/ws", Access::signed_in, {}, {}, {}};
    auto target = std::string_view(message.target().data(), message.target().size());
    if (!server_->websocket || target.substr(0, target.find('?')) != "/api/v1/ws" || !beast::websocket::is_upgrade(message))
      return false;
    auto request = to_http_request(message, remote_);
    auto refused = server_->gate(ws_route, request);
    auto& hub = *server_->websocket;
    if (!refused && !hub.reserve(request.principal->subject))
      refused = HttpResponse::problem(429, "too_many_websockets",
                                      fmt::format("you have {} live event connections open, the most allowed; close "
                                                  "one first (http.ws_max_per_user)",
                                                  hub.limits().max_per_user))
                    .header("retry-after", "5");
    if (refused) {
      busy_ = true;
      keep_alive_ = false;
      version_ = message.version();
      request_id_ = new_request_id();
      method_ = "GET";
      path_ = "/api/v1/ws";
      respond(std::move(*refused));
      return true;
    }
    deadline_ = kNoDeadline;
    // Still one of the server's connections (max_connections), until the hub closes it.
    hub.accept(std::move(stream_), std::move(message), *request.principal,
               [server = server_] { --server->stats.connections_open; });
    server_->forget(this, /*still_open=*/true);
    return true;
  }

  // `message` is the parser's: a proxy route still reads the body through the parser.
  void dispatch_request(http::request<http::string_body>& message) {
    if (try_websocket(message)) return;
    ++server_->stats.requests;
    busy_ = true;
    keep_alive_ = message.keep_alive() && !server_->draining;
    version_ = message.version();
    head_ = message.method() == http::verb::head;

    // The request and its answered-once flag in one allocation.
    struct Exchange {
      HttpRequest request;
      std::atomic<bool> answered{false};
    };
    auto exchange = std::make_shared<Exchange>();
    exchange->request = to_http_request(message, remote_);
    auto request = std::shared_ptr<HttpRequest>(exchange, &exchange->request);
    auto incoming = request->header("x-request-id");
    request->request_id = acceptable_request_id(incoming) ? std::string(incoming) : new_request_id();
    request_id_ = request->request_id;
    method_ = request->method;
    path_ = request->path;

    // Cross-origin: the policy of this moment, kept for this request's answer. Loaded only when
    // it can matter (a list is set, or a preflight may need its refusal): not on every request.
    cors_.reset();
    cors_origin_.clear();
    if (server_->cors_configured.load(std::memory_order_relaxed) || request->method == "OPTIONS")
      cors_ = server_->cors.load(std::memory_order_acquire);
    if (cors_) {
      if (!cors_->empty()) cors_origin_ = std::string(request->header("origin"));
      // With no origin allowed too: the refusal says how to allow one.
      if (CorsPolicy::is_preflight(*request)) {
        auto answer = cors_->preflight(*request);
        cors_.reset();  // its headers are in the answer already
        return respond_unrouted(*request, std::move(answer));
      }
    }

    auto match = server_->router->match(request->method == "HEAD" ? "GET" : request->method, request->path);
    pattern_ = match.pattern;
    if (!match.route) {
      if (!match.allowed_methods.empty()) {
        std::string allow;
        for (const auto& method : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + method;
        auto response = HttpResponse::problem(405, "method_not_allowed",
                                              fmt::format("{} is not allowed on {}; use {}", request->method,
                                                          request->path, allow));
        response.header("allow", allow);
        return respond_unrouted(*request, std::move(response));
      }
      return respond_unrouted(*request,
                              HttpResponse::problem(404, "not_found", fmt::format("there is no route {}", request->path)));
    }
    request->params = std::move(match.params);
    if (auto refused = server_->gate(*match.route, *request)) {
      keep_alive_ = keep_alive_ && parser_->is_done();  // an unread body would be taken for the next request
      return respond(std::move(*refused));
    }
    if (match.route->proxy) return resolve_proxy(*match.route, request);

    auto self = shared_from_this();
    Responder responder = [self, exchange](HttpResponse response) {
      if (exchange->answered.exchange(true)) return;  // a second answer is a handler bug: ignore it
      if (self->dispatching_) {  // answered synchronously on our own strand: write after dispatch
        self->inline_response_ = std::move(response);
        return;
      }
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->respond(std::move(response));
      });
    };
    struct Dispatching {
      bool& flag;
      explicit Dispatching(bool& f) : flag(f) { flag = true; }
      ~Dispatching() { flag = false; }
    };
    try {
      Dispatching during(dispatching_);
      match.route->handler(*request, responder);
    } catch (const HttpRequestError& refused) {  // the handler's own refusal of what was sent
      responder(HttpResponse::problem(refused.status(), refused.code(), refused.what()));
    } catch (const std::exception& error) {
      server_->log.error("route handler threw", {{"route", match.pattern}, {"error", error.what()},
                                                 {"request_id", request->request_id}});
      responder(HttpResponse::problem(500, "internal_error", "the server failed to handle this request; it was logged",
                                      {{"request_id", request->request_id}}));
    }
    if (inline_response_) {
      auto response = std::move(*inline_response_);
      inline_response_.reset();
      respond(std::move(response));
    }
  }

  // The route picks the upstream (or answers itself), possibly later from another thread.
  void resolve_proxy(const RouteSpec& route, const std::shared_ptr<HttpRequest>& request) {
    auto self = shared_from_this();
    auto decided = std::make_shared<std::atomic<bool>>(false);
    ProxyDecide decide = [self, decided](ProxyDecision decision) {
      if (decided->exchange(true)) return;
      asio::post(self->stream_.get_executor(), [self, decision = std::move(decision)]() mutable {
        self->on_proxy_decision(std::move(decision));
      });
    };
    try {
      route.proxy(*request, decide);
    } catch (const HttpRequestError& refused) {
      decide(HttpResponse::problem(refused.status(), refused.code(), refused.what()));
    } catch (const std::exception& error) {
      server_->log.error("proxy route failed", {{"route", route.pattern}, {"error", error.what()},
                                                {"request_id", request->request_id}});
      decide(HttpResponse::problem(500, "internal_error", "the server failed to handle this request; it was logged",
                                   {{"request_id", request->request_id}}));
    }
  }

  void on_proxy_decision(ProxyDecision decision) {
    if (auto* answer = std::get_if<HttpResponse>(&decision)) {
      keep_alive_ = keep_alive_ && parser_->is_done();
      return respond(std::move(*answer));
    }
    auto target = std::make_shared<ProxyTarget>(std::move(std::get<ProxyTarget>(decision)));
    const auto& limits = server_->options.limits;
    ProxyExchange exchange{stream_, buffer_, *parser_, *target, upstream_, request_id_, remote_,
                           keep_alive_, limits.request_timeout, limits.upstream_timeout};
    asio::co_spawn(stream_.get_executor(), relay(std::move(exchange)),
                   [self = shared_from_this(), target](std::exception_ptr failure, ProxyResult result) {
                     if (failure) result = {HttpResponse::problem(502, "upstream_failed", "the proxied exchange failed")};
                     if (target->done) target->done(result.status);
                     self->on_proxied(std::move(result));
                   });
  }

  void on_proxied(ProxyResult result) {
    stream_.expires_never();
    cors_.reset();  // a proxied answer is the upstream's, headers and all  // relay() times the client's reads and writes on the stream itself
    if (result.problem) {
      keep_alive_ = keep_alive_ && result.keep_alive;
      return respond(std::move(*result.problem));
    }
    status_ = result.status;
    bytes_ = result.bytes;
    observe();
    keep_alive_ = result.keep_alive;
    on_written({});
  }

  void reply_and_close(HttpResponse response) {
    cors_.reset();  // not the previous request's
    busy_ = true;
    keep_alive_ = false;
    version_ = 11;
    if (request_id_.empty()) request_id_ = new_request_id();
    pattern_.clear();  // not the previous request's on this connection
    HttpRequest request;
    if (server_->unrouted && parser_ && parser_->is_header_done()) request = to_http_request(parser_->get(), remote_);
    request.request_id = request_id_;
    respond_unrouted(request, std::move(response));
  }

  void respond_unrouted(const HttpRequest& request, HttpResponse response) {
    if (server_->unrouted) server_->unrouted(request, response.status);
    respond(std::move(response));
  }

  void respond(HttpResponse response) {
    if (server_->draining) keep_alive_ = false;
    if (cors_) {
      cors_->decorate(cors_origin_, response);
      cors_.reset();
    }
    status_ = response.status;
    bytes_ = response.body.size();
    head_buffer_.clear();
    format_head(head_buffer_, response, version_, keep_alive_, request_id_, bytes_);
    body_ = std::move(response.body);
    if (head_ || status_ < 200 || status_ == 204 || status_ == 304) body_.clear();
    // Counted when the answer is ready, before it is written: a client that reads it and asks
    // /metrics at once must see it counted.
    observe();
    arm(server_->options.limits.request_timeout);  // a peer that never reads is dropped
    auto written = [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->deadline_ = kNoDeadline;
      self->on_written(self->timed_out_ ? asio::error::timed_out : ec);
    };
    // A small body joins the head: one buffer goes out with send(), cheaper in the kernel than
    // sendmsg() with an iovec, and copying a few KiB costs less than the difference.
    if (body_.size() <= 4096) {
      head_buffer_ += body_;
      return asio::async_write(stream_.socket(), asio::buffer(head_buffer_), std::move(written));
    }
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_buffer_), asio::buffer(body_)};
    asio::async_write(stream_.socket(), buffers, std::move(written));
  }

  // Metrics and the access log line of the request just answered.
  void observe() {
    double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    if (server_->observer) server_->observer(method_, pattern_, status_, seconds);
    if (server_->options.access_log)
      server_->log.info("request", {{"method", method_}, {"path", path_}, {"status", static_cast<std::int64_t>(status_)},
                                    {"bytes", static_cast<std::uint64_t>(bytes_)}, {"ms", seconds * 1000},
                                    {"request_id", request_id_}, {"remote", remote_}});
  }

  void on_written(beast::error_code ec) {
    busy_ = false;
    request_id_.clear();
    if (ec || !keep_alive_) return finish();
    wait_for_request();
  }

  void finish() {
    close();
    server_->forget(this);
  }

  static constexpr std::int64_t kNoDeadline = INT64_MAX;
  beast::tcp_stream stream_;
  std::atomic<std::int64_t> deadline_{kNoDeadline};  // coarse_now() nanoseconds
  bool timed_out_ = false;
  bool dispatching_ = false;
  std::optional<HttpResponse> inline_response_;
  std::shared_ptr<const CorsPolicy> cors_;  // set while a request that may need CORS headers is answered
  std::string cors_origin_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string head_buffer_, body_;  // the answer being written
  UpstreamConnection upstream_;  // proxy routes' kept-alive upstream
  std::shared_ptr<Server::Impl> server_;
  std::string remote_, request_id_, method_, path_, pattern_;
  Clock::time_point started_;
  unsigned version_ = 11;
  bool keep_alive_ = false, busy_ = false, head_ = false;
  int status_ = 0;
  std::size_t bytes_ = 0;
};

void Server::Impl::accept() {
  auto executor = options.single_io_thread ? asio::any_io_executor(io.get_executor()) : asio::any_io_executor(asio::make_strand(io));
  acceptor.async_accept(executor, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (ec) {
      return self->accept_guard.after_error(self->acceptor, ec, [self] { self->accept(); });
    }
    ++self->stats.connections_total;
    if (self->stats.connections_open >= self->options.limits.max_connections) {
      // Over the limit: a short answer and close, rather than a silent reset.
      ++self->stats.connections_refused;
      http_relay::refuse_connection(socket.native_handle());
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      ++self->stats.connections_open;
      // Each answer leaves in one write; Nagle would hold a pipelined second one back until
      // the first is acknowledged (up to the peer's delayed-ACK timeout).
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto session = std::make_shared<Session>(std::move(socket), self);
      {
        std::lock_guard lock(self->sessions_mutex);
        self->sessions.insert(session);
      }
      session->run();
    }
    self->accept();
  });
}

void Server::Impl::sweep() {
  sweeper.expires_after(std::chrono::milliseconds(100));
  sweeper.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;
    auto now = coarse_now();
    {
      std::lock_guard lock(self->sessions_mutex);
      for (const auto& session : self->sessions)
        if (session->take_expired(now)) session->post_expire();
    }
    self->sweep();
  });
}

void Server::Impl::forget(Session* session, bool still_open) {
  std::shared_ptr<Session> last;  // destroyed outside the lock
  std::lock_guard lock(sessions_mutex);
  for (auto it = sessions.begin(); it != sessions.end(); ++it) {
    if (it->get() == session) {
      last = *it;
      sessions.erase(it);
      if (!still_open) --stats.connections_open;
      break;
    }
  }
}

Server::Server(asio::io_context& io, std::shared_ptr<Router> router, Gate gate, Observer observer,
               ServerOptions options, log::Logger log)
    : impl_(std::make_shared<Impl>(io, std::move(router), std::move(gate), std::move(observer), std::move(options),
                                   std::move(log), stats_)) {}

Server::~Server() { stop(std::chrono::milliseconds(0)); }

void Server::set_websocket(std::shared_ptr<WebSocketHub> hub) { impl_->websocket = std::move(hub); }

void Server::set_unrouted(Unrouted unrouted) { impl_->unrouted = std::move(unrouted); }

void Server::set_cors(std::shared_ptr<const CorsPolicy> policy) {
  bool configured = policy && !policy->empty();
  impl_->cors.store(std::move(policy), std::memory_order_release);
  impl_->cors_configured.store(configured, std::memory_order_relaxed);
}

void Server::start() {
  bound_port_ = http_relay::listen_on(impl_->acceptor, impl_->options.address, impl_->options.port);
  impl_->draining = false;
  impl_->accept();
  impl_->sweep();
}

void Server::stop(std::chrono::milliseconds grace) {
  impl_->draining = true;
  asio::post(impl_->sweeper.get_executor(), [impl = impl_] { impl->sweeper.cancel(); });
  if (impl_->io.stopped()) {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  } else {
    auto closed = std::make_shared<std::promise<void>>();
    asio::post(impl_->acceptor.get_executor(), [impl = impl_, closed] {
      beast::error_code ignored;
      impl->acceptor.close(ignored);
      closed->set_value();
    });
    closed->get_future().wait_for(std::chrono::seconds(5));
  }
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(impl_->sessions_mutex);
    open.assign(impl_->sessions.begin(), impl_->sessions.end());
  }
  for (auto& session : open) session->drain(false);
  auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    {
      std::lock_guard lock(impl_->sessions_mutex);
      if (impl_->sessions.empty()) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    std::lock_guard lock(impl_->sessions_mutex);
    open.assign(impl_->sessions.begin(), impl_->sessions.end());
  }
  for (auto& session : open) session->drain(true);
}

}  // namespace synthorg::http_api
