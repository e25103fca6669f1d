// Connection limits that hold when file descriptors run short, from the client's side: a real
// `synthorg serve` under a low open-file limit is sent many connections, each asking healthz.
// Every one must be answered (200) or refused (503); none may hang, and the server must go back
// to idle instead of spinning on accept().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "http_client.hpp"
#include "serve_testing.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

using namespace std::chrono_literals;
using namespace synthorg::testing;

// CPU seconds (user + system) the process has used, from /proc/PID/stat.
double cpu_seconds(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string skip;
  for (int i = 0; i < 11; ++i) fields >> skip;  // state .. cmajflt: fields 3 to 13
  double user = 0, system = 0;
  fields >> user >> system;
  return (user + system) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Attempts {
  std::map<int, int> statuses;  // status → how many; 0: no answer within 5 s
  std::vector<int> open;        // connections the server kept
  ~Attempts() {
    for (int fd : open) ::close(fd);
  }
};

// `count` connections, one after another, each sending a kept-alive healthz request and reading
// its answer. Those answered 200 are kept open, so the server's descriptors fill up.
void attempt(int port, int count, Attempts& attempts) {
  const std::string request = "GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < count; ++i) {
    int fd = connect_loopback(port, 5);
    ASSERT_GE(fd, 0) << "connection " << i << " failed (or the test itself ran out of descriptors)";
    std::string answer;
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      while (answer.find("\r\n\r\n") == std::string::npos) {
        auto got = ::recv(fd, buffer, sizeof buffer, 0);
        if (got <= 0) break;
        answer.append(buffer, static_cast<std::size_t>(got));
      }
    }
    int status = answer.empty() ? 0 : status_of(answer);
    ++attempts.statuses[status];
    if (status == 200) {
      attempts.open.push_back(fd);
    } else {
      ::close(fd);
    }
  }
}

class ConnectionLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port = free_port();
    link_plugins(dir / "plugins", {"http-api.so", "store-sqlite.so"});
    config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + (dir / "plugins").string() +
                                           "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                           std::to_string(port) + "}\n  store-sqlite:\n    config: {path: " +
                                           (dir / "s.db").string() + "}\n")
                 .string();
  }
  TempDir dir;
  int port = 0;
  std::string config;
};

TEST_F(ConnectionLimitsTest, TheDefaultLimitComesFromTheOpenFileLimitAndAnswers503BeforeItRunsOut) {
  // prlimit(1) runs synthorg in its place with 512 descriptors, hard and soft.
  Process server({"--config", config, "serve"}, {{"SYNTHORG_HTTP_ACCESS_LOG", "false"}},
                 {"prlimit", "--nofile=512:512", "--"});
  ASSERT_TRUE(server.wait_for_output("All plugins started", 20s)) << server.output();
  EXPECT_NE(server.output().find("open_files=512"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("max_connections=128"), std::string::npos)
      << "(512 - 256) / 2, logged at start:\n" << server.output();

  Attempts attempts;
  attempt(port, 400, attempts);
  EXPECT_EQ(attempts.statuses[0], 0) << "no connection may go unanswered";
  EXPECT_EQ(attempts.statuses[200], 128) << "the limit's worth are served";
  EXPECT_EQ(attempts.statuses[503], 400 - 128) << "the rest are refused at once";
  EXPECT_EQ(server.output().find("out of file descriptors"), std::string::npos)
      << "the limit answered before the descriptors ran out:\n" << server.output();
}

TEST_F(ConnectionLimitsTest, OutOfDescriptorsEveryClientIsAnswered503AndTheServerGoesIdle) {
  // A limit far above what the descriptors allow: only the spare descriptor stands between the
  // clients and an accept loop that spins.
  Process server({"--config", config, "serve"},
                 {{"SYNTHORG_HTTP_ACCESS_LOG", "false"}, {"SYNTHORG_HTTP_MAX_CONNECTIONS", "100000"}});
  ASSERT_TRUE(server.wait_for_output("All plugins started", 20s)) << server.output();
  rlimit low{256, 256};
  ASSERT_EQ(::prlimit(server.pid(), RLIMIT_NOFILE, &low, nullptr), 0) << "prlimit needs root or the same user";

  Attempts attempts;
  attempt(port, 1000, attempts);
  EXPECT_EQ(attempts.statuses[0], 0) << "no connection may hang";
  EXPECT_GT(attempts.statuses[200], 100) << "served while descriptors lasted";
  EXPECT_GT(attempts.statuses[503], 500) << "the rest refused with 503";
  EXPECT_EQ(attempts.statuses[200] + attempts.statuses[503], 1000);

  std::this_thread::sleep_for(200ms);
  auto before = cpu_seconds(server.pid());
  std::this_thread::sleep_for(1s);
  auto spent = cpu_seconds(server.pid()) - before;
  EXPECT_LT(spent, 0.1) << "idle while the connections are held, not spinning on accept()";
  auto logged = occurrences(server.output(), "out of file descriptors");
  EXPECT_GE(logged, 1u) << server.output();
  EXPECT_LE(logged, 2u) << "logged once per interval, not per client";
  EXPECT_NE(server.output().find("ulimit -n"), std::string::npos) << "the log line says how to fix it";

  for (int fd : attempts.open) ::close(fd);
  attempts.open.clear();
  int status = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; status != 200 && std::chrono::steady_clock::now() < deadline;) {
    Client client(port);
    client.send("GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    status = status_of(client.response());
    if (status != 200) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 200) << "served again once the connections closed";
}

}  // namespace
}  // namespace synthorg::kernel
