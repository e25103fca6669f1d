#include "http_probe.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace synthorg::kernel {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

ProbeResult http_get(const std::string& host, std::uint16_t port, const std::string& target,
                     std::chrono::milliseconds timeout) {
  ProbeResult result;
  boost::system::error_code parse_error;
  auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, parse_error);
  if (parse_error) {
    result.error = "\"" + host + "\" is not an IP address";
    return result;
  }
  asio::io_context io;
  beast::tcp_stream stream(io);
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, host + ":" + std::to_string(port));
  request.set(http::field::user_agent, "synthorg-probe");
  request.keep_alive(false);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  auto failed = [&](const char* step, beast::error_code error) {
    result.error = std::string(step) + ": " +
                   (error == beast::error::timeout ? "no answer within " + std::to_string(timeout.count()) + " ms"
                                                   : error.message());
  };
  // One deadline for the whole exchange: tcp_stream applies it to each pending operation.
  stream.expires_after(timeout);
  stream.async_connect(asio::ip::tcp::endpoint(address, port), [&](beast::error_code error) {
    if (error) return failed("connect", error);
    http::async_write(stream, request, [&](beast::error_code error, std::size_t) {
      if (error) return failed("send", error);
      http::async_read(stream, buffer, response, [&](beast::error_code error, std::size_t) {
        if (error) return failed("read", error);
        result.status = static_cast<int>(response.result_int());
      });
    });
  });
  io.run();
  return result;
}

}  // namespace synthorg::kernel
