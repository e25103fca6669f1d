// libFuzzer target: arbitrary bytes as the frames a client sends once its WebSocket upgrade is
// accepted, read message after message until an error by a Beast server stream set up as
// http-api's WsClient sets its own (read_message_max from WebSocketLimits, permessage-deflate
// off), over Beast's in-memory test stream. Every client of /api/v1/ws can send these bytes.
// Nothing may crash, and no message read successfully may be larger than read_message_max: with
// http-api's limit (64 KiB, as large as the longest input, so only a crash can show there), and
// again with 125 bytes, a limit the inputs do cross, whole or in fragments.
#include <cstdint>
#include <string_view>

#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket.hpp>

#include "websocket.hpp"

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {

void read_all(std::string_view bytes, std::size_t limit) {
  boost::asio::io_context ioc;
  beast::test::stream client(ioc);  // takes what the server writes: the 101, pongs, its close
  websocket::stream<beast::test::stream> ws(ioc);
  ws.next_layer().connect(client);
  ws.read_message_max(limit);
  websocket::permessage_deflate deflate;
  deflate.server_enable = deflate.client_enable = false;
  ws.set_option(deflate);

  http::request<http::string_body> upgrade{http::verb::get, "/api/v1/ws", 11};
  upgrade.set(http::field::host, "localhost");
  upgrade.set(http::field::upgrade, "websocket");
  upgrade.set(http::field::connection, "Upgrade");
  upgrade.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  upgrade.set(http::field::sec_websocket_version, "13");
  beast::error_code ec;
  ws.accept(upgrade, ec);
  if (ec) __builtin_trap();

  ws.next_layer().append(beast::string_view(bytes.data(), bytes.size()));
  ws.next_layer().close_remote();  // the end of the bytes is the end of the connection
  for (;;) {
    beast::flat_buffer message;
    ws.read(message, ec);
    if (ec) break;
    if (message.size() > limit) __builtin_trap();
    client.clear();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  read_all(bytes, synthorg::http_api::WebSocketLimits{}.max_message_bytes);
  read_all(bytes, 125);
  return 0;
}
