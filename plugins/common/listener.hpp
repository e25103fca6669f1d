// Opening a listening socket for the first-party HTTP listeners (http-api, web), with the
// operator's fix in every error, and admitting connections to it: the connection limit, and
// accepting when the process is out of file descriptors.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>

#include <functional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "synthorg/log.hpp"

namespace synthorg::http_relay {

// Opens, binds (SO_REUSEADDR) and listens on address:port; returns the bound port (port 0 picks
// a free one). Throws std::runtime_error naming the address and the fix; the acceptor is then
// closed.
unsigned short listen_on(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, unsigned short port);

// The connection limit when the operator sets none (0): what the open-file limit leaves room for,
// with a descriptor for each connection and one for its upstream (proxied routes, tunnels) and
// kConnectionFdReserve kept for everything else the process opens. So the limit answers 503
// before the kernel answers EMFILE. The kernel raises the soft limit to the hard one at start.
inline constexpr std::size_t kConnectionFdReserve = 256;
std::size_t default_max_connections();

// Answers a just-accepted connection 503 too_many_connections and closes it, never waiting on the
// client. What it already sent is read first, so that closing sends a FIN rather than the RST
// that unread data would cause, which could make the client lose the answer.
void refuse_connection(int fd);

// Accepting when accept() fails for want of descriptors (EMFILE, ENFILE; also ENOBUFS, ENOMEM).
// Left alone, accept() keeps failing at once (Linux checks for a free descriptor before it looks
// at the queue), and an accept loop spins a core while new clients wait unanswered. This keeps
// one descriptor spare: on exhaustion it is given up to accept one waiting client, answer it 503
// and close it, then taken back; with nobody waiting it waits for the next client instead of
// retrying. Each exhaustion is logged at most once per interval, with how many were refused.
// Use it on the acceptor's executor.
class AcceptGuard {
 public:
  // Each client it answers 503 is counted in `refused` (the listener's refusal counter).
  AcceptGuard(std::string listener, log::Logger log, boost::asio::any_io_executor executor,
              std::atomic<std::uint64_t>& refused);
  ~AcceptGuard();
  AcceptGuard(const AcceptGuard&) = delete;
  AcceptGuard& operator=(const AcceptGuard&) = delete;

  // After a failed accept: calls `accept_again` once accepting may succeed (at once, when the
  // acceptor is readable, or after a pause), never while the acceptor is closed.
  void after_error(boost::asio::ip::tcp::acceptor& acceptor, const boost::system::error_code& ec,
                   std::function<void()> accept_again);
 private:
  void take_spare();

  std::string listener_;
  log::Logger log_;
  boost::asio::steady_timer pause_;
  std::atomic<std::uint64_t>& refused_;
  int spare_ = -1;
  std::uint64_t refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_log_{};
};

}  // namespace synthorg::http_relay
