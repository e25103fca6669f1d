// The blocking HTTP/1.1 client (synthorg/http_client.hpp) on Boost.Beast.
//
// Each connection owns a private io_context: a call drives only its own connection's
// operations, in short slices, so timeouts and stop tokens are honoured without a timer thread
// and concurrent calls never run each other's handlers. Idle keep-alive connections are pooled.
#include "synthorg/http_client.hpp"
#include "synthorg/trace_context.hpp"

#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <variant>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

namespace synthorg::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

struct Target {
  enum class Scheme { unix_socket, http, https } scheme = Scheme::http;
  std::string socket_path;
  std::string host;
  std::string port;
  std::string prefix;  // path prepended to request targets
  std::string host_header;
  std::string safe_url;  // without userinfo
};

Target parse_url(const std::string& url) {
  Target target;
  auto fail = [&](const std::string& why) -> Target {
    throw std::invalid_argument("cannot use '" + url + "' as a base URL: " + why +
                                "; write unix:///path/to.sock, http://host:port or https://host:port");
  };
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return fail("it has no scheme");
  auto scheme = url.substr(0, scheme_end);
  auto rest = url.substr(scheme_end + 3);
  if (scheme == "unix") {
    target.scheme = Target::Scheme::unix_socket;
    target.socket_path = rest;
    if (target.socket_path.empty() || target.socket_path.front() != '/') return fail("the socket path is not absolute");
    target.host_header = "localhost";
    target.safe_url = url;
    return target;
  }
  if (scheme == "http") {
    target.scheme = Target::Scheme::http;
    target.port = "80";
  } else if (scheme == "https") {
    target.scheme = Target::Scheme::https;
    target.port = "443";
  } else if (scheme == "tcp") {  // DOCKER_HOST style
    target.scheme = Target::Scheme::http;
    target.port = "2375";
  } else {
    return fail("the scheme '" + scheme + "' is not supported");
  }
  auto path_start = rest.find('/');
  std::string authority = rest.substr(0, path_start);
  if (path_start != std::string::npos) {
    target.prefix = rest.substr(path_start);
    while (!target.prefix.empty() && target.prefix.back() == '/') target.prefix.pop_back();
  }
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (authority.empty()) return fail("it has no host");
  std::string host = authority;
  if (authority.front() == '[') {  // [IPv6]:port
    auto close = authority.find(']');
    if (close == std::string::npos) return fail("an IPv6 address is not closed with ]");
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return fail("unexpected text after the IPv6 address");
      target.port = authority.substr(close + 2);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    target.port = authority.substr(colon + 1);
  }
  if (host.empty()) return fail("it has no host");
  if (target.port.empty() || target.port.find_first_not_of("0123456789") != std::string::npos ||
      target.port.size() > 5 || std::stoi(target.port) == 0 || std::stoi(target.port) > 65535)
    return fail("the port is not a number from 1 to 65535");
  target.host = host;
  bool default_port = (target.scheme == Target::Scheme::https && target.port == "443") ||
                      (scheme == "http" && target.port == "80");
  std::string bracketed = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  target.host_header = default_port ? bracketed : bracketed + ":" + target.port;
  target.safe_url = scheme + "://" + bracketed + ":" + target.port + target.prefix;
  return target;
}

using UnixStream = asio::local::stream_protocol::socket;
using TcpStream = asio::ip::tcp::socket;
using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

struct Connection {
  asio::io_context io;
  std::variant<std::monostate, UnixStream, TcpStream, TlsStream> stream;
  beast::flat_buffer buffer;

  void close() noexcept {
    error_code ignored;
    std::visit(
        [&](auto& s) {
          using S = std::decay_t<decltype(s)>;
          if constexpr (std::is_same_v<S, TlsStream>) {
            s.lowest_layer().close(ignored);
          } else if constexpr (!std::is_same_v<S, std::monostate>) {
            s.close(ignored);
          }
        },
        stream);
  }
};

// Runs `conn.io` until `done`, in slices, so a deadline or a stop request closes the socket
// (completing every pending operation with operation_aborted) and throws.
void drive(Connection& conn, const bool& done, Clock::time_point deadline, const std::stop_token& stop,
           const std::string& what) {
  conn.io.restart();
  while (!done) {
    auto now = Clock::now();
    if (stop.stop_requested() || now >= deadline) {
      conn.close();
      conn.io.restart();
      conn.io.run();
      if (stop.stop_requested()) throw ClientError(ClientErrc::cancelled, what + ": cancelled");
      throw ClientError(ClientErrc::timeout, what + ": timed out");
    }
    auto slice = std::min<Clock::duration>(std::chrono::milliseconds(100), deadline - now);
    conn.io.run_for(slice);
    if (conn.io.stopped()) conn.io.restart();
  }
}

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  return timeout.count() <= 0 ? Clock::time_point::max() : Clock::now() + timeout;
}

// Calls `f(stream)` with the connected stream, whatever its kind.
template <class F>
void with_stream(Connection& conn, F&& f) {
  std::visit(
      [&](auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, std::monostate>) {
          throw ClientError(ClientErrc::connect, "not connected");
        } else {
          f(s);
        }
      },
      conn.stream);
}

bool is_connection_dropped(const error_code& error) {
  return error == bhttp::error::end_of_stream || error == asio::error::eof ||
         error == asio::error::connection_reset || error == asio::error::broken_pipe ||
         error == asio::ssl::error::stream_truncated;
}

}  // namespace

std::string_view ClientResponse::header(std::string_view name) const noexcept {
  for (const auto& [key, value] : headers)
    if (iequals(key, name)) return value;
  return {};
}

struct HttpClient::Impl {
  ClientOptions options;
  Target target;
  std::optional<asio::ssl::context> tls;
  std::mutex mutex;
  std::vector<std::unique_ptr<Connection>> idle;

  std::unique_ptr<Connection> connect(const std::stop_token& stop) {
    auto conn = std::make_unique<Connection>();
    auto deadline = deadline_after(options.connect_timeout);
    bool done = false;
    error_code result;
    const std::string what = "connecting to " + target.safe_url;
    switch (target.scheme) {
      case Target::Scheme::unix_socket: {
        auto& socket = conn->stream.emplace<UnixStream>(conn->io);
        socket.async_connect(asio::local::stream_protocol::endpoint(target.socket_path), [&](error_code error) {
          result = error;
          done = true;
        });
        drive(*conn, done, deadline, stop, what);
        break;
      }
      case Target::Scheme::http:
      case Target::Scheme::https: {
        asio::ip::tcp::resolver resolver(conn->io);
        asio::ip::tcp::resolver::results_type endpoints;
        resolver.async_resolve(target.host, target.port, [&](error_code error, auto found) {
          result = error;
          endpoints = std::move(found);
          done = true;
        });
        drive(*conn, done, deadline, stop, what);
        if (result) break;
        auto& socket = target.scheme == Target::Scheme::http
                           ? conn->stream.emplace<TcpStream>(conn->io)
                           : conn->stream.emplace<TlsStream>(conn->io, *tls).next_layer();
        done = false;
        asio::async_connect(socket, endpoints, [&](error_code error, const auto&) {
          result = error;
          done = true;
        });
        drive(*conn, done, deadline, stop, what);
        if (result || target.scheme == Target::Scheme::http) break;
        socket.set_option(asio::ip::tcp::no_delay(true));
        auto& stream = std::get<TlsStream>(conn->stream);
        // SNI, and the certificate must name the host we asked for.
        if (!SSL_set_tlsext_host_name(stream.native_handle(), target.host.c_str()))
          throw ClientError(ClientErrc::connect, what + ": cannot set the TLS server name");
        if (options.verify_peer) stream.set_verify_callback(asio::ssl::host_name_verification(target.host));
        done = false;
        stream.async_handshake(asio::ssl::stream_base::client, [&](error_code error) {
          result = error;
          done = true;
        });
        drive(*conn, done, deadline, stop, what);
        if (result) {
          throw ClientError(ClientErrc::connect, what + ": TLS handshake failed (" + result.message() +
                                                     "); check the server's certificate and the configured CA");
        }
        return conn;
      }
    }
    if (result) throw ClientError(ClientErrc::connect, what + ": " + result.message());
    if (auto* tcp = std::get_if<TcpStream>(&conn->stream)) tcp->set_option(asio::ip::tcp::no_delay(true));
    return conn;
  }

  std::unique_ptr<Connection> acquire(const std::stop_token& stop, bool& reused) {
    {
      std::lock_guard lock(mutex);
      if (!idle.empty()) {
        auto conn = std::move(idle.back());
        idle.pop_back();
        reused = true;
        return conn;
      }
    }
    reused = false;
    return connect(stop);
  }

  void release(std::unique_ptr<Connection> conn) {
    conn->buffer.consume(conn->buffer.size());
    std::lock_guard lock(mutex);
    if (idle.size() < options.max_idle_connections) idle.push_back(std::move(conn));
  }

  bhttp::request<bhttp::string_body> build(const ClientRequest& request) const {
    auto verb = bhttp::string_to_verb(request.method);
    if (verb == bhttp::verb::unknown) throw std::invalid_argument("unknown HTTP method '" + request.method + "'");
    if (request.target.empty() || request.target.front() != '/')
      throw std::invalid_argument("request target '" + request.target + "' must start with /");
    bhttp::request<bhttp::string_body> out{verb, target.prefix + request.target, 11};
    out.set(bhttp::field::host, target.host_header);
    out.set(bhttp::field::user_agent, options.user_agent);
    if (options.propagate_trace) {
      if (const auto& context = trace::current(); context.valid()) {
        out.set("traceparent", trace::format_traceparent(context));
        if (!context.tracestate.empty()) out.set("tracestate", context.tracestate);
      }
    }
    for (const auto& [name, value] : request.headers) out.set(name, value);  // the caller's own win
    out.body() = request.body;
    if (!request.body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put || verb == bhttp::verb::patch)
      out.prepare_payload();
    return out;
  }

  static void copy_head(const bhttp::response_header<>& head, ClientResponse& out) {
    out.status = static_cast<int>(head.result_int());
    for (const auto& field : head) out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }

  // One exchange on one connection. Returns true when the connection may be reused.
  bool exchange(Connection& conn, const bhttp::request<bhttp::string_body>& request, ClientResponse& out,
                const std::function<bool(std::string_view)>* on_data, Clock::time_point deadline,
                const std::stop_token& stop, bool& got_bytes) {
    const std::string what = std::string(request.method_string()) + " " + target.safe_url +
                             std::string(request.target().substr(target.prefix.size()));
    bool done = false;
    error_code result;
    with_stream(conn, [&](auto& stream) {
      bhttp::async_write(stream, request, [&](error_code error, std::size_t) {
        result = error;
        done = true;
      });
    });
    drive(conn, done, deadline, stop, what);
    if (result) throw boost::system::system_error(result, what);

    bhttp::response_parser<bhttp::buffer_body> parser;
    // Our own limit applies to bodies we keep; a stream may be endless. (Not boost::none:
    // Beast 1.74 compares Content-Length against an empty optional and refuses every body.)
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.header_limit(64 * 1024);
    done = false;
    with_stream(conn, [&](auto& stream) {
      bhttp::async_read_header(stream, conn.buffer, parser, [&](error_code error, std::size_t) {
        result = error;
        done = true;
      });
    });
    drive(conn, done, deadline, stop, what);
    if (result) throw boost::system::system_error(result, what);
    got_bytes = true;
    copy_head(parser.get().base(), out);
    bool streaming = on_data && out.status >= 200 && out.status < 300;
    bool keep_reading = true;

    char chunk[16 * 1024];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      done = false;
      with_stream(conn, [&](auto& stream) {
        bhttp::async_read_some(stream, conn.buffer, parser, [&](error_code error, std::size_t) {
          result = error;
          done = true;
        });
      });
      drive(conn, done, deadline, stop, what);
      if (result == bhttp::error::need_buffer) result = {};
      if (result) throw boost::system::system_error(result, what);
      std::string_view data(chunk, sizeof chunk - parser.get().body().size);
      if (data.empty()) continue;
      if (streaming) {
        if (!(*on_data)(data)) {
          keep_reading = false;
          break;
        }
      } else {
        if (out.body.size() + data.size() > options.max_response_bytes)
          throw ClientError(ClientErrc::protocol, what + ": the answer is larger than " +
                                                      std::to_string(options.max_response_bytes) + " bytes");
        out.body.append(data);
      }
    }
    return keep_reading && parser.is_done() && parser.keep_alive();
  }

  ClientResponse perform(const ClientRequest& request, const std::function<bool(std::string_view)>* on_data,
                         const std::stop_token& stop) {
    auto message = build(request);
    auto deadline = deadline_after(request.timeout);
    for (int attempt = 0;; ++attempt) {
      bool reused = false;
      auto conn = acquire(stop, reused);
      ClientResponse out;
      bool got_bytes = false;
      try {
        bool reusable = exchange(*conn, message, out, on_data, deadline, stop, got_bytes);
        if (reusable) release(std::move(conn));
        return out;
      } catch (const boost::system::system_error& error) {
        // A pooled connection the server closed while idle: nothing reached it, so send again
        // on a fresh one.
        if (reused && !got_bytes && attempt == 0 && is_connection_dropped(error.code())) continue;
        // Beast's own errors mean the peer spoke something other than well-formed HTTP.
        auto code = error.code().category() == bhttp::make_error_code(bhttp::error::end_of_stream).category()
                        ? ClientErrc::protocol
                        : ClientErrc::connect;
        throw ClientError(code, std::string(error.what()));
      }
    }
  }
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->target = parse_url(impl_->options.base_url);
  if (impl_->target.scheme == Target::Scheme::https) {
    auto& tls = impl_->tls.emplace(asio::ssl::context::tls_client);
    tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    error_code error;
    if (!impl_->options.ca_file.empty()) {
      tls.load_verify_file(impl_->options.ca_file, error);
      if (error)
        throw std::invalid_argument("cannot load the CA file '" + impl_->options.ca_file + "': " + error.message() +
                                    "; it must be a readable PEM bundle");
    } else if (!impl_->options.ca_pem.empty()) {
      tls.add_certificate_authority(asio::buffer(impl_->options.ca_pem), error);
      if (error) throw std::invalid_argument("cannot use the given CA certificate: " + error.message() + "; it must be PEM");
    } else {
      tls.set_default_verify_paths(error);
    }
    tls.set_verify_mode(impl_->options.verify_peer ? asio::ssl::verify_peer : asio::ssl::verify_none);
  }
}

HttpClient::~HttpClient() = default;

ClientResponse HttpClient::send(const ClientRequest& request) { return impl_->perform(request, nullptr, {}); }

ClientResponse HttpClient::stream(const ClientRequest& request, const std::function<bool(std::string_view)>& on_data,
                                  std::stop_token stop) {
  return impl_->perform(request, &on_data, stop);
}

const ClientOptions& HttpClient::options() const noexcept { return impl_->options; }

std::string HttpClient::describe() const { return impl_->target.safe_url; }

std::string url_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

}  // namespace synthorg::http
