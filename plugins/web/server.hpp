// The web listener: its own port (3000), one coroutine per connection on the kernel's
// io_context. Static files from the FileStore, /healthz, and /api/* handed to the in-process
// HttpDispatcher, or relayed (streamed, synthorg-http-relay) to api_upstream or to the API port.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "static_files.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::web {

struct ServerOptions {
  std::string address = "0.0.0.0";
  unsigned short port = 3000;
  std::size_t max_header_bytes = 16 * 1024;
  // Bodies read whole (the in-process API takes a value); relayed ones stream, unlimited.
  std::size_t max_body_bytes = 1024 * 1024;
  std::chrono::milliseconds request_timeout{10'000};  // from the first byte to the whole request (408)
  std::chrono::milliseconds idle_timeout{60'000};
  std::size_t max_connections = 10'000;  // open connections; more get 503 and are closed
  bool access_log = true;
  bool hsts = true;
  // One thread runs the io_context: it serialises every connection, so no strand is needed.
  bool single_io_thread = false;
};

struct Upstream {
  std::string host;  // an IP address or a name (resolved per new connection)
  std::uint16_t port = 0;
};

// Where /api/* goes: the dispatcher when http-api runs in this kernel (looked up per request, so
// it may come and go), else the upstream, else nowhere (502 api_unavailable).
struct ApiOptions {
  std::function<std::shared_ptr<HttpDispatcher>()> dispatcher;
  std::optional<Upstream> upstream;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{60'000};  // for an answer to begin, and between its chunks
};

struct ServerStats {
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_refused{0};  // at the limit, or out of file descriptors
  std::atomic<std::uint64_t> requests{0};
};

class Server {
 public:
  Server(boost::asio::io_context& io, std::shared_ptr<FileStore> files, ApiOptions api, ServerOptions options,
         log::Logger log);
  ~Server();
  // Binds and starts accepting; throws std::runtime_error naming the address when it cannot.
  void start();
  // Stops accepting; connections close after their current response, the rest after `grace`.
  void stop(std::chrono::milliseconds grace);
  unsigned short port() const noexcept { return port_; }
  const ServerStats& stats() const noexcept;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  unsigned short port_ = 0;
};

}  // namespace synthorg::web
