// A stop that finishes what is in flight, from the client's side: a real `synthorg serve` whose
// workload (orchestrator-process) answers slowly is sent SIGTERM while a proxied request waits on
// it. The kernel drains its listeners before it stops the workloads and the orchestrator, so the
// request is answered 200, not 502.
#include <gtest/gtest.h>

#include <csignal>
#include <future>
#include <thread>

#include "http_client.hpp"
#include "serve_testing.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

using namespace std::chrono_literals;
using namespace synthorg::testing;
using nlohmann::json;

// An HTTP server for the workload: "/" at once (readiness), "/slow" after two seconds.
constexpr const char* slow_server = R"(
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith('/slow'): time.sleep(2)
        body = b'done'
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer((os.environ['SYNTHORG_LISTEN_HOST'], 8080), H).serve_forever()
)";

std::string request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& token = "") {
  Client client(port);
  std::string head = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  if (!token.empty()) head += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty()) head += "Content-Type: application/json\r\n";
  client.send(head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  return client.response();
}

TEST(DrainTest, SigtermLetsAProxiedRequestInFlightFinishBeforeItsWorkloadStops) {
  TempDir dir;
  link_plugins(dir / "plugins", {"http-api.so", "store-sqlite.so", "auth.so", "workloads.so", "orchestrator-process.so"});
  int port = free_port();
  json command = json::array({"python3", "-c", slow_server});
  auto config = dir.write(
      "company.yaml",
      "company_name: Test\nkernel:\n  plugin_dirs: [" + (dir / "plugins").string() +
          "]\n  shutdown_timeout: 10s\nselect: {orchestrator: orchestrator-process}\nplugins:\n"
          "  http-api: {config: {address: 127.0.0.1, port: " + std::to_string(port) + ", drain_timeout: 8s}}\n"
          "  store-sqlite: {config: {path: " + (dir / "s.db").string() + "}}\n"
          "  auth: {config: {argon2_memory_kib: 4096, argon2_iterations: 1}}\n"
          "  orchestrator-process: {config: {}}\n"
          "  workloads: {config: {image: slow, command: " + command.dump() +
          ", port: 8080, memory_limit: \"0\", pids_limit: 0, user: \"\", stop_on_shutdown: true, stop_grace: 0s}}\n");
  Process server({"--config", config.string(), "serve"},
                 {{"SYNTHORG_JWT_SECRET", std::string(48, 's')}, {"SYNTHORG_HTTP_ACCESS_LOG", "false"}});
  ASSERT_TRUE(server.wait_for_output("All plugins started", 20s)) << server.output();
  json credentials = {{"username", "admin"}, {"password", "a long pass phrase 1"}};
  ASSERT_EQ(status_of(request(port, "POST", "/api/v1/auth/setup", credentials.dump())), 201);
  auto token = body_of(request(port, "POST", "/api/v1/auth/login", credentials.dump()))["token"].get<std::string>();
  auto created = request(port, "POST", "/api/v1/workloads", "", token);
  ASSERT_EQ(status_of(created), 201) << created << server.output();

  auto slow = std::async(std::launch::async, [&] { return request(port, "GET", "/api/v1/workloads/me/proxy/slow", "", token); });
  std::this_thread::sleep_for(500ms);  // the request is with the workload now
  server.signal(SIGTERM);
  auto answer = slow.get();
  EXPECT_EQ(status_of(answer), 200) << "answered, not cut off by the stop:\n" << answer << "\n" << server.output();
  EXPECT_NE(answer.find("done"), std::string::npos) << answer;
  EXPECT_EQ(server.wait(20s), 0) << server.output();
  auto output = server.output();
  auto drained = output.find("Listeners drained");
  auto stopped = output.find("msg=\"Plugin stopped\" plugin=workloads");
  ASSERT_NE(drained, std::string::npos) << output;
  ASSERT_NE(stopped, std::string::npos) << output;
  EXPECT_LT(drained, stopped) << "the listeners drain before the workloads stop";
}

}  // namespace
}  // namespace synthorg::kernel
