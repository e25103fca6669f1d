// A real HTTP upstream for reverse-proxy tests (http-api's proxy routes, the web listener's
// api_upstream): Beast on its own thread, no mocks.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "synthorg/crypto.hpp"

namespace synthorg::testing {

// A Beast upstream on loopback, one thread per connection, counting the connections it accepts.
// By the target's last path segment: /close hangs up; /hang sleeps; /ws echoes WebSocket
// messages; /stream sends a chunk, waits for `release`, sends another; /big sends 5 MiB; any
// other answers with what it received (method, target, headers, body size and SHA-256).
class Upstream {
  using json = nlohmann::json;
  using tcp = boost::asio::ip::tcp;
 public:
  Upstream() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] {
      for (;;) {
        tcp::socket socket(io_);
        boost::beast::error_code ec;
        acceptor_.accept(socket, ec);
        if (ec || stopping_) return;
        ++connections;
        workers_.emplace_back([this, socket = std::move(socket)]() mutable { serve(std::move(socket)); });
      }
    });
  }
  ~Upstream() {
    stopping_ = true;
    try {
      release.set_value();  // a /stream still waiting ends
    } catch (const std::future_error&) {  // the test released it already
    }
    boost::beast::error_code ignored;
    tcp::socket poke(io_);
    poke.connect(acceptor_.local_endpoint(), ignored);
    thread_.join();
    for (auto& worker : workers_) worker.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  std::atomic<int> connections{0};
  std::promise<void> release;

 private:
  void serve(tcp::socket socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      boost::beast::http::request_parser<boost::beast::http::string_body> parser;
      parser.body_limit(64 << 20);
      boost::beast::error_code ec;
      boost::beast::http::read(socket, buffer, parser, ec);
      if (ec || stopping_) return;
      auto request = parser.release();
      auto target = std::string(request.target());
      auto path = target.substr(0, target.find('?'));
      auto name = path.substr(path.rfind('/') + 1);
      if (name == "close") return;
      if (name == "hang") {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        return;
      }
      if (name == "ws") {
        boost::beast::websocket::stream<tcp::socket> ws(std::move(socket));
        ws.accept(request, ec);
        for (boost::beast::flat_buffer message; !ec;) {
          ws.read(message, ec);
          if (!ec) ws.write(message.data(), ec);
          message.consume(message.size());
        }
        return;
      }
      if (name == "stream") {
        boost::asio::write(socket, boost::asio::buffer(std::string_view(
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst \r\n")), ec);
        release_future_.wait_for(std::chrono::seconds(5));
        boost::asio::write(socket, boost::asio::buffer(std::string_view("4\r\nlast\r\n0\r\n\r\n")), ec);
        continue;
      }
      boost::beast::http::response<boost::beast::http::string_body> response{boost::beast::http::status::ok, 11};
      if (name == "big") {
        response.body() = std::string(5 << 20, 'x');
      } else {
        json headers = json::object();
        for (const auto& field : request) headers[std::string(field.name_string())] = std::string(field.value());
        response.body() = json{{"method", std::string(request.method_string())},
                               {"target", target},
                               {"headers", headers},
                               {"bytes", request.body().size()},
                               {"sha256", crypto::to_hex(crypto::sha256(request.body()))}}
                              .dump();
      }
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      boost::beast::http::response_serializer<boost::beast::http::string_body> writer{response};
      if (request.method() == boost::beast::http::verb::head) boost::beast::http::write_header(socket, writer, ec);
      else boost::beast::http::write(socket, writer, ec);
      if (ec || !request.keep_alive()) return;
    }
  }

  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::shared_future<void> release_future_ = release.get_future().share();
  std::thread thread_;
  std::vector<std::thread> workers_;
};

}  // namespace synthorg::testing
