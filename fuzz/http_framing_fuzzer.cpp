// libFuzzer target: arbitrary bytes as an HTTP/1.1 request head through Beast's parser, then the
// listeners' framing check (plugins/common/http_framing.cpp). Whatever the head, the check must
// not crash, and a head it lets through must be one whose body length nobody can read two ways:
// no Transfer-Encoding with a Content-Length, none in HTTP/1.0, and a final coding of chunked.
#include <cstdint>
#include <string_view>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "http_framing.hpp"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(64 * 1024);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!parser.is_header_done()) return 0;
  const auto& head = parser.get();
  auto error = synthorg::http_relay::framing_error(head, head.version());
  if (error) {
    if (error->status != 400 && error->status != 501) __builtin_trap();
    if (error->detail.empty()) __builtin_trap();
    return 0;
  }
  bool encoded = head.find(http::field::transfer_encoding) != head.end();
  if (encoded && (head.version() < 11 || head.find(http::field::content_length) != head.end())) __builtin_trap();
  if (head.count(http::field::host) > 1) __builtin_trap();
  if (encoded && !parser.chunked()) __builtin_trap();  // accepted: Beast must read it as chunked
  return 0;
}
