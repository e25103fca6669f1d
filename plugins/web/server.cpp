#include "server.hpp"

#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <future>
#include <mutex>
#include <random>
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

#include "security.hpp"
#include "synthorg/crypto.hpp"

namespace synthorg::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

// Unique, not secret: a per-thread generator seeded once from OpenSSL.
std::string new_request_id() {
  thread_local std::mt19937_64 generator = [] {
    auto seed = crypto::random_bytes(8);
    std::uint64_t value = 0;
    std::memcpy(&value, seed.data(), sizeof value);
    return std::mt19937_64(value);
  }();
  return fmt::format("{:016x}", generator());
}

bool acceptable_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

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

class Session;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io, std::shared_ptr<FileStore> files, ApiOptions api, ServerOptions options, log::Logger log)
      : io(io), acceptor(asio::make_strand(io)), files(std::move(files)), api(std::move(api)),
        options(std::move(options)), log(std::move(log)) {}
  void accept();

  asio::io_context& io;
  tcp::acceptor acceptor;
  std::shared_ptr<FileStore> files;
  ApiOptions api;
  ServerOptions options;
  log::Logger log;
  ServerStats stats;
  std::atomic<bool> draining{false};
  std::mutex sessions_mutex;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    beast::error_code ignored;
    auto endpoint = stream_.socket().remote_endpoint(ignored);
    remote_ = ignored ? "unknown" : endpoint.address().to_string();
  }
  ~Session() {
    --server_->stats.connections_open;
    std::lock_guard lock(server_->sessions_mutex);
    server_->sessions.erase(this);
  }

  asio::awaitable<void> run();
  asio::any_io_executor executor() { return stream_.get_executor(); }
  // From Server::stop: an idle connection closes now, a busy one after its response.
  void drain(bool force) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), force] {
      if ((force || !self->busy_) && !self->taken_over_) {
        beast::error_code ignored;
        self->stream_.socket().close(ignored);
      }
    });
  }

 private:
  asio::awaitable<bool> handle(http::request<http::string_body>& request);
  asio::awaitable<bool> api(http::request<http::string_body>& request, bool upgrade);
  asio::awaitable<bool> send(StaticReply reply, const http::request<http::string_body>& request,
                             const std::string& nonce, bool keep_alive);
  asio::awaitable<bool> send_file(http::response<http::empty_body>& head, const StaticReply& reply);
  void log_request(const http::request<http::string_body>& request, int status, std::uint64_t bytes,
                   const std::string& request_id);

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<Server::Impl> server_;
  std::string remote_;
  Clock::time_point started_;
  bool busy_ = false, taken_over_ = false;
};

asio::awaitable<void> Session::run() {
  const auto& limits = server_->options;
  beast::error_code ec;
  for (;;) {
    busy_ = false;
    if (server_->draining) break;
    if (buffer_.size() == 0) {  // idle: wait for the first bytes of the next request
      stream_.expires_after(limits.idle_timeout);
      auto got = co_await stream_.async_read_some(buffer_.prepare(4096), redirect_error(use_awaitable, ec));
      if (ec) break;
      buffer_.commit(got);
    }
    busy_ = true;
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    stream_.expires_after(limits.request_timeout);
    co_await http::async_read(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
    started_ = Clock::now();
    if (ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset ||
          ec == http::error::partial_message)
        break;
      http::request<http::string_body> none{http::verb::get, "/", 11};
      auto reply = ec == http::error::header_limit ? problem(431, "headers_too_large", "the request headers are too large")
                   : ec == http::error::body_limit ? problem(413, "body_too_large", "the request body is too large")
                                                   : problem(400, "malformed_request",
                                                             fmt::format("the request is not valid HTTP/1.1: {}", ec.message()));
      co_await send(std::move(reply), none, new_nonce(), false);
      break;
    }
    auto request = parser.release();
    ++server_->stats.requests;
    bool keep_alive = co_await handle(request);
    if (taken_over_) co_return;  // the stream now belongs to a WebSocket tunnel
    if (!keep_alive) break;
  }
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

asio::awaitable<bool> Session::handle(http::request<http::string_body>& request) {
  auto target = std::string_view(request.target().data(), request.target().size());
  auto path = target.substr(0, target.find('?'));
  bool keep_alive = request.keep_alive() && !server_->draining;
  if (path == "/api" || path.rfind("/api/", 0) == 0)
    co_return co_await api(request, beast::websocket::is_upgrade(request));
  auto nonce = new_nonce();
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    auto reply = problem(405, "method_not_allowed", "the web listener serves files: use GET or HEAD");
    reply.headers.set(http::field::allow, "GET, HEAD");
    co_return co_await send(std::move(reply), request, nonce, keep_alive);
  }
  if (path == "/healthz") {
    StaticReply reply;
    reply.headers.set(http::field::content_type, "application/json");
    reply.headers.set(http::field::cache_control, "no-store");
    reply.body = StaticReply::Body::owned;
    reply.owned = R"({"status":"ok"})";
    co_return co_await send(std::move(reply), request, nonce, keep_alive);
  }
  co_return co_await send(server_->files->serve(request, nonce), request, nonce, keep_alive);
}

asio::awaitable<bool> Session::api(http::request<http::string_body>& request, bool upgrade) {
  auto incoming = request["x-request-id"];
  auto request_id = acceptable_request_id(std::string_view(incoming.data(), incoming.size()))
                        ? std::string(incoming)
                        : new_request_id();
  auto nonce = new_nonce();
  bool keep_alive = request.keep_alive() && !server_->draining;
  auto dispatcher = server_->api.dispatcher ? server_->api.dispatcher() : nullptr;
  std::optional<UpstreamTarget> target = server_->api.upstream;
  auto path_only = std::string_view(request.target().data(), request.target().size());
  path_only = path_only.substr(0, path_only.find('?'));
  bool via_port = dispatcher && (upgrade || dispatcher->streams(std::string(request.method_string()), path_only));
  if (via_port) {
    // An upgrade, or a proxy route (a workload's service), cannot travel as a value: go to
    // http-api's own port on loopback instead.
    auto [host, port] = dispatcher->endpoint();
    target = UpstreamTarget{host, std::to_string(port)};
  }
  if (via_port || (!dispatcher && target)) {
    if (!target) {
      co_return co_await send(problem(502, "api_unavailable",
                                      "no API behind this listener: enable http-api in this kernel or set api_upstream"),
                              request, nonce, false);
    }
    auto info = ForwardInfo{remote_, request_id};
    auto method = std::string(request.method_string());
    auto path = std::string(request.target());
    ProxyOutcome outcome;
    if (upgrade) {
      outcome = co_await proxy_upgrade(stream_, buffer_, request, *target, info, server_->api.proxy, nonce,
                                       server_->options.hsts);
      if (outcome.status == 101) taken_over_ = true;
    } else {
      outcome = co_await proxy_request(stream_, request, *target, info, server_->api.proxy, nonce,
                                       server_->options.hsts);
    }
    if (outcome.failure) {
      auto status = static_cast<int>(outcome.failure->status);
      server_->log.warn("API upstream failed", {{"upstream", target->host + ":" + target->port}, {"path", path},
                                                {"status", static_cast<std::int64_t>(status)},
                                                {"request_id", request_id}});
      co_return co_await send(std::move(*outcome.failure), request, nonce, false);
    }
    if (server_->options.access_log)
      server_->log.info("request", {{"method", method}, {"path", path}, {"status", static_cast<std::int64_t>(outcome.status)},
                                    {"bytes", outcome.bytes}, {"request_id", request_id}, {"remote", remote_},
                                    {"upstream", target->host + ":" + target->port}});
    co_return outcome.keep_alive && keep_alive && !upgrade;
  }
  if (!dispatcher) {
    co_return co_await send(problem(502, "api_unavailable",
                                    "no API behind this listener: enable http-api in this kernel or set api_upstream"),
                            request, nonce, keep_alive);
  }

  // In process: hand the request over and wait, on this strand, for the one answer. The timer is
  // the wake-up: the responder stores the answer and cancels it on our strand, so the answer can
  // come from any thread, or at once from inside dispatch().
  auto http_request = to_http_request(request, remote_);
  http_request.request_id = request_id;
  struct Pending {
    std::mutex mutex;
    std::optional<HttpResponse> response;
  };
  auto pending = std::make_shared<Pending>();
  // Shared: an answer later than the timeout still finds the timer alive.
  auto wake = std::make_shared<asio::steady_timer>(stream_.get_executor());
  wake->expires_after(server_->api.proxy.timeout);
  auto executor = stream_.get_executor();
  dispatcher->dispatch(std::move(http_request), [pending, wake, executor](HttpResponse response) {
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
                                                     server_->api.proxy.timeout.count()));
  reply.headers.set("X-Request-Id", request_id);
  co_return co_await send(std::move(reply), request, nonce, keep_alive);
}

asio::awaitable<bool> Session::send(StaticReply reply, const http::request<http::string_body>& request,
                                    const std::string& nonce, bool keep_alive) {
  beast::error_code ec;
  bool head = request.method() == http::verb::head;
  auto status = reply.status;
  auto length = reply.content_length();
  auto prepare = [&](auto& message) {
    message.version(request.version());
    message.result(status);
    message.set(http::field::server, "synthorg");
    message.set(http::field::date, http_date_now());
    set_security_headers(message.base(), nonce, server_->options.hsts);
    message.keep_alive(keep_alive);
  };
  stream_.expires_after(server_->options.request_timeout);  // a peer that never reads is dropped
  bool bodiless = status == http::status::not_modified || status == http::status::no_content;
  if (head || reply.body == StaticReply::Body::none || reply.body == StaticReply::Body::file || bodiless) {
    http::response<http::empty_body> message{std::move(reply.headers)};
    prepare(message);
    if (!bodiless) message.content_length(length);
    if (reply.body == StaticReply::Body::file && !head && !bodiless) {
      bool ok = co_await send_file(message, reply);
      log_request(request, static_cast<int>(status), length, {});
      co_return ok && keep_alive;
    }
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
  log_request(request, static_cast<int>(status), head ? 0 : length, {});
  co_return !ec && keep_alive;
}

// Large files go from the page cache to the socket with sendfile(2): the header through Beast,
// then the bytes without passing through user space.
asio::awaitable<bool> Session::send_file(http::response<http::empty_body>& head, const StaticReply& reply) {
  beast::error_code ec;
  int fd = ::open(reply.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    head.result(http::status::not_found);
    head.content_length(0);
    head.keep_alive(false);
    http::response_serializer<http::empty_body> serializer{head};
    co_await http::async_write_header(stream_, serializer, redirect_error(use_awaitable, ec));
    co_return false;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  http::response_serializer<http::empty_body> serializer{head};
  co_await http::async_write_header(stream_, serializer, redirect_error(use_awaitable, ec));
  if (ec) co_return false;
  auto& socket = stream_.socket();
  socket.native_non_blocking(true, ec);
  if (ec) co_return false;
  auto offset = static_cast<off_t>(reply.offset);
  auto remaining = reply.length;
  while (remaining > 0) {
    auto sent = ::sendfile(socket.native_handle(), fd, &offset, std::min<std::uint64_t>(remaining, 1u << 20));
    if (sent > 0) {
      remaining -= static_cast<std::uint64_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Wait for room in the socket, but not for ever: a reader that stalls is cut off.
      auto guard = std::make_shared<asio::steady_timer>(stream_.get_executor());
      guard->expires_after(server_->options.request_timeout);
      guard->async_wait([self = shared_from_this()](beast::error_code error) {
        if (!error) {
          beast::error_code ignored;
          self->stream_.socket().cancel(ignored);
        }
      });
      co_await socket.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
      guard->cancel();
      if (ec) co_return false;
      continue;
    }
    co_return false;  // an error, or the file shrank under us: the length promised cannot be met
  }
  co_return true;
}

void Session::log_request(const http::request<http::string_body>& request, int status, std::uint64_t bytes,
                          const std::string& request_id) {
  if (!server_->options.access_log) return;
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
  server_->log.info("request", {{"method", std::string(request.method_string())},
                                {"path", std::string(request.target())},
                                {"status", static_cast<std::int64_t>(status)},
                                {"bytes", bytes},
                                {"ms", ms},
                                {"remote", remote_},
                                {"request_id", request_id}});
}

void Server::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) {
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
  auto& options = impl_->options;
  beast::error_code ec;
  auto address = asio::ip::make_address(options.address, ec);
  if (ec)
    throw std::runtime_error(fmt::format("web: '{}' is not an IP address to listen on (fix: e.g. 0.0.0.0 or 127.0.0.1)",
                                         options.address));
  tcp::endpoint endpoint(address, options.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    acceptor.close(ignored);
    throw std::runtime_error(fmt::format("web: cannot listen on {}:{}: {} (fix: free the port or set another one)",
                                         options.address, options.port, ec.message()));
  }
  port_ = acceptor.local_endpoint().port();
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
