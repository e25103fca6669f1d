// The web plugin against raw sockets: a real kernel in-process with web (and http-api where the
// API is in process) on free loopback ports, serving a temporary root. Traversal however
// encoded, start-up errors, validators, ranges, precompressed siblings, the CSP nonce, HEAD,
// slow requests, and the API behind it: in process, through an upstream (streamed bodies, kept
// upstream connections), and an upstream that is down or hangs.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "kernel.hpp"
#include "synthorg/services/http.hpp"
#include "framing_cases.hpp"
#include "http_client.hpp"
#include "synthorg/crypto.hpp"
#include "test_support.hpp"
#include "test_upstream.hpp"

namespace synthorg::kernel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using namespace synthorg::testing;

const std::string index_html =
    "<!doctype html><html><head><meta name=\"csp-nonce\" content=\"__CSP_NONCE__\">"
    "<style nonce=\"__CSP_NONCE__\">body{}</style></head><body>the app</body></html>";

std::string body_text(const std::string& response) {
  auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

// "a b; c d" → {a: "b", c: "d"}: the policy as a browser splits it.
std::map<std::string, std::string> parse_csp(const std::string& policy) {
  std::map<std::string, std::string> directives;
  std::size_t start = 0;
  while (start < policy.size()) {
    auto end = policy.find(';', start);
    if (end == std::string::npos) end = policy.size();
    auto item = policy.substr(start, end - start);
    item.erase(0, item.find_first_not_of(' '));
    auto space = item.find(' ');
    if (!item.empty()) directives[item.substr(0, space)] = space == std::string::npos ? "" : item.substr(space + 1);
    start = end + 1;
  }
  return directives;
}

// A TCP port that accepts connections and never answers: an upstream that hangs.
class SilentServer {
 public:
  SilentServer() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    ::listen(fd_, 16);  // the kernel completes the handshakes; nobody ever reads
  }
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

class WebTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = dir.path() / "root";
    fs::create_directories(root / "assets");
    write(root / "index.html", index_html);
    write(root / "assets" / "app.js", std::string(4000, 'j'));
    write(root / "assets" / "app.js.br", "BROTLI");
    write(root / "assets" / "app.js.gz", "GZIP");
    write(root / "robots.txt", "User-agent: *\n");
    write(root / ".env", "SECRET=1");
    big = std::string(1 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    write(root / "assets" / "big.bin", big);  // beyond cache_file_bytes: sendfile
    write(dir.path() / "secret.txt", "TOP-SECRET");
    fs::create_directory_symlink(dir.path(), root / "link-out");
    fs::create_symlink(dir.path() / "secret.txt", root / "escape.txt");
    ::setenv("SYNTHORG_HTTP_ACCESS_LOG", "false", 1);
  }
  void TearDown() override {
    kernel.reset();
    ::unsetenv("SYNTHORG_HTTP_ACCESS_LOG");
  }
  static void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

  // Starts a kernel with web (root, plus `web_extra` config) and, when `with_api`, http-api.
  void start(bool with_api = true, const std::string& web_extra = "") {
    auto plugins = dir.path() / "plugins";
    fs::create_directories(plugins);
    std::vector<std::string> names{"web.so"};
    if (with_api) names.insert(names.end(), {"http-api.so", "store-sqlite.so"});
    for (const auto& name : names)
      if (!fs::exists(plugins / name)) fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / name, plugins / name);
    port = free_port();
    api_port = free_port();
    std::string config = "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() + "]\nplugins:\n";
    if (with_api)
      config += "  http-api:\n    config: {address: 127.0.0.1, port: " + std::to_string(api_port) +
                "}\n  store-sqlite:\n    config: {path: " + (dir / "s.db").string() + "}\n";
    config += "  web:\n    config: {address: 127.0.0.1, port: " + std::to_string(port) + ", root: \"" +
              root.string() + "\", access_log: false" + (web_extra.empty() ? "" : ", " + web_extra) + "}\n";
    kernel = std::make_unique<Kernel>(load_company_config(dir.write("company.yaml", config), "/unused"));
    kernel->discover();
    kernel->prepare();
    kernel->start();
  }
  // The reason start-up failed, or "" when it did not.
  std::string start_error(const std::string& web_extra = "") {
    try {
      start(false, web_extra);
    } catch (const std::exception& error) {
      return error.what();
    }
    return "";
  }

  std::string request(const std::string& method, const std::string& target, const std::string& headers = "") {
    Client client(port);
    client.send(method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n");
    return client.response();
  }
  std::string get(const std::string& target, const std::string& headers = "") { return request("GET", target, headers); }
  // Everything the server sends until it closes (for answers Client cannot frame, like HEAD's).
  // A plain connected socket (5 s receive timeout), -1 when the connection fails.
  int connect_raw() const { return connect_loopback(port, 5); }
  std::string until_closed(const std::string& bytes) { return exchange_until_closed(port, bytes); }

  TempDir dir;
  fs::path root;
  std::string big;
  int port = 0, api_port = 0;
  std::unique_ptr<Kernel> kernel;
};

// The same framing rules on the web port, for its files and for /api/* relayed to the API port.
TEST_F(WebTest, RequestsWithAmbiguousFramingAreRefusedAndNothingIsSmuggled) {
  start();
  for (const std::string path : {"/index.html", "/api/v1/healthz"}) {
    auto cases = framing_cases(path);
    for (auto& chunked : chunk_cases(path)) cases.push_back(chunked);
    for (const auto& [name, bytes, status] : cases) {
      auto received = exchange_until_closed(port, bytes);
      EXPECT_EQ(responses_in(received), 1) << path << ", " << name << ": one answer, then the connection closed:\n"
                                           << received;
      EXPECT_EQ(status_of(received), status) << path << ", " << name << ":\n" << received;
      EXPECT_EQ(received.find("smuggled"), std::string::npos) << path << ", " << name << ": the smuggled request ran";
    }
  }
  EXPECT_EQ(status_of(get("/index.html")), 200) << "and the server goes on";
}

TEST_F(WebTest, NothingOutsideTheRootHoweverEncoded) {
  start(false);
  for (const char* target :
       {"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/assets/..%2f..%2f..%2fsecret.txt",
        "/..\\secret.txt", "/%5c..%5csecret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "//../secret.txt",
        "/./index.html", "/index.html%00.txt", "/%00", "/%zz", "/link-out/secret.txt", "/escape.txt",
        "/assets/%252e%252e/%252e%252e/secret.txt", "/.env", "/%2eenv", "/assets/.hidden", "relative.txt"}) {
    SCOPED_TRACE(target);
    auto response = get(target);
    EXPECT_EQ(response.find("TOP-SECRET"), std::string::npos) << response;
    EXPECT_EQ(response.find("SECRET=1"), std::string::npos) << response;
    int status = status_of(response);
    // Refused (400 bad_path, 404), or the SPA's index.html for a name that merely looks odd.
    if (status == 200) {
      EXPECT_NE(body_text(response).find("the app"), std::string::npos) << response;
    } else {
      EXPECT_TRUE(status == 400 || status == 404) << response;
      EXPECT_EQ(header_of(response, "content-type"), "application/problem+json");
    }
  }
  EXPECT_EQ(body_of(get("/../secret.txt"))["code"], "bad_path");
  EXPECT_EQ(status_of(get("/.env")), 404);
  EXPECT_EQ(status_of(get("/escape.txt")), 404) << "a symlink out of the root is 404, as docs/web.md says";
  EXPECT_EQ(status_of(get("/link-out/secret.txt")), 404) << "and so is a file under a directory symlink out";
  // No listings: a directory is the SPA's page, never its file names.
  auto listing = get("/assets/");
  EXPECT_EQ(listing.find("app.js"), std::string::npos) << listing;
  EXPECT_NE(body_text(listing).find("the app"), std::string::npos);
}

TEST_F(WebTest, AMissingRootOrIndexStopsTheStartWithTheFix) {
  root = dir.path() / "nowhere";
  auto missing = start_error();
  EXPECT_NE(missing.find("does not exist"), std::string::npos) << missing;
  EXPECT_NE(missing.find("nowhere"), std::string::npos) << missing;
  kernel.reset();
  root = dir.path() / "empty";
  fs::create_directories(root);
  auto no_index = start_error();
  EXPECT_NE(no_index.find("no index.html"), std::string::npos) << no_index;
}

TEST_F(WebTest, FilesWithTypesCachingAndSpaFallback) {
  start(false);
  auto index = get("/");
  EXPECT_EQ(status_of(index), 200);
  EXPECT_EQ(header_of(index, "content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(header_of(index, "cache-control"), "no-cache");
  EXPECT_EQ(header_of(index, "etag"), "") << "each index.html differs by its nonce: no validator";
  auto page = get("/workloads/abc?x=1");
  EXPECT_EQ(status_of(page), 200);
  EXPECT_NE(body_text(page).find("the app"), std::string::npos);
  auto asset = get("/assets/app.js");
  EXPECT_EQ(header_of(asset, "content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(header_of(asset, "cache-control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(body_text(asset), std::string(4000, 'j'));
  EXPECT_EQ(header_of(get("/robots.txt"), "content-type"), "text/plain; charset=utf-8");
  auto missing = get("/assets/missing.js");
  EXPECT_EQ(status_of(missing), 404) << "a missing asset is a real 404, not the app";
  EXPECT_EQ(body_of(missing)["code"], "not_found");
  auto head = until_closed("HEAD /assets/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(head), 200) << head;
  EXPECT_NE(head.find("Content-Length: 4000\r\n"), std::string::npos) << head;
  EXPECT_EQ(body_text(head), "") << "HEAD: the length, not the bytes";
  auto post = request("POST", "/index.html", "Content-Length: 0\r\n");
  EXPECT_EQ(status_of(post), 405);
  EXPECT_EQ(header_of(post, "allow"), "GET, HEAD");
  auto health = get("/healthz");
  EXPECT_EQ(status_of(health), 200);
  EXPECT_EQ(body_of(health)["status"], "ok");
}

TEST_F(WebTest, SecurityHeadersOnEveryResponse) {
  start(true);
  for (const char* target : {"/", "/assets/app.js", "/healthz", "/assets/missing.js", "/../x", "/api/v1/healthz",
                             "/api/v1/nope"}) {
    SCOPED_TRACE(target);
    auto response = get(target);
    EXPECT_EQ(header_of(response, "x-content-type-options"), "nosniff");
    EXPECT_EQ(header_of(response, "x-frame-options"), "DENY");
    EXPECT_EQ(header_of(response, "referrer-policy"), "strict-origin-when-cross-origin");
    EXPECT_EQ(header_of(response, "permissions-policy"), "geolocation=(), camera=(), microphone=()");
    EXPECT_EQ(header_of(response, "strict-transport-security"), "max-age=63072000");
    EXPECT_FALSE(header_of(response, "content-security-policy").empty());
  }
}

TEST_F(WebTest, TheCspCarriesAFreshNonceThatMatchesIndexHtml) {
  start(false);
  std::set<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    auto response = get("/");
    auto csp = parse_csp(header_of(response, "content-security-policy"));
    EXPECT_EQ(csp["default-src"], "'self'");
    EXPECT_EQ(csp["script-src"], "'self'") << "no inline scripts, no nonce for scripts";
    EXPECT_EQ(csp["object-src"], "'none'");
    EXPECT_EQ(csp["frame-ancestors"], "'none'");
    EXPECT_EQ(csp["base-uri"], "'self'");
    std::smatch match;
    ASSERT_TRUE(std::regex_match(csp["style-src"], match, std::regex("'self' 'nonce-([A-Za-z0-9_-]{22})'")))
        << csp["style-src"];
    auto nonce = match[1].str();
    EXPECT_EQ(csp["style-src-elem"], "'self' 'nonce-" + nonce + "'");
    auto body = body_text(response);
    EXPECT_NE(body.find("<meta name=\"csp-nonce\" content=\"" + nonce + "\">"), std::string::npos) << body;
    EXPECT_NE(body.find("<style nonce=\"" + nonce + "\">"), std::string::npos) << body;
    EXPECT_EQ(body.find("__CSP_NONCE__"), std::string::npos);
    EXPECT_TRUE(seen.insert(nonce).second) << "nonce reused: " << nonce;
  }
}

TEST_F(WebTest, ValidatorsAnswerNotModified) {
  start(false);
  auto first = get("/assets/app.js");
  auto etag = header_of(first, "etag");
  auto modified = header_of(first, "last-modified");
  ASSERT_FALSE(etag.empty());
  ASSERT_FALSE(modified.empty());
  auto again = get("/assets/app.js", "If-None-Match: " + etag + "\r\n");
  EXPECT_EQ(status_of(again), 304) << again;
  EXPECT_EQ(body_text(again), "");
  EXPECT_EQ(header_of(again, "etag"), etag);
  EXPECT_EQ(status_of(get("/assets/app.js", "If-None-Match: \"other\", W/" + etag + "\r\n")), 304);
  EXPECT_EQ(status_of(get("/assets/app.js", "If-None-Match: \"other\"\r\n")), 200);
  EXPECT_EQ(status_of(get("/assets/app.js", "If-Modified-Since: " + modified + "\r\n")), 304);
  EXPECT_EQ(status_of(get("/assets/app.js", "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n")), 200);
}

TEST_F(WebTest, PrecompressedSiblingsByAcceptEncoding) {
  start(false);
  auto br = get("/assets/app.js", "Accept-Encoding: gzip, deflate, br\r\n");
  EXPECT_EQ(header_of(br, "content-encoding"), "br");
  EXPECT_EQ(body_text(br), "BROTLI");
  EXPECT_EQ(header_of(br, "vary"), "Accept-Encoding");
  EXPECT_EQ(header_of(br, "content-type"), "text/javascript; charset=utf-8");
  auto gz = get("/assets/app.js", "Accept-Encoding: br;q=0, gzip\r\n");
  EXPECT_EQ(header_of(gz, "content-encoding"), "gzip");
  EXPECT_EQ(body_text(gz), "GZIP");
  EXPECT_NE(header_of(gz, "etag"), header_of(br, "etag")) << "each representation has its own ETag";
  auto plain = get("/assets/app.js");
  EXPECT_EQ(header_of(plain, "content-encoding"), "");
  EXPECT_EQ(body_text(plain).size(), 4000u);
  EXPECT_EQ(header_of(get("/assets/app.js", "Accept-Encoding: identity\r\n"), "content-encoding"), "");
}

TEST_F(WebTest, RangesSingleAndHuge) {
  start(false);
  auto part = get("/assets/big.bin", "Range: bytes=10-19\r\n");
  EXPECT_EQ(status_of(part), 206);
  EXPECT_EQ(header_of(part, "content-range"), "bytes 10-19/1048576");
  EXPECT_EQ(body_text(part), big.substr(10, 10));
  auto tail = get("/assets/big.bin", "Range: bytes=-5\r\n");
  EXPECT_EQ(body_text(tail), big.substr(big.size() - 5));
  auto open_end = get("/assets/app.js", "Range: bytes=3990-\r\n");
  EXPECT_EQ(header_of(open_end, "content-range"), "bytes 3990-3999/4000");
  auto clamped = get("/assets/app.js", "Range: bytes=3990-999999999999999999999999\r\n");
  EXPECT_EQ(status_of(clamped), 206) << "an end past the file (even past 64 bits) is the end";
  EXPECT_EQ(body_text(clamped).size(), 10u);
  for (const char* huge : {"bytes=99999999999999999999999-", "bytes=1048576-", "bytes=18446744073709551615-",
                           "bytes=-0"}) {
    SCOPED_TRACE(huge);
    auto refused = get("/assets/big.bin", std::string("Range: ") + huge + "\r\n");
    EXPECT_EQ(status_of(refused), 416) << refused;
    EXPECT_EQ(header_of(refused, "content-range"), "bytes */1048576");
    EXPECT_EQ(body_of(refused)["code"], "range_not_satisfiable");
  }
  EXPECT_EQ(status_of(get("/assets/big.bin", "Range: bytes=0-1,5-6\r\n")), 200) << "several ranges: the whole file";
  EXPECT_EQ(status_of(get("/assets/big.bin", "Range: bytes=9-2\r\n")), 200) << "an invalid range is ignored";
  EXPECT_EQ(status_of(get("/assets/big.bin", "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n")), 200);
  auto whole = get("/assets/big.bin");
  EXPECT_EQ(body_text(whole), big) << "large files go out whole through sendfile";
}

TEST_F(WebTest, TheApiInProcessAndItsWebSocketOnLoopback) {
  start(true);
  auto health = get("/api/v1/healthz");
  EXPECT_EQ(status_of(health), 200) << health;
  EXPECT_EQ(body_of(health)["status"], "ok");
  EXPECT_FALSE(header_of(health, "x-request-id").empty());
  auto missing = get("/api/v1/nope");
  EXPECT_EQ(status_of(missing), 404);
  EXPECT_EQ(body_of(missing)["code"], "not_found");
  auto wrong = request("DELETE", "/api/v1/healthz");
  EXPECT_EQ(status_of(wrong), 405);
  // The upgrade goes to http-api's own port; with no Authenticator it is refused there, as is.
  auto upgrade = get("/api/v1/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
  EXPECT_EQ(status_of(upgrade), 401) << upgrade;
  EXPECT_EQ(header_of(upgrade, "x-frame-options"), "DENY");
}

TEST_F(WebTest, ProxyRoutesInProcessGoThroughTheApiPort) {
  start(true);
  // A proxy route (as workloads mounts for /api/v1/workloads/{id}/proxy/*) streams, so it
  // cannot be dispatched as a value: web sends it to the API port, which forwards it.
  synthorg::RouteSpec route{"GET", "/api/v1/test/forward/{*rest}", synthorg::Access::open, {}, json::object(), {}};
  int api = api_port;
  route.proxy = [api](synthorg::HttpRequest&, synthorg::ProxyDecide decide) {
    decide(synthorg::ProxyTarget{"127.0.0.1", static_cast<std::uint16_t>(api), "/api/v1/healthz", {}, {}});
  };
  auto token = kernel->registry().get<synthorg::HttpRouter>()->add(std::move(route));
  auto forwarded = get("/api/v1/test/forward/anything");
  EXPECT_EQ(status_of(forwarded), 200) << forwarded;
  EXPECT_EQ(body_of(forwarded)["status"], "ok");
  EXPECT_EQ(header_of(forwarded, "x-frame-options"), "DENY");
}

TEST_F(WebTest, TheApiThroughAnUpstream) {
  // http-api in another process is the upstream.
  auto upstream_port = free_port();
  auto plugins = dir.path() / "upstream-plugins";
  fs::create_directories(plugins);
  for (const char* name : {"http-api.so", "store-sqlite.so", "auth.so"})
    fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / name, plugins / name);
  auto config = dir.write("upstream.yaml", "company_name: Upstream\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                               "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                               std::to_string(upstream_port) + "}\n  store-sqlite:\n    config: {path: " +
                                               (dir / "u.db").string() + "}\n  auth: {}\n");
  Process upstream({"--config", config.string(), "serve"},
                   {{"SYNTHORG_JWT_SECRET", "web-test-secret-web-test-secret-web-test-secret"},
                    {"SYNTHORG_HTTP_ACCESS_LOG", "false"}});
  ASSERT_TRUE(upstream.wait_for_output("All plugins started", 30s)) << upstream.output();
  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(upstream_port) + "\"");
  auto health = get("/api/v1/healthz", "X-Request-Id: trace-me-1\r\n");
  EXPECT_EQ(status_of(health), 200) << health;
  EXPECT_EQ(body_of(health)["status"], "ok");
  EXPECT_EQ(header_of(health, "x-request-id"), "trace-me-1");
  EXPECT_EQ(header_of(health, "x-frame-options"), "DENY");
  auto openapi = get("/api/v1/openapi.json");
  EXPECT_EQ(status_of(openapi), 200);
  EXPECT_EQ(body_of(openapi)["openapi"], "3.1.0");
  // Kept alive across proxied requests.
  Client client(port);
  for (int i = 0; i < 3; ++i) {
    client.send("GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status_of(client.response()), 200);
  }

  // Signed in through the proxy (the cookie comes back through it), then a WebSocket with a
  // ticket: 101 relayed, and frames flow both ways through the tunnel.
  std::string credentials = R"({"username": "admin", "password": "correct-horse-battery"})";
  auto post = [&](const std::string& path, const std::string& body, const std::string& cookie) {
    return request("POST", path, "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                     "\r\n" + (cookie.empty() ? "" : "Cookie: " + cookie + "\r\n") + "\r\n" + body);
  };
  ASSERT_EQ(status_of(post("/api/v1/auth/setup", credentials, "")), 201);
  auto login = post("/api/v1/auth/login", credentials, "");
  ASSERT_EQ(status_of(login), 200) << login;
  auto cookie = header_of(login, "set-cookie");
  cookie = cookie.substr(0, cookie.find(';'));
  auto ticket = body_of(post("/api/v1/auth/ws-ticket", "", cookie))["ticket"].get<std::string>();
  int fd = connect_raw();
  ASSERT_GE(fd, 0);
  auto send_all = [fd](const std::string& bytes) { ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size())); };
  auto receive_until = [fd](const std::string& text) {
    std::string received;
    char buffer[1024];
    while (received.find(text) == std::string::npos) {
      auto got = ::recv(fd, buffer, sizeof buffer, 0);
      if (got <= 0) break;
      received.append(buffer, static_cast<std::size_t>(got));
    }
    return received;
  };
  send_all("GET /api/v1/ws?ticket=" + ticket + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  auto handshake = receive_until("\r\n\r\n");
  ASSERT_EQ(status_of(handshake), 101) << handshake;
  EXPECT_EQ(header_of(handshake, "sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  // One masked text frame (clients must mask; an all-zero mask keeps it readable).
  std::string message = R"({"action":"subscribe","channels":["workload"]})";
  std::string frame = {static_cast<char>(0x81), static_cast<char>(0x80 | message.size()), 0, 0, 0, 0};
  send_all(frame + message);
  auto reply = receive_until("subscribed");
  ::close(fd);
  EXPECT_NE(reply.find(R"("type":"subscribed")"), std::string::npos) << reply;
}

TEST_F(WebTest, AnUpstreamThatIsDownOrHangsIsA502Or504) {
  SilentServer silent;
  auto dead = free_port();
  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(dead) + "\", upstream_timeout: 500ms");
  auto down = get("/api/v1/healthz");
  EXPECT_EQ(status_of(down), 502) << down;
  EXPECT_EQ(body_of(down)["code"], "upstream_unreachable");
  EXPECT_EQ(header_of(down, "content-type"), "application/problem+json");
  auto ws = get("/api/v1/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
  EXPECT_EQ(status_of(ws), 502) << "a WebSocket to a dead upstream: " << ws;
  EXPECT_EQ(body_of(ws)["code"], "upstream_unreachable");
  EXPECT_EQ(header_of(ws, "x-frame-options"), "DENY") << "the listener's own problems carry its headers too";
  kernel.reset();

  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(silent.port()) + "\", upstream_timeout: 500ms");
  auto started = std::chrono::steady_clock::now();
  auto hung = get("/api/v1/healthz");
  EXPECT_EQ(status_of(hung), 504) << hung;
  EXPECT_EQ(body_of(hung)["code"], "upstream_timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  auto hung_ws = get("/api/v1/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
  EXPECT_EQ(status_of(hung_ws), 504) << hung_ws;
}

TEST_F(WebTest, ALargePostThroughTheUpstreamStreamsWholeWithTheCallersCredentials) {
  Upstream upstream;
  // A body limit far below the upload: relayed bodies are streamed, never held against it.
  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(upstream.port()) + "\", max_body_bytes: 1024");
  std::string payload(8 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + (i * 7) % 26);
  Client client(port);
  client.send("POST /api/v1/upload?x=1 HTTP/1.1\r\nHost: web.example\r\nContent-Length: " +
              std::to_string(payload.size()) +
              "\r\nAuthorization: Bearer for-our-api\r\nCookie: theme=dark; synthorg_session=S1\r\n\r\n");
  for (std::size_t at = 0; at < payload.size(); at += 1 << 20) client.send(payload.substr(at, 1 << 20));
  auto response = client.response();
  ASSERT_EQ(status_of(response), 200) << response.substr(0, 400);
  auto echo = body_of(response);
  EXPECT_EQ(echo["target"], "/api/v1/upload?x=1");
  EXPECT_EQ(echo["bytes"], payload.size());
  EXPECT_EQ(echo["sha256"], crypto::to_hex(crypto::sha256(payload)));
  // The hop is to our own API: the caller's credentials go with it.
  EXPECT_EQ(echo["headers"].value("Authorization", ""), "Bearer for-our-api") << echo["headers"].dump();
  EXPECT_EQ(echo["headers"].value("Cookie", ""), "theme=dark; synthorg_session=S1");
  EXPECT_EQ(echo["headers"].value("x-forwarded-for", ""), "127.0.0.1");
  EXPECT_EQ(echo["headers"].value("x-forwarded-host", ""), "web.example");
  EXPECT_EQ(header_of(response, "x-frame-options"), "DENY");
  EXPECT_FALSE(header_of(response, "content-security-policy").empty());
}

TEST_F(WebTest, OneClientConnectionKeepsOneUpstreamConnection) {
  Upstream upstream;
  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(upstream.port()) + "\"");
  Client client(port);
  for (int i = 0; i < 2; ++i) {
    client.send("GET /api/v1/echo?n=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto response = client.response();
    ASSERT_EQ(status_of(response), 200) << response;
    EXPECT_EQ(body_of(response)["target"], "/api/v1/echo?n=" + std::to_string(i));
  }
  client.send("GET /api/v1/big HTTP/1.1\r\nHost: x\r\n\r\n");
  auto big = client.response();
  EXPECT_EQ(big.size() - big.find("\r\n\r\n") - 4, static_cast<std::size_t>(5 << 20)) << "the answer streams down";
  EXPECT_EQ(upstream.connections, 1) << "requests on one client connection share one upstream connection";
  // An upstream that hangs up instead of answering: the kept connection is not trusted, the
  // request goes once more on a fresh one (2), which fails too: 502, and the client connection
  // closes. A new client connection gets an upstream connection of its own (3).
  client.send("GET /api/v1/close HTTP/1.1\r\nHost: x\r\n\r\n");
  auto closed = client.response();
  EXPECT_EQ(status_of(closed), 502) << closed;
  EXPECT_EQ(body_of(closed)["code"], "upstream_unreachable");
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_EQ(status_of(get("/api/v1/echo")), 200);
  EXPECT_EQ(upstream.connections, 3);
}

TEST_F(WebTest, AnUpstreamThatAnswersTooLateIsA504AndAWebSocketIsTunnelled) {
  Upstream upstream;
  start(false, "api_upstream: \"http://127.0.0.1:" + std::to_string(upstream.port()) + "\", upstream_timeout: 500ms");
  auto started = std::chrono::steady_clock::now();
  auto late = get("/api/v1/hang");
  EXPECT_EQ(status_of(late), 504) << late;
  EXPECT_EQ(body_of(late)["code"], "upstream_timeout");
  EXPECT_EQ(header_of(late, "content-type"), "application/problem+json");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1400ms);
  int fd = connect_raw();
  ASSERT_GE(fd, 0);
  std::string upgrade = "GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  // One masked text frame right behind the handshake: it must survive the switch to the tunnel.
  std::string frame = {static_cast<char>(0x81), static_cast<char>(0x85), 0, 0, 0, 0};
  upgrade += frame + "hello";
  ASSERT_EQ(::send(fd, upgrade.data(), upgrade.size(), 0), static_cast<ssize_t>(upgrade.size()));
  std::string received;
  char buffer[1024];
  while (received.find("hello") == std::string::npos) {
    auto got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) break;
    received.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  EXPECT_EQ(status_of(received), 101) << received;
  EXPECT_EQ(header_of(received, "x-frame-options"), "DENY");
  EXPECT_NE(received.find("hello"), std::string::npos) << "the echo came back through the tunnel";
}

TEST_F(WebTest, HeadCarriesTheGetsLengthAndNoBody) {
  start(true);
  for (const char* target : {"/api/v1/healthz", "/api/v1/openapi.json", "/", "/assets/app.js", "/assets/big.bin",
                             "/healthz"}) {
    SCOPED_TRACE(target);
    auto got = get(target);
    ASSERT_EQ(status_of(got), 200) << got;
    auto length = header_of(got, "content-length");
    EXPECT_EQ(length, std::to_string(body_text(got).size()));
    auto head = until_closed(std::string("HEAD ") + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(head), 200) << head;
    EXPECT_EQ(header_of(head, "content-length"), length) << head;
    EXPECT_EQ(body_text(head), "") << "HEAD: the length, not the bytes";
  }
}

TEST_F(WebTest, ASlowRequestIsAnswered408ThenClosed) {
  Upstream upstream;
  start(true, "request_timeout: 300ms");
  auto expect_408 = [this](const std::string& bytes) {
    auto started = std::chrono::steady_clock::now();
    auto answer = until_closed(bytes);  // sends, then reads until the server closes
    EXPECT_EQ(status_of(answer), 408) << answer;
    EXPECT_EQ(header_of(answer, "content-type"), "application/problem+json");
    EXPECT_EQ(body_of(answer)["code"], "request_timeout");
    EXPECT_EQ(header_of(answer, "connection"), "close");
    EXPECT_EQ(header_of(answer, "x-frame-options"), "DENY");
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  };
  {
    SCOPED_TRACE("headers that never end");
    expect_408("GET / HTTP/1.1\r\nHost: x\r\n");
  }
  {
    SCOPED_TRACE("a short body for the API in process");
    expect_408("POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a few bytes");
  }
  kernel.reset();
  start(false, "request_timeout: 300ms, api_upstream: \"http://127.0.0.1:" + std::to_string(upstream.port()) + "\"");
  {
    SCOPED_TRACE("a short body relayed to the upstream");
    expect_408("POST /api/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a few bytes");
  }
  EXPECT_EQ(status_of(get("/api/v1/echo")), 200) << "the listener goes on";
}

TEST_F(WebTest, ABodyForTheApiInProcessIsHeldToMaxBodyBytes) {
  start(true, "max_body_bytes: 1024");
  auto declared = request("POST", "/api/v1/auth/login", "Content-Length: 5000\r\n\r\n" + std::string(5000, 'b'));
  EXPECT_EQ(status_of(declared), 413) << declared;
  EXPECT_EQ(body_of(declared)["code"], "body_too_large");
  auto detail = body_of(declared)["detail"].get<std::string>();
  EXPECT_NE(detail.find("1024 bytes (max_body_bytes)"), std::string::npos) << detail;
  auto chunked = request("POST", "/api/v1/auth/login",
                         "Transfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(2048, 'c') + "\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(chunked), 413) << chunked;
  auto small = request("POST", "/api/v1/nope", "Content-Length: 10\r\n\r\n0123456789");
  EXPECT_EQ(status_of(small), 404) << "within the limit: read whole and dispatched";
}

TEST_F(WebTest, NoApiBehindItIsSaidPlainly) {
  start(false);
  auto response = get("/api/v1/healthz");
  EXPECT_EQ(status_of(response), 502);
  EXPECT_EQ(body_of(response)["code"], "api_unavailable");
}

TEST_F(WebTest, ABadUpstreamUrlIsAConfigurationError) {
  auto error = start_error("api_upstream: \"https://backend:3001\"");
  EXPECT_NE(error.find("api_upstream"), std::string::npos) << error;
  EXPECT_NE(error.find("http://"), std::string::npos) << error;
}

}  // namespace
}  // namespace synthorg::kernel
