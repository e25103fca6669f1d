// Stopping, from the client's side, with a real `synthorg serve` on orchestrator-process (and,
// for the first case, on orchestrator-docker too):
// - a stop that finishes what is in flight: the workload answers slowly and the kernel is sent
//   SIGTERM while a proxied request waits on it. The kernel drains its listeners before it stops
//   the workloads and the orchestrator, so the request is answered 200, not 502;
// - a kill that leaves nothing behind: after kill -9 the workload process keeps running with no
//   owner, and the next start finds it through its record and stops it.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
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

// A kernel with auth and workloads on orchestrator-process (or, given `docker_instance`,
// orchestrator-docker) whose workload runs `command` in `image`.
class ServeWithProcessWorkloads {
 public:
  explicit ServeWithProcessWorkloads(const json& command, const std::string& docker_instance = "",
                                     const std::string& image = "slow")
      : port_(free_port()) {
    bool docker = !docker_instance.empty();
    std::string orchestrator = docker ? "orchestrator-docker" : "orchestrator-process";
    link_plugins(dir_ / "plugins", {"http-api.so", "store-sqlite.so", "auth.so", "workloads.so",
                                    docker ? "orchestrator-docker.so" : "orchestrator-process.so"});
    config_ = dir_.write(
        "company.yaml",
        "company_name: Test\nkernel:\n  plugin_dirs: [" + (dir_ / "plugins").string() +
            "]\n  shutdown_timeout: 10s\nselect: {orchestrator: " + orchestrator + "}\nplugins:\n"
            "  http-api: {config: {address: 127.0.0.1, port: " + std::to_string(port_) + ", drain_timeout: 8s}}\n"
            "  store-sqlite: {config: {path: " + (dir_ / "s.db").string() + "}}\n"
            "  auth: {config: {argon2_memory_kib: 4096, argon2_iterations: 1}}\n" +
            (docker ? "  orchestrator-docker: {config: {pull_missing: false}}\n"
                    : "  orchestrator-process: {config: {state_dir: " + (dir_ / "process-workloads").string() + "}}\n") +
            "  workloads: {config: {image: \"" + image + "\", command: " + command.dump() +
            ", port: 8080, stop_on_shutdown: true, stop_grace: 0s" +
            (docker ? ", instance: " + docker_instance
                    : ", memory_limit: \"0\", pids_limit: 0, user: \"\"") +
            "}}\n");
  }
  std::unique_ptr<Process> start() {
    auto server = std::make_unique<Process>(std::vector<std::string>{"--config", config_.string(), "serve"},
                                            std::map<std::string, std::string>{{"SYNTHORG_JWT_SECRET", std::string(48, 's')},
                                                                               {"SYNTHORG_HTTP_ACCESS_LOG", "false"}});
    EXPECT_TRUE(server->wait_for_output("All plugins started", 20s)) << server->output();
    return server;
  }
  // Signs the admin in (setting up the first time) and answers the token.
  std::string sign_in() {
    json credentials = {{"username", "admin"}, {"password", "a long pass phrase 1"}};
    request(port_, "POST", "/api/v1/auth/setup", credentials.dump());
    return body_of(request(port_, "POST", "/api/v1/auth/login", credentials.dump())).value("token", "");
  }
  int port() const { return port_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  int port_;
  std::filesystem::path config_;
};

TEST(StopTest, SigtermLetsAProxiedRequestInFlightFinishBeforeItsWorkloadStops) {
  ServeWithProcessWorkloads kernel(json::array({"python3", "-c", slow_server}));
  auto port = kernel.port();
  auto server_owner = kernel.start();
  auto& server = *server_owner;
  auto token = kernel.sign_in();
  ASSERT_FALSE(token.empty()) << server.output();
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

// The same on Docker: the workload is busybox nc in the test image, each connection answered by
// a shell that waits two seconds before answering /slow.
TEST(StopTest, OnDockerSigtermLetsAProxiedRequestInFlightFinishBeforeItsContainerStops) {
  if (const char* skip = std::getenv("SYNTHORG_TEST_NO_DOCKER"); skip && std::string(skip) == "1")
    GTEST_SKIP() << "SYNTHORG_TEST_NO_DOCKER=1";
  const std::string image = "synthorg-test/busybox:latest";
  if (shell("docker image inspect --format ok " + image) != "ok")
    FAIL() << image << " is missing or the engine is down: run scripts/services docker";
  auto instance = test_instance("stop");
  const std::string answer_one =
      R"sh(read line; while read h; do case "$h" in "$(printf '\r')"|"") break;; esac; done; )sh"
      R"sh(case "$line" in *slow*) sleep 2;; esac; )sh"
      R"sh(printf 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone')sh";
  const json command = {"/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/busybox", "sh", "-c", answer_one};
  {
    ServeWithProcessWorkloads kernel(command, instance, image);
    auto port = kernel.port();
    auto server = kernel.start();
    auto token = kernel.sign_in();
    ASSERT_FALSE(token.empty()) << server->output();
    auto created = request(port, "POST", "/api/v1/workloads", "", token);
    ASSERT_EQ(status_of(created), 201) << created << server->output();
    auto slow = std::async(std::launch::async,
                           [&] { return request(port, "GET", "/api/v1/workloads/me/proxy/slow", "", token); });
    std::this_thread::sleep_for(700ms);
    server->signal(SIGTERM);
    auto answer = slow.get();
    EXPECT_EQ(status_of(answer), 200) << "answered, not cut off by the stop:\n" << answer << "\n" << server->output();
    EXPECT_NE(answer.find("done"), std::string::npos) << answer;
    EXPECT_EQ(server->wait(30s), 0) << server->output();
    auto output = server->output();
    auto drained = output.find("Listeners drained");
    auto stopped = output.find("msg=\"Plugin stopped\" plugin=workloads");
    ASSERT_NE(drained, std::string::npos) << output;
    ASSERT_NE(stopped, std::string::npos) << output;
    EXPECT_LT(drained, stopped) << "the listeners drain before the workloads stop";
  }
  EXPECT_EQ(remove_instance_containers(instance), "") << "stop_on_shutdown left containers behind";
}

// Field 3 of /proc/PID/stat: R, S, Z...; 0 when there is no such process.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? 0 : text[close + 2];
}

bool process_gone(pid_t pid, std::chrono::milliseconds patience) {
  for (auto deadline = std::chrono::steady_clock::now() + patience; std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(50ms)) {
    auto state = process_state(pid);
    if (state == 0 || state == 'Z' || state == 'X') return true;
  }
  return false;
}

TEST(StopTest, AWorkloadLeftRunningByAKilledKernelIsStoppedByTheNextStart) {
  ServeWithProcessWorkloads kernel(json::array({"python3", "-c", slow_server}));
  auto port = kernel.port();
  auto first = kernel.start();
  auto token = kernel.sign_in();
  ASSERT_FALSE(token.empty()) << first->output();
  ASSERT_EQ(status_of(request(port, "POST", "/api/v1/workloads", "", token)), 201) << first->output();
  auto records = kernel.dir() / "process-workloads";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(records)) files.push_back(entry.path());
  ASSERT_EQ(files.size(), 1u) << "one record per running workload in " << records;
  EXPECT_EQ(std::filesystem::status(records).permissions() & std::filesystem::perms::all, std::filesystem::perms::owner_all);
  auto record = json::parse(std::ifstream(files.front()));
  auto pid = record.at("pid").get<pid_t>();
  ASSERT_NE(process_state(pid), 0) << record;

  first->signal(SIGKILL);
  first->wait(10s);
  std::this_thread::sleep_for(300ms);
  auto state = process_state(pid);
  ASSERT_TRUE(state != 0 && state != 'Z') << "without a stop the workload keeps running (the orphan this test is about)";

  auto second = kernel.start();
  EXPECT_TRUE(process_gone(pid, 5s)) << "the restarted kernel stops the orphan\n" << second->output();
  auto output = second->output();
  EXPECT_NE(output.find("Orphaned workload process stopped"), std::string::npos) << output;
  EXPECT_FALSE(std::filesystem::exists(files.front())) << "its record goes with it";

  // The user's record says it ended, and they get a new workload, which is recorded afresh.
  auto token_again = kernel.sign_in();
  auto mine = request(port, "GET", "/api/v1/workloads/me", "", token_again);
  EXPECT_NE(status_of(mine) == 200 ? body_of(mine).value("state", "") : "", "running") << mine;
  auto created = request(port, "POST", "/api/v1/workloads", "", token_again);
  ASSERT_EQ(status_of(created), 201) << created << output;
  std::size_t now_recorded = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(records)) ++now_recorded;
  EXPECT_EQ(now_recorded, 1u);

  // A clean stop removes the workload and its record.
  second->signal(SIGTERM);
  EXPECT_EQ(second->wait(20s), 0) << second->output();
  std::size_t after_stop = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(records)) ++after_stop;
  EXPECT_EQ(after_stop, 0u) << second->output();
}

}  // namespace
}  // namespace synthorg::kernel
