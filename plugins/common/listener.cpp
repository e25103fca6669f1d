#include "listener.hpp"

#include <stdexcept>

#include <fmt/format.h>

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

}  // namespace synthorg::http_relay
