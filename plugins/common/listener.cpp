#include "listener.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include <fmt/format.h>

#include "synthorg/services/http.hpp"

namespace synthorg::http_relay {

namespace asio = boost::asio;

unsigned short listen_on(asio::ip::tcp::acceptor& acceptor, const std::string& address, unsigned short port) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec)
    throw std::runtime_error(
        fmt::format("'{}' is not an IP address to listen on (fix: e.g. 0.0.0.0 or 127.0.0.1)", address));
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {} (fix: free the port or set another one)", address,
                                         port, ec.message()));
  }
  return acceptor.local_endpoint().port();
}

std::size_t default_max_connections() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 100'000;
  auto files = static_cast<std::size_t>(limit.rlim_cur);
  if (files <= 2 * kConnectionFdReserve) return std::max<std::size_t>(files / 4, 1);
  return (files - kConnectionFdReserve) / 2;
}

void refuse_connection(int fd) {
  static const std::string busy = [] {
    std::string body =
        HttpResponse::problem(503, "too_many_connections", "the server is at its connection limit; retry shortly").body;
    return fmt::format("HTTP/1.1 503 Service Unavailable\r\nServer: synthorg\r\nContent-Type: application/problem+json\r\n"
                       "Connection: close\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{}",
                       body.size(), body);
  }();
  char scratch[4096];
  [[maybe_unused]] auto read = ::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
  [[maybe_unused]] auto sent = ::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
}

AcceptGuard::AcceptGuard(std::string listener, log::Logger log, asio::any_io_executor executor,
                         std::atomic<std::uint64_t>& refused)
    : listener_(std::move(listener)), log_(std::move(log)), pause_(std::move(executor)), refused_(refused) {
  take_spare();
}

AcceptGuard::~AcceptGuard() {
  if (spare_ >= 0) ::close(spare_);
}

void AcceptGuard::take_spare() {
  if (spare_ < 0) spare_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void AcceptGuard::after_error(asio::ip::tcp::acceptor& acceptor, const boost::system::error_code& ec,
                              std::function<void()> accept_again) {
  using namespace std::chrono_literals;
  auto value = ec.value();
  bool exhausted = ec.category() == boost::system::system_category() &&
                   (value == EMFILE || value == ENFILE || value == ENOBUFS || value == ENOMEM);
  if (!exhausted) return accept_again();  // a client that left before it was accepted (ECONNABORTED)
  enum { answered, nobody_waiting, stuck } outcome = stuck;
  if (spare_ >= 0) {
    ::close(spare_);
    spare_ = -1;
    // The listening socket is non-blocking once asio has waited on it: EAGAIN when nobody waits.
    int client = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client >= 0) {
      refuse_connection(client);
      ::close(client);
      ++refused_;
      ++refused_since_log_;
      outcome = answered;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      outcome = nobody_waiting;
    }
    take_spare();
  }
  auto now = std::chrono::steady_clock::now();
  if (now - last_log_ >= 10s) {
    log_.warn("out of file descriptors: refusing new connections with 503",
              {{"listener", listener_},
               {"error", ec.message()},
               {"refused", refused_since_log_},
               {"fix", "raise the open-file limit (ulimit -n, LimitNOFILE=, --ulimit nofile=) or lower max_connections"}});
    last_log_ = now;
    refused_since_log_ = 0;
  }
  switch (outcome) {
    case answered:  // the next client may be waiting already
      return accept_again();
    case nobody_waiting:
      return acceptor.async_wait(asio::ip::tcp::acceptor::wait_read,
                                 [accept_again = std::move(accept_again)](const boost::system::error_code& error) {
                                   if (!error) accept_again();
                                 });
    case stuck:  // not even the spare descriptor: wait for some to be freed rather than spin
      pause_.expires_after(50ms);
      return pause_.async_wait([accept_again = std::move(accept_again)](const boost::system::error_code& error) {
        if (!error) accept_again();
      });
  }
}

}  // namespace synthorg::http_relay
