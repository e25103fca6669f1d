#include "server.hpp"

#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <ctime>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <fmt/format.h>

#include "http_framing.hpp"
#include "http_relay.hpp"
#include "security.hpp"
#include "listener.hpp"
#include "request_id.hpp"

namespace synthorg::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;
using http_relay::acceptable_request_id;
using http_relay::new_request_id;

namespace {

// The Date header, formatted once a second per thread.
const std::string& http_date_now() {
  thread_local std::time_t last = 0;
  thread_local std::string text;
  auto now = std::time(nullptr);
  if (now != last) {
    last = now;
    std::tm parts{};
    gmtime_r(&now, &parts);
    char buffer[64];
    std::strftime(buffer, sizeof buffer, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    text = buffer;
  }
  return text;
}

struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

StaticReply problem(int status, std::string_view code, std::string_view detail) {
  return problem_reply(status, code, detail);
}

StaticReply from_http_response(HttpResponse response) {
  StaticReply reply;
  reply.status = static_cast<http::status>(response.status);
  for (auto& [name, value] : response.headers) {
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding")) continue;
    reply.headers.insert(name, value);  // insert: several Set-Cookie must all survive
  }
  if (!reply.headers.count(http::field::cache_control)) reply.headers.set(http::field::cache_control, "no-store");
  reply.body = StaticReply::Body::owned;
  reply.owned = std::move(response.body);
  return reply;
}

HttpRequest to_http_request(const http::request<http::string_body>& message, const std::string& remote) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  auto target = std::string_view(message.target().data(), message.target().size());
  auto question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  for (const auto& field : message) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    request.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  request.body = message.body();
  request.remote_address = remote;
  return request;
}

}  // namespace

// Where one request goes, decided from its header alone: a relayed one must not have its body
// read first.
struct Route {
  enum class Kind { files, dispatch, relay, unavailable } kind = Kind::files;
  std::shared_ptr<HttpDispatcher> dispatcher;
  ProxyTarget target;  // Kind::relay
  bool upgrade = false;
};

class Session;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io, std::shared_ptr<FileStore> files, ApiOptions api, ServerOptions options, log::Logger log)
      : io(io), acceptor(asio::make_strand(io)), files(std::move(files)), api(std::move(api)),
        options(std::move(options)), log(std::move(log)) {}
  void accept();
  Route route(const http::request_header<>& head) const;

  asio::io_context& io;
  tcp::acceptor acceptor;
  std::shared_ptr<FileStore> files;
  ApiOptions api;
  ServerOptions options;
  log::Logger log;
  ServerStats stats;
  std::atomic<bool> draining{false};
  http_relay::AcceptGuard accept_guard{"web", log, acceptor.get_executor(), stats.connections_refused};
  std::mutex sessions_mutex;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
};

Route Server::Impl::route(const http::request_header<>& head) const {
  Route route;
  auto target = std::string_view(head.target().data(), head.target().size());
  auto path = target.substr(0, target.find('?'));
  if (path != "/api" && path.rfind("/api/", 0) != 0) return route;
  route.upgrade = beast::websocket::is_upgrade(head);
  route.dispatcher = api.dispatcher ? api.dispatcher() : nullptr;
  std::optional<Upstream> upstream = api.upstream;
  if (route.dispatcher) {
    // An upgrade, or a proxy route (a workload's service), cannot travel as a value: it goes to
    // http-api's own port on loopback instead.
    if (!route.upgrade && !route.dispatcher->streams(std::string(head.method_string()), path)) {
      route.kind = Route::Kind::dispatch;
      return route;
    }
    auto [host, port] = route.dispatcher->endpoint();
    upstream = Upstream{host, port};
  }
  if (!upstream) {
    route.kind = Route::Kind::unavailable;
    return route;
  }
  route.kind = Route::Kind::relay;
  route.target.host = upstream->host;
  route.target.port = upstream->port;
  route.target.target = std::string(target);
  return route;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket)), deadline_(stream_.socket()), server_(std::move(server)) {
    beast::error_code ignored;
    auto endpoint = stream_.socket().remote_endpoint(ignored);
    remote_ = ignored ? "unknown" : endpoint.address().to_string();
    // Synchronous writes return would_block instead of waiting (write_all tries one first);
    // asynchronous operations are not affected.
    stream_.socket().non_blocking(true, ignored);
  }
  ~Session() {
    --server_->stats.connections_open;
    std::lock_guard lock(server_->sessions_mutex);
    server_->sessions.erase(this);
  }

  asio::awaitable<void> run();
  asio::any_io_executor executor() { return stream_.get_executor(); }
  // From Server::stop: an idle connection closes now, a busy one after its response; a WebSocket
  // tunnel has no response to finish, so it closes now too.
  void drain(bool force) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), force] {
      if (force || !self->busy_ || self->upgrading_) {
        beast::error_code ignored;
        self->stream_.socket().close(ignored);
      }
    });
  }

 private:
  asio::awaitable<bool> handle(http::request<http::string_body>& request, Route& route);
  asio::awaitable<bool> dispatch(http::request<http::string_body>& request, HttpDispatcher& dispatcher);
  asio::awaitable<bool> relay(Route& route);
  asio::awaitable<bool> send(StaticReply reply, unsigned version, bool head, const std::string& nonce, bool keep_alive);
  asio::awaitable<bool> send_preformatted(const StaticReply& reply, unsigned version, bool head,
                                          const std::string& nonce, bool keep_alive);
  asio::awaitable<bool> send_with_fields(StaticReply reply, unsigned version, bool no_body, bool bodiless,
                                         const std::string& nonce, bool keep_alive);
  asio::awaitable<bool> write_all(const std::array<asio::const_buffer, 4>& buffers);
  asio::awaitable<bool> send_file(int fd, std::uint64_t offset, std::uint64_t length);
  void log_request(std::string_view method, std::string_view target, int status, std::uint64_t bytes,
                   const std::string& request_id);
  std::string request_id_of(const http::request_header<>& head) const;

  beast::tcp_stream stream_;
  http_relay::Deadline deadline_;  // on stream_'s socket: declared after it
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http_relay::UpstreamConnection upstream_;  // relayed requests' kept-alive upstream connection
  std::shared_ptr<Server::Impl> server_;
  std::string remote_;
  std::string_view method_, target_;  // of the request being handled, for the access log
  std::string head_buffer_;  // the head of preformatted answers, reused
  Clock::time_point started_;
  bool busy_ = false, upgrading_ = false;
};

asio::awaitable<void> Session::run() {
  const auto& limits = server_->options;
  beast::error_code ec;
  for (;;) {
    busy_ = upgrading_ = false;
    method_ = target_ = {};
    if (server_->draining) break;
    if (buffer_.size() == 0) {  // idle: wait for the first bytes of the next request
      stream_.expires_after(limits.idle_timeout);
      auto got = co_await stream_.async_read_some(buffer_.prepare(4096), redirect_error(use_awaitable, ec));
      if (ec) break;
      buffer_.commit(got);
    }
    busy_ = true;
    auto& parser = parser_.emplace();
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    // No limit while the header is read: Beast checks a Content-Length against the limit right
    // there, and a relayed body has none (not boost::none: Boost 1.74 takes an empty limit as
    // exceeded). The limit for bodies read whole is applied below, once the route is known.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    // Our deadline rather than tcp_stream's, which closes the socket: a request that stalls
    // half-way is owed a 408.
    stream_.expires_never();
    deadline_.arm(limits.request_timeout);
    co_await http::async_read_header(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
    Route route;
    if (!ec) {
      // A head whose framing cannot be trusted (http_framing.hpp): answered, and the connection
      // closed before any of its body is read, since what follows might be taken for a request.
      if (auto error = http_relay::framing_error(parser.get(), parser.get().version())) {
        deadline_.disarm();
        co_await send(problem(error->status, error->code, error->detail), 11, false, new_nonce(), false);
        break;
      }
      route = server_->route(parser.get());
      // A relayed body streams to the upstream as it comes; every other one is read whole here.
      if (route.kind != Route::Kind::relay && !parser.is_done()) {
        if (auto length = parser.content_length(); length && *length > limits.max_body_bytes) {
          ec = http::error::body_limit;
        } else {
          parser.body_limit(limits.max_body_bytes);  // a chunked body is counted as it comes
          co_await http::async_read(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
        }
      }
    }
    deadline_.disarm();
    started_ = Clock::now();
    if (deadline_.fired()) {
      co_await send(problem(408, "request_timeout",
                            fmt::format("the request did not arrive within {} ms", limits.request_timeout.count())),
                    11, false, new_nonce(), false);
      break;
    }
    if (ec) {
      if (ec == http::error::end_of_stream || ec == asio::error::connection_reset || ec == http::error::partial_message ||
          ec == asio::error::operation_aborted)
        break;
      auto reply = ec == http::error::header_limit
                       ? problem(431, "headers_too_large",
                                 fmt::format("the request headers exceed {} bytes", limits.max_header_bytes))
                   : ec == http::error::body_limit
                       ? problem(413, "body_too_large",
                                 fmt::format("the request body exceeds {} bytes (max_body_bytes)", limits.max_body_bytes))
                       : problem(400, "malformed_request", fmt::format("the request is not valid HTTP/1.1: {}", ec.message()));
      co_await send(std::move(reply), 11, false, new_nonce(), false);
      break;
    }
    ++server_->stats.requests;
    auto& request = parser.get();
    method_ = std::string_view(request.method_string().data(), request.method_string().size());
    target_ = std::string_view(request.target().data(), request.target().size());
    bool keep_alive = co_await handle(request, route);
    if (!keep_alive) break;
  }
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

asio::awaitable<bool> Session::handle(http::request<http::string_body>& request, Route& route) {
  bool keep_alive = request.keep_alive() && !server_->draining;
  bool head = request.method() == http::verb::head;
  switch (route.kind) {
    case Route::Kind::relay:
      co_return co_await relay(route);
    case Route::Kind::dispatch:
      co_return co_await dispatch(request, *route.dispatcher);
    case Route::Kind::unavailable:
      co_return co_await send(problem(502, "api_unavailable",
                                      "no API behind this listener: enable http-api in this kernel or set api_upstream"),
                              request.version(), head, new_nonce(), keep_alive);
    case Route::Kind::files:
      break;
  }
  auto nonce = new_nonce();
  if (request.method() != http::verb::get && !head) {
    auto reply = problem(405, "method_not_allowed", "the web listener serves files: use GET or HEAD");
    reply.headers.set(http::field::allow, "GET, HEAD");
    co_return co_await send(std::move(reply), request.version(), head, nonce, keep_alive);
  }
  if (target_.substr(0, target_.find('?')) == "/healthz") {
    StaticReply reply;
    reply.headers.set(http::field::content_type, "application/json");
    reply.headers.set(http::field::cache_control, "no-store");
    reply.body = StaticReply::Body::owned;
    reply.owned = R"({"status":"ok"})";
    co_return co_await send(std::move(reply), request.version(), head, nonce, keep_alive);
  }
  co_return co_await send(server_->files->serve(request, nonce), request.version(), head, nonce, keep_alive);
}

std::string Session::request_id_of(const http::request_header<>& head) const {
  auto incoming = head["x-request-id"];
  return acceptable_request_id(std::string_view(incoming.data(), incoming.size())) ? std::string(incoming)
                                                                                   : new_request_id();
}

// Through synthorg-http-relay, the reverse proxy http-api's proxy routes use too: the body streams
// up, the answer streams down, an upgrade becomes a tunnel, and the upstream connection stays
// open for this client connection's next request. The hop is to our own API, so the caller's
// credentials go with it.
asio::awaitable<bool> Session::relay(Route& route) {
  const auto& head = parser_->get();
  auto request_id = request_id_of(head);
  // The relay takes the parser over: keep what the log and a problem answer need.
  std::string method(head.method_string()), target(head.target());
  method_ = method;
  target_ = target;
  auto version = head.version();
  bool keep_alive = head.keep_alive() && !server_->draining;
  upgrading_ = route.upgrade;
  auto nonce = new_nonce();
  bool hsts = server_->options.hsts;
  http_relay::ProxyExchange exchange{stream_, buffer_, *parser_, route.target, upstream_, request_id, remote_,
                                     keep_alive, server_->options.request_timeout, server_->api.timeout,
                                     server_->api.connect_timeout, /*forward_credentials=*/true,
                                     [&nonce, hsts](http::fields& fields) {
                                       set_security_headers(fields, nonce, hsts);
                                       fields.set(http::field::server, "synthorg");
                                     }};
  auto result = co_await http_relay::relay(std::move(exchange));
  auto upstream = fmt::format("{}:{}", route.target.host, route.target.port);
  if (result.problem) {
    if (result.problem->status != 408)
      server_->log.warn("API upstream failed", {{"upstream", upstream}, {"path", target},
                                                {"status", static_cast<std::int64_t>(result.problem->status)},
                                                {"request_id", request_id}});
    auto reply = from_http_response(std::move(*result.problem));
    reply.headers.set("X-Request-Id", request_id);
    // The body may be half read: the connection cannot carry another request.
    co_await send(std::move(reply), version, method == "HEAD", nonce, false);
    co_return false;
  }
  if (server_->options.access_log)
    server_->log.info("request", {{"method", method}, {"path", target}, {"status", static_cast<std::int64_t>(result.status)},
                                  {"bytes", result.bytes}, {"request_id", request_id}, {"remote", remote_},
                                  {"upstream", upstream}});
  co_return result.keep_alive;
}

// In process: hand the request over and wait, on this strand, for the one answer. The timer is
// the wake-up: the responder stores the answer and cancels it on our strand, so the answer can
// come from any thread, or at once from inside dispatch().
asio::awaitable<bool> Session::dispatch(http::request<http::string_body>& request, HttpDispatcher& dispatcher) {
  auto request_id = request_id_of(request);
  auto nonce = new_nonce();
  bool keep_alive = request.keep_alive() && !server_->draining;
  auto http_request = to_http_request(request, remote_);
  http_request.request_id = request_id;
  struct Pending {
    std::mutex mutex;
    std::optional<HttpResponse> response;
  };
  auto pending = std::make_shared<Pending>();
  // Shared: an answer later than the timeout still finds the timer alive.
  auto wake = std::make_shared<asio::steady_timer>(stream_.get_executor());
  wake->expires_after(server_->api.timeout);
  auto executor = stream_.get_executor();
  dispatcher.dispatch(std::move(http_request), [pending, wake, executor](HttpResponse response) {
    {
      std::lock_guard lock(pending->mutex);
      pending->response = std::move(response);
    }
    asio::post(executor, [wake] { wake->cancel(); });
  });
  bool ready = false;
  {
    std::lock_guard lock(pending->mutex);
    ready = pending->response.has_value();
  }
  beast::error_code ec;
  if (!ready) co_await wake->async_wait(redirect_error(use_awaitable, ec));
  std::optional<HttpResponse> response;
  {
    std::lock_guard lock(pending->mutex);
    response = std::move(pending->response);
  }
  StaticReply reply = response ? from_http_response(std::move(*response))
                               : problem(504, "api_timeout",
                                         fmt::format("the API did not answer within {} ms",
                                                     server_->api.timeout.count()));
  reply.headers.set("X-Request-Id", request_id);
  co_return co_await send(std::move(reply), request.version(), request.method() == http::verb::head, nonce,
                          keep_alive);
}

asio::awaitable<bool> Session::send(StaticReply reply, unsigned version, bool head, const std::string& nonce,
                                    bool keep_alive) {
  auto status = reply.status;
  bool bodiless = status == http::status::not_modified || status == http::status::no_content;
  // A large file goes with sendfile(2): opened before any byte of the answer is sent, so that a
  // file gone meanwhile can still be a 404.
  FileDescriptor file;
  if (reply.body == StaticReply::Body::file && !head && !bodiless) {
    file.fd = ::open(reply.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (file.fd < 0) reply = problem(404, "not_found", "there is no such file");
    status = reply.status;
  }
  auto length = reply.content_length();
  auto offset = reply.offset, file_length = reply.length;
  bool ok = false;
  if (reply.preformatted && status == http::status::ok) {
    ok = co_await send_preformatted(reply, version, head, nonce, keep_alive);
  } else {
    ok = co_await send_with_fields(std::move(reply), version, head || bodiless, bodiless, nonce, keep_alive);
  }
  if (ok && file.fd >= 0) ok = co_await send_file(file.fd, offset, file_length);
  log_request(method_, target_, static_cast<int>(status), head ? 0 : length, {});
  co_return ok && keep_alive;
}

// The hot path (every cached file, index.html): the head is the per-request lines (status, Date,
// Content-Length, the security headers with this response's nonce, Connection) in a buffer the
// connection reuses, then the file's own lines, preformatted once when it was cached; head and
// body leave in one gathered write. No Beast fields, so no allocation per header.
asio::awaitable<bool> Session::send_preformatted(const StaticReply& reply, unsigned version, bool head,
                                                 const std::string& nonce, bool keep_alive) {
  auto& out = head_buffer_;
  out.clear();
  out += version == 10 ? "HTTP/1.0 200 OK\r\nServer: synthorg\r\nDate: " : "HTTP/1.1 200 OK\r\nServer: synthorg\r\nDate: ";
  out += http_date_now();
  out += "\r\nContent-Length: ";
  out += std::to_string(reply.content_length());
  out += "\r\n";
  append_security_headers(out, nonce, server_->options.hsts);
  if (!keep_alive) out += "Connection: close\r\n";
  else if (version == 10) out += "Connection: keep-alive\r\n";
  asio::const_buffer body;
  if (!head && reply.body == StaticReply::Body::shared)
    body = asio::buffer(reply.shared->data() + reply.offset, static_cast<std::size_t>(reply.length));
  else if (!head && reply.body == StaticReply::Body::owned)
    body = asio::buffer(reply.owned);
  std::array<asio::const_buffer, 4> buffers{asio::buffer(out), asio::buffer(*reply.preformatted),
                                            asio::buffer(std::string_view("\r\n")), body};
  co_return co_await write_all(buffers);
}

// Every other answer (problems, 304, 206, the API's) through Beast's message and serializer.
asio::awaitable<bool> Session::send_with_fields(StaticReply reply, unsigned version, bool no_body, bool bodiless,
                                                const std::string& nonce, bool keep_alive) {
  beast::error_code ec;
  auto length = reply.content_length();
  auto prepare = [&](auto& message) {
    message.version(version);
    message.result(reply.status);
    message.set(http::field::server, "synthorg");
    message.set(http::field::date, http_date_now());
    set_security_headers(message.base(), nonce, server_->options.hsts);
    message.keep_alive(keep_alive);
  };
  stream_.expires_after(server_->options.request_timeout);  // a peer that never reads is dropped
  if (no_body || reply.body == StaticReply::Body::none || reply.body == StaticReply::Body::file) {
    http::response<http::empty_body> message{std::move(reply.headers)};
    prepare(message);
    if (!bodiless) message.content_length(length);
    http::response_serializer<http::empty_body> serializer{message};
    co_await http::async_write_header(stream_, serializer, redirect_error(use_awaitable, ec));
  } else if (reply.body == StaticReply::Body::shared) {
    // Straight from the cache: the span points into bytes the reply keeps alive.
    http::response<http::span_body<const char>> message{std::move(reply.headers)};
    prepare(message);
    message.body() = {reply.shared->data() + reply.offset, static_cast<std::size_t>(reply.length)};
    message.content_length(reply.length);
    co_await http::async_write(stream_, message, redirect_error(use_awaitable, ec));
  } else {
    http::response<http::string_body> message{std::move(reply.headers)};
    prepare(message);
    message.body() = std::move(reply.owned);
    message.content_length(message.body().size());
    co_await http::async_write(stream_, message, redirect_error(use_awaitable, ec));
  }
  stream_.expires_never();
  co_return !ec;
}

// What the socket takes at once goes in one writev with no trip through the reactor (the
// socket is non-blocking for synchronous calls); the rest waits for room, under a deadline that
// drops a peer that never reads.
asio::awaitable<bool> Session::write_all(const std::array<asio::const_buffer, 4>& buffers) {
  beast::error_code ec;
  auto& socket = stream_.socket();
  auto total = asio::buffer_size(buffers);
  auto sent = socket.write_some(buffers, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {}, sent = 0;
  if (ec) co_return false;
  if (sent == total) co_return true;
  beast::buffers_suffix<std::array<asio::const_buffer, 4>> rest(buffers);
  rest.consume(sent);
  deadline_.arm(server_->options.request_timeout);
  co_await asio::async_write(socket, rest, redirect_error(use_awaitable, ec));
  deadline_.disarm();
  co_return !ec;
}

// The bytes of a large file go from the page cache to the socket without passing through user
// space; the head went before.
asio::awaitable<bool> Session::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  beast::error_code ec;
  auto& socket = stream_.socket();
  auto position = static_cast<off_t>(offset);
  auto remaining = length;
  while (remaining > 0) {
    auto sent = ::sendfile(socket.native_handle(), fd, &position, std::min<std::uint64_t>(remaining, 1u << 20));
    if (sent > 0) {
      remaining -= static_cast<std::uint64_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Wait for room in the socket, but not for ever: a reader that stalls is cut off.
      deadline_.arm(server_->options.request_timeout);
      co_await socket.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
      deadline_.disarm();
      if (ec) co_return false;
      continue;
    }
    co_return false;  // an error, or the file shrank under us: the length promised cannot be met
  }
  co_return true;
}

void Session::log_request(std::string_view method, std::string_view target, int status, std::uint64_t bytes,
                          const std::string& request_id) {
  if (!server_->options.access_log) return;
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
  server_->log.info("request", {{"method", std::string(method)},
                                {"path", std::string(target)},
                                {"status", static_cast<std::int64_t>(status)},
                                {"bytes", bytes},
                                {"ms", ms},
                                {"remote", remote_},
                                {"request_id", request_id}});
}

void Server::Impl::accept() {
  auto executor = options.single_io_thread ? asio::any_io_executor(io.get_executor()) : asio::any_io_executor(asio::make_strand(io));
  acceptor.async_accept(executor, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (ec) {
      return self->accept_guard.after_error(self->acceptor, ec, [self] { self->accept(); });
    }
    if (self->stats.connections_open >= self->options.max_connections) {
      ++self->stats.connections_refused;
      http_relay::refuse_connection(socket.native_handle());
      socket.close(ec);
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      ++self->stats.connections_open;
      auto session = std::make_shared<Session>(std::move(socket), self);
      {
        std::lock_guard lock(self->sessions_mutex);
        self->sessions.emplace(session.get(), session);
      }
      auto executor = session->executor();
      asio::co_spawn(executor, [session]() -> asio::awaitable<void> { co_await session->run(); }, asio::detached);
    }
    self->accept();
  });
}

Server::Server(asio::io_context& io, std::shared_ptr<FileStore> files, ApiOptions api, ServerOptions options,
               log::Logger log)
    : impl_(std::make_shared<Impl>(io, std::move(files), std::move(api), std::move(options), std::move(log))) {}

Server::~Server() { stop(std::chrono::milliseconds(0)); }

const ServerStats& Server::stats() const noexcept { return impl_->stats; }

void Server::start() {
  port_ = http_relay::listen_on(impl_->acceptor, impl_->options.address, impl_->options.port);
  impl_->draining = false;
  impl_->accept();
}

void Server::stop(std::chrono::milliseconds grace) {
  if (impl_->draining.exchange(true)) return;
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
  auto each_session = [this](bool force) {
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard lock(impl_->sessions_mutex);
      for (auto& [raw, weak] : impl_->sessions)
        if (auto session = weak.lock()) open.push_back(std::move(session));
    }
    for (auto& session : open) session->drain(force);
  };
  each_session(false);
  auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline && impl_->stats.connections_open > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  each_session(true);
}

}  // namespace synthorg::web
