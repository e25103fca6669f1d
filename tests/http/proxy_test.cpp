// Proxy routes (RouteSpec::proxy) against a real upstream on loopback: what is forwarded and
// what is not, bodies streamed both ways past the body limit, kept-alive upstream connections,
// WebSocket tunnels, and every way an upstream can fail.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "http_api_fixture.hpp"
#include "test_upstream.hpp"
#include "synthorg/crypto.hpp"

namespace synthorg::kernel {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using synthorg::testing::body_of;
using synthorg::testing::header_of;
using synthorg::testing::status_of;
using synthorg::testing::Upstream;

class ProxyTest : public HttpApiTest {
 protected:
  void SetUp() override {
    ::setenv("SYNTHORG_HTTP_UPSTREAM_TIMEOUT_MS", "500", 1);
    HttpApiTest::SetUp();
    ::unsetenv("SYNTHORG_HTTP_UPSTREAM_TIMEOUT_MS");
    auth = kernel->registry().provide<Authenticator>(std::make_shared<RoleFromHeader>());
    // /p/{*path} goes to the upstream (or to a dead port under /p/dead/...); /p/refuse/... is
    // answered by the resolver itself.
    for (const char* method : {"GET", "POST", "PUT"}) {
      RouteSpec route{method, "/p/{*path}", Access::signed_in, {}, json::object(), {}};
      route.proxy = [this](HttpRequest& request, ProxyDecide decide) {
        const auto& path = request.params.at("path");
        if (path.starts_with("refuse")) return decide(HttpResponse::problem(404, "not_found", "no such thing"));
        ProxyTarget target;
        target.host = "127.0.0.1";
        target.port = path.starts_with("dead") ? static_cast<std::uint16_t>(dead_port) : upstream.port();
        target.target = "/" + path + (request.query.empty() ? "" : "?" + request.query);
        target.headers = {{"x-route", "set-by-route"}};
        target.done = [this](int status) {
          std::lock_guard lock(mutex);
          statuses.push_back(status);
        };
        // Answer from another thread sometimes, as a route using the blocking pool would.
        if (path.ends_with("later")) std::thread([decide, target] { decide(target); }).detach();
        else decide(target);
      };
      routes.push_back(mount(std::move(route)));
    }
  }
  void TearDown() override {
    routes.clear();
    auth = {};
    HttpApiTest::TearDown();
  }
  std::string send(const std::string& request) {
    Client client(port);
    client.send(request);
    return client.response();
  }
  void expect_still_serving() { EXPECT_EQ(status_of(get("/api/v1/healthz")), 200); }
  // done() runs when the exchange ends, which for a relayed answer is just after its last byte
  // left: the client can have it first.
  std::vector<int> statuses_once(std::size_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    std::unique_lock lock(mutex);
    while (statuses.size() < count && std::chrono::steady_clock::now() < deadline) {
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      lock.lock();
    }
    return statuses;
  }

  Upstream upstream;
  int dead_port = free_port();
  Token auth;
  std::vector<Token> routes;
  std::mutex mutex;
  std::vector<int> statuses;
};

TEST_F(ProxyTest, ForwardsTheRequestWithoutTheCallersCredentials) {
  auto response = send(
      "GET /p/echo?x=1&y=%2F HTTP/1.1\r\nHost: kernel.example\r\nConnection: close\r\n"
      "Authorization: Bearer admin\r\nCookie: theme=dark; synthorg_session=SECRET; lang=en\r\n"
      "X-Custom: kept\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Request-Id: trace-42\r\n\r\n");
  ASSERT_EQ(status_of(response), 200) << response;
  auto echo = body_of(response);
  const auto& headers = echo["headers"];
  EXPECT_EQ(echo["target"], "/echo?x=1&y=%2F");
  EXPECT_FALSE(headers.contains("Authorization")) << headers.dump();
  EXPECT_FALSE(headers.contains("Proxy-Authorization"));
  EXPECT_EQ(headers.value("Cookie", ""), "theme=dark; lang=en");
  EXPECT_EQ(response.find("SECRET"), std::string::npos);
  EXPECT_EQ(headers.value("X-Custom", ""), "kept");
  EXPECT_EQ(headers.value("x-forwarded-for", ""), "127.0.0.1");
  EXPECT_EQ(headers.value("x-forwarded-host", ""), "kernel.example");
  EXPECT_EQ(headers.value("x-forwarded-proto", ""), "http");
  EXPECT_EQ(headers.value("x-request-id", ""), "trace-42");
  EXPECT_EQ(headers.value("x-route", ""), "set-by-route");
  EXPECT_EQ(header_of(response, "x-request-id"), "trace-42");
  EXPECT_EQ(statuses_once(1), std::vector<int>{200});
}

TEST_F(ProxyTest, ACookieHeaderHoldingOnlyTheSessionIsDropped) {
  auto echo = body_of(send("GET /p/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer viewer\r\n"
                           "Cookie: synthorg_session=SECRET\r\n\r\n"));
  EXPECT_FALSE(echo["headers"].contains("Cookie")) << echo.dump();
}

TEST_F(ProxyTest, BodiesStreamBothWaysPastTheBodyLimit) {
  // 3 MiB chunked up (the buffered body limit here is 1000 bytes), then 5 MiB down.
  std::string payload(3 << 20, 'p');
  for (std::size_t i = 0; i < payload.size(); i += 4096) payload[i] = static_cast<char>('a' + i % 26);
  Client client(port);
  client.send("POST /p/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (std::size_t at = 0; at < payload.size(); at += 100'000) {
    auto piece = payload.substr(at, 100'000);
    client.send(fmt::format("{:x}\r\n{}\r\n", piece.size(), piece));
  }
  client.send("0\r\n\r\n");
  auto up = client.response();
  ASSERT_EQ(status_of(up), 200) << up.substr(0, 300);
  EXPECT_EQ(body_of(up)["bytes"], payload.size());
  EXPECT_EQ(body_of(up)["sha256"], crypto::to_hex(crypto::sha256(payload)));
  // The same with a declared length: the buffered limit is not a proxy route's.
  client.send(fmt::format("POST /p/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nContent-Length: {}\r\n\r\n",
                          payload.size()));
  client.send(payload);
  auto declared = client.response();
  ASSERT_EQ(status_of(declared), 200) << declared.substr(0, 300);
  EXPECT_EQ(body_of(declared)["sha256"], crypto::to_hex(crypto::sha256(payload)));
  client.send("GET /p/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\n\r\n");
  auto down = client.response();
  ASSERT_EQ(status_of(down), 200);
  EXPECT_EQ(header_of(down, "content-length"), std::to_string(5 << 20));
  EXPECT_EQ(down.size() - down.find("\r\n\r\n") - 4, static_cast<std::size_t>(5 << 20));
  EXPECT_EQ(upstream.connections, 1) << "both requests should share one upstream connection";
}

TEST_F(ProxyTest, AStreamedAnswerArrivesAsTheUpstreamSendsIt) {
  Client client(port);
  client.send("GET /p/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nConnection: close\r\n\r\n");
  // The first chunk arrives while the upstream still holds the second back.
  auto early = client.wait_for("first ");
  ASSERT_NE(early, "");
  EXPECT_EQ(early.find("last"), std::string::npos);
  upstream.release.set_value();
  auto response = client.response();
  ASSERT_EQ(status_of(response), 200) << response;
  EXPECT_EQ(header_of(response, "transfer-encoding"), "chunked");
  EXPECT_NE(response.find("first "), std::string::npos);
  EXPECT_NE(response.find("last"), std::string::npos);
}

TEST_F(ProxyTest, KeptAliveClientsReuseOneUpstreamConnection) {
  Client client(port);
  for (int i = 0; i < 5; ++i) {
    client.send("GET /p/echo?n=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\n\r\n");
    auto response = client.response();
    ASSERT_EQ(status_of(response), 200);
    EXPECT_EQ(body_of(response)["target"], "/echo?n=" + std::to_string(i));
  }
  client.send("GET /p/echo-later HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\n\r\n");
  EXPECT_EQ(status_of(client.response()), 200);
  client.send("HEAD /p/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nConnection: close\r\n\r\n");
  auto head = client.wait_for("\r\n\r\n");
  EXPECT_EQ(status_of(head), 200);
  EXPECT_EQ(header_of(head, "content-length"), std::to_string(5 << 20));
  EXPECT_EQ(head.size(), head.find("\r\n\r\n") + 4);
  EXPECT_TRUE(client.closed_by_server()) << "a HEAD answer has no body";
  EXPECT_EQ(upstream.connections, 1);
}

TEST_F(ProxyTest, WebSocketUpgradesAreTunneled) {
  asio::io_context io;
  beast::websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  ws.set_option(beast::websocket::stream_base::decorator([](beast::websocket::request_type& request) {
    request.set(http::field::authorization, "Bearer viewer");
  }));
  ws.handshake("127.0.0.1", "/p/ws");
  for (const std::string& text : {std::string("hello"), std::string(200'000, 'w')}) {
    ws.write(asio::buffer(text));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), text);
  }
  ws.close(beast::websocket::close_code::normal);
  expect_still_serving();
}

TEST_F(ProxyTest, UpstreamFailuresAreProblemsAndTheServerGoesOn) {
  auto down = send("GET /p/dead/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer viewer\r\n\r\n");
  EXPECT_EQ(status_of(down), 502) << down;
  EXPECT_EQ(body_of(down)["code"], "upstream_unreachable");
  auto hangs = send("GET /p/hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer viewer\r\n\r\n");
  EXPECT_EQ(status_of(hangs), 504) << hangs;
  EXPECT_EQ(body_of(hangs)["code"], "upstream_timeout");
  auto closes = send("GET /p/close HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer viewer\r\n\r\n");
  EXPECT_EQ(status_of(closes), 502) << closes;
  // A WebSocket to a dead upstream: the handshake is answered 502, not left hanging.
  auto ws = send("GET /p/dead/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Authorization: Bearer viewer\r\n\r\n");
  EXPECT_EQ(status_of(ws), 502) << ws;
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(statuses, (std::vector<int>{0, 0, 0, 0})) << "done() reports that no answer came";
  }
  expect_still_serving();
}

TEST_F(ProxyTest, AStalledBodyIsAnswered408ThenClosed) {
  // The fixture's request_timeout is 700 ms: a body that stops arriving for that long is owed
  // an answer, as on any other route, not a silent close.
  Client client(port);
  auto started = std::chrono::steady_clock::now();
  client.send("POST /p/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nContent-Length: 100\r\n\r\n"
              "only a few bytes");
  auto answer = client.response();
  EXPECT_EQ(status_of(answer), 408) << answer;
  EXPECT_EQ(header_of(answer, "content-type"), "application/problem+json");
  EXPECT_EQ(body_of(answer)["code"], "request_timeout");
  EXPECT_EQ(header_of(answer, "connection"), "close");
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  expect_still_serving();
}

TEST_F(ProxyTest, RefusalsAndUnauthenticatedCallsNeverReachTheUpstream) {
  auto anonymous = send("GET /p/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(anonymous), 401);
  // Refused with a body on its way: answered, then the connection is closed (the unread body
  // must not be taken for the next request).
  Client client(port);
  client.send("POST /p/refuse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer viewer\r\nContent-Length: 20\r\n\r\n"
              "GET /api/v1/healthz ");
  auto refused = client.response();
  EXPECT_EQ(status_of(refused), 404);
  EXPECT_EQ(header_of(refused, "connection"), "close");
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_EQ(upstream.connections, 0);
}

}  // namespace
}  // namespace synthorg::kernel
