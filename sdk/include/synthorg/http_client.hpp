// A blocking HTTP/1.1 client for plugins that talk to daemons and APIs: the Docker socket,
// Kubernetes, Fly, OTLP collectors. Call it from the blocking pool, never from an I/O thread.
// Boost.Beast and OpenSSL stay inside libsynthorg-sdk.so; this header pulls in neither.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace synthorg::http {

struct ClientOptions {
  // "unix:///var/run/docker.sock", "http://host:port", "https://host[:port]". A path after the
  // authority ("https://host/prefix") is prepended to every request target.
  std::string base_url;
  // TLS: PEM CA bundle as a file or as text; neither means the system's trust store.
  std::string ca_file;
  std::string ca_pem;
  bool verify_peer = true;
  std::chrono::milliseconds connect_timeout{5000};
  std::size_t max_idle_connections = 8;  // kept alive for reuse
  std::size_t max_response_bytes = 64u << 20;
  std::string user_agent = "synthorg";
  // Sends the calling thread's trace context (trace::current()) as traceparent/tracestate, so
  // the daemon or service called joins the trace. Off for the OTLP exporter's own client.
  bool propagate_trace = true;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query, already encoded (see url_encode)
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{30000};  // the whole exchange; 0: none (streams)
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
  // Case-insensitive; empty when absent.
  std::string_view header(std::string_view name) const noexcept;
};

enum class ClientErrc {
  connect,    // refused, no such socket, permission denied, DNS, TLS handshake
  timeout,    // the request's timeout passed
  protocol,   // not HTTP, a truncated or oversized answer
  cancelled,  // the stop token was requested
};

class ClientError : public std::runtime_error {
 public:
  ClientError(ClientErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ClientErrc code() const noexcept { return code_; }

 private:
  ClientErrc code_;
};

class HttpClient {
 public:
  // Throws std::invalid_argument when the URL or the CA cannot be used, saying why.
  explicit HttpClient(ClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole answer. Thread-safe: concurrent calls use separate
  // connections. Throws ClientError; any HTTP status is an answer, not an error.
  ClientResponse send(const ClientRequest& request);

  // Sends one request and hands the body to `on_data` as it arrives (chunked or not) when the
  // status is 2xx; otherwise the body is read into the response as `send` would. Returns when
  // the body ends, `on_data` returns false, or `stop` is requested (then throws cancelled).
  ClientResponse stream(const ClientRequest& request, const std::function<bool(std::string_view)>& on_data,
                        std::stop_token stop = {});

  const ClientOptions& options() const noexcept;
  // The URL with any userinfo removed: safe for logs and errors.
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes everything outside RFC 3986's unreserved set.
std::string url_encode(std::string_view text);

}  // namespace synthorg::http
