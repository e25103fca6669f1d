// Opening a listening socket for the first-party HTTP listeners (http-api, web), with the
// operator's fix in every error.
#pragma once

#include <string>

#include <boost/asio/ip/tcp.hpp>

namespace synthorg::http_relay {

// Opens, binds (SO_REUSEADDR) and listens on address:port; returns the bound port (port 0 picks
// a free one). Throws std::runtime_error naming the address and the fix; the acceptor is then
// closed.
unsigned short listen_on(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, unsigned short port);

}  // namespace synthorg::http_relay
