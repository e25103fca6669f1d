// The workloads plugin end to end: a real `synthorg serve` (http-api, auth, store-sqlite,
// orchestrator-docker, workloads) against the real Docker engine scripts/services starts, with
// the local test image (busybox httpd). Users come with their own JWTs, signed with the kernel's
// secret the way an outside issuer (PondPilot) would. Each test's containers carry a
// synthorg.instance label of their own, and are removed at the end whatever happened.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <set>
#include <tuple>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "../../plugins/auth/jwt.hpp"
#include "http_client.hpp"
#include "serve_testing.hpp"
#include "test_support.hpp"

namespace synthorg::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const char* const secret = "test-secret-for-workloads-tests-0123456789-abcdefghij";
const char* const test_image = "synthorg-test/busybox:latest";
const std::string default_command = "command: [/bin/busybox, httpd, -f, -p, \"8080\", -h, /www], ";

class WorkloadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* skip = std::getenv("SYNTHORG_TEST_NO_DOCKER"); skip && std::string(skip) == "1")
      GTEST_SKIP() << "SYNTHORG_TEST_NO_DOCKER=1";
    if (shell("docker image inspect --format ok " + std::string(test_image)) != "ok")
      FAIL() << test_image << " is missing or the engine is down: run scripts/services docker";
    instance = test_instance("wt");
    link_plugins(dir.path() / "plugins",
                 {"http-api.so", "store-sqlite.so", "auth.so", "orchestrator-docker.so", "workloads.so", "telemetry.so"});
    port = free_port();
  }
  void TearDown() override {
    server.reset();
    EXPECT_EQ(remove_instance_containers(instance), "") << "containers left behind";
  }

  // Starts the kernel; `extra` is more of the workloads config map, as YAML flow entries (a
  // command there replaces busybox httpd's).
  void start(const std::string& extra = "", std::map<std::string, std::string> env = {}) {
    auto config = dir.write(
        "company.yaml",
        "company_name: Workloads\nkernel:\n  plugin_dirs: [" + (dir.path() / "plugins").string() +
            "]\n  blocking_threads: 16\nselect: {store: store-sqlite, orchestrator: orchestrator-docker}\n"
            "plugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " + std::to_string(port) +
            "}\n  store-sqlite:\n    config: {path: " + (dir / "s.db").string() +
            "}\n  auth: {config: {accept_external_tokens: true, external_max_role: admin}}\n  telemetry:\n    config: {data_dir: " + (dir / "data").string() +
            "}\n  orchestrator-docker:\n    config: {pull_missing: false}\n  workloads:\n    config: {image: \"" +
            image + "\", " + (extra.find("command:") == std::string::npos ? default_command : "") +
            "port: 8080, instance: " + instance +
            ", stop_grace: 0s" + (extra.empty() ? "" : ", " + extra) + "}\n");
    env["SYNTHORG_JWT_SECRET"] = secret;
    env["SYNTHORG_HTTP_ACCESS_LOG"] = "false";
    server = std::make_unique<Process>(std::vector<std::string>{"--config", config.string(), "serve"}, env);
    ASSERT_TRUE(server->wait_for_output("All plugins started", 30s)) << server->output();
  }

  static std::string token(const std::string& subject, const std::string& role = "viewer") {
    auth::JwtCodec codec({secret, {auth::JwtAlgorithm::hs256}, 30s});
    return codec.sign({{"sub", subject}, {"role", role}, {"exp", std::time(nullptr) + 3600},
                       {"iat", std::time(nullptr)}});
  }

  std::string call(const std::string& method, const std::string& path, const std::string& bearer = "") {
    Client client(port);
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    if (!bearer.empty()) request += "Authorization: Bearer " + bearer + "\r\n";
    if (method != "GET") request += "Content-Length: 0\r\n";
    client.send(request + "\r\n");
    return client.response();
  }
  json create(const std::string& user, int expected = 201) {
    auto response = call("POST", "/api/v1/workloads", token(user));
    EXPECT_EQ(status_of(response), expected) << response;
    return body_of(response);
  }

  std::string docker_ids(const std::string& extra_filter = "", bool all = false) {
    return shell(std::string("docker ps ") + (all ? "-a " : "") + "-q --no-trunc --filter label=synthorg.instance=" +
                 instance + extra_filter);
  }
  std::size_t running() { return lines(docker_ids()); }
  json containers() { return body_of(call("GET", "/health/detailed")).value("containers", json()); }

  TempDir dir;
  int port = 0;
  std::string instance;
  std::string image = test_image;
  std::unique_ptr<Process> server;
};

TEST_F(WorkloadsTest, EachUserGetsTheirOwnAndCannotSeeAnothers) {
  start();
  EXPECT_EQ(status_of(call("POST", "/api/v1/workloads")), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads")), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads/anything")), 401);

  auto alice = create("alice");
  EXPECT_EQ(alice["state"], "running");
  EXPECT_EQ(alice["owner"], "alice");
  EXPECT_FALSE(alice["container_id"].get<std::string>().empty());
  EXPECT_EQ(alice["endpoint"]["host"], "127.0.0.1");
  EXPECT_EQ(alice["urls"]["self"], "/api/v1/workloads/" + alice["id"].get<std::string>());
  auto again = create("alice", 200);
  EXPECT_EQ(again["id"], alice["id"]) << "get-or-create: the same workload";
  EXPECT_EQ(again["container_id"], alice["container_id"]);
  auto bob = create("bob");
  EXPECT_NE(bob["id"], alice["id"]);
  EXPECT_EQ(running(), 2u);
  EXPECT_TRUE(server->wait_for_output("msg=\"Container spawned\" user_id=alice container_id=" +
                                          alice["container_id"].get<std::string>(), 5s))
      << server->output();

  // The labels tell a restarted kernel what it owns; the owner's is a hash, not the subject.
  auto labels = json::parse(shell("docker inspect " + alice["container_id"].get<std::string>()))[0]["Config"]["Labels"];
  EXPECT_EQ(labels["synthorg.managed"], "true");
  EXPECT_EQ(labels["synthorg.component"], "workloads");
  EXPECT_EQ(labels["synthorg.workload"], alice["id"]);
  EXPECT_NE(labels["synthorg.owner"], "alice");
  EXPECT_EQ(labels["synthorg.owner"].get<std::string>().size(), 41u) << labels.dump();

  // Another user's id is "not found" on every route, never "forbidden".
  auto alice_path = "/api/v1/workloads/" + alice["id"].get<std::string>();
  for (auto [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", alice_path}, {"DELETE", alice_path}, {"POST", alice_path + "/touch"}}) {
    auto response = call(method, path, token("bob"));
    EXPECT_EQ(status_of(response), 404) << method << " " << path << ": " << response;
    EXPECT_EQ(code_of(response), "not_found");
  }
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads/no-such-id", token("alice"))), 404);
  EXPECT_EQ(status_of(call("GET", alice_path, token("alice"))), 200);
  EXPECT_EQ(status_of(call("GET", alice_path, token("root", "admin"))), 200) << "admins see everybody's";

  auto own = body_of(call("GET", "/api/v1/workloads", token("bob")))["workloads"];
  ASSERT_EQ(own.size(), 1u) << own.dump();
  EXPECT_EQ(own[0]["id"], bob["id"]);
  EXPECT_EQ(body_of(call("GET", "/api/v1/workloads?user=alice", token("bob")))["workloads"].size(), 1u)
      << "?user= is for admins: others still get only their own";
  EXPECT_EQ(body_of(call("GET", "/api/v1/workloads", token("root", "admin")))["workloads"].size(), 2u);
  auto only_alice = body_of(call("GET", "/api/v1/workloads?user=alice", token("root", "admin")))["workloads"];
  ASSERT_EQ(only_alice.size(), 1u);
  EXPECT_EQ(only_alice[0]["id"], alice["id"]);
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads?limit=0", token("bob"))), 400);

  auto touched = call("POST", alice_path + "/touch", token("alice"));
  EXPECT_EQ(status_of(touched), 200) << touched;

  EXPECT_EQ(containers(), json({{"active", 2}, {"total_spawned", 2}, {"total_stopped", 0}}));
  auto metrics = call("GET", "/metrics", token("root", "admin"));
  EXPECT_NE(metrics.find("\nsynthorg_workloads_active 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nsynthorg_workloads_spawned_total 2\n"), std::string::npos);
  auto deleted = call("DELETE", alice_path, token("alice"));
  ASSERT_EQ(status_of(deleted), 200) << deleted;
  EXPECT_EQ(body_of(deleted)["state"], "stopped");
  EXPECT_EQ(body_of(deleted)["reason"], "user");
  EXPECT_EQ(running(), 1u);
  EXPECT_TRUE(docker_ids(" --filter label=synthorg.workload=" + alice["id"].get<std::string>(), true).empty())
      << "stopped and removed";
  EXPECT_EQ(status_of(call("DELETE", alice_path, token("alice"))), 200) << "DELETE is idempotent";
  auto stale = call("POST", alice_path + "/touch", token("alice"));
  EXPECT_EQ(status_of(stale), 409) << stale;
  EXPECT_EQ(code_of(stale), "not_running");
  EXPECT_EQ(containers(), json({{"active", 1}, {"total_spawned", 2}, {"total_stopped", 1}}));
  EXPECT_NE(call("GET", "/metrics", token("root", "admin")).find("\nsynthorg_workloads_stopped_total 1\n"),
            std::string::npos);

  auto fresh = create("alice");  // a new one after the old one stopped
  EXPECT_NE(fresh["id"], alice["id"]);

  // The routes' OpenAPI operations, judged by openapi-spec-validator as http-api's own are.
  auto document = body_of(call("GET", "/api/v1/openapi.json"));
  EXPECT_TRUE(document["paths"].contains("/api/v1/workloads/{id}/touch"));
  auto file = dir.write("openapi.json", document.dump());
  std::string command = "python3 -c \"import json,sys; from openapi_spec_validator import validate; "
                        "validate(json.load(open(sys.argv[1])))\" " + file.string() + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "openapi-spec-validator rejected the document";
}

TEST_F(WorkloadsTest, TheProxyReachesOnlyTheCallersOwnWorkload) {
  start();
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads/me/proxy/")), 401);
  // The first request of a user with no workload waits for the spawn, then is answered by it.
  auto first = call("GET", "/api/v1/workloads/me/proxy/index.html", token("alice"));
  ASSERT_EQ(status_of(first), 200) << first;
  EXPECT_NE(first.find("synthorg test workload"), std::string::npos) << first;
  auto alice = body_of(call("GET", "/api/v1/workloads", token("alice")))["workloads"][0];
  EXPECT_EQ(alice["state"], "running");
  auto by_id = call("GET", "/api/v1/workloads/" + alice["id"].get<std::string>() + "/proxy/", token("alice"));
  EXPECT_EQ(status_of(by_id), 200) << by_id;
  EXPECT_NE(by_id.find("synthorg test workload"), std::string::npos);
  // Another user's id is not found, admins included: a sandbox is its user's.
  for (const auto& [user, role] : std::vector<std::pair<std::string, std::string>>{{"bob", "viewer"}, {"root", "admin"}}) {
    auto other = call("GET", "/api/v1/workloads/" + alice["id"].get<std::string>() + "/proxy/", token(user, role));
    EXPECT_EQ(status_of(other), 404) << user << ": " << other;
  }
  EXPECT_EQ(running(), 1u) << "refused proxying starts nothing";
  auto bob = call("GET", "/api/v1/workloads/me/proxy/", token("bob"));
  EXPECT_EQ(status_of(bob), 200) << bob;
  EXPECT_EQ(running(), 2u);
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads/me/proxy/no-such-file", token("bob"))), 404)
      << "the workload's own 404 comes through";
}

TEST_F(WorkloadsTest, AContainerThatDiesIsNoticedAndNotRestartedInAStorm) {
  start("failure_cooldown: 30s, reap_interval: 1h");
  auto workload = create("judy");
  auto path = "/api/v1/workloads/" + workload["id"].get<std::string>();
  ASSERT_EQ(status_of(call("GET", path + "/proxy/", token("judy"))), 200);
  shell("docker kill " + workload["container_id"].get<std::string>());
  auto lost = call("GET", path + "/proxy/", token("judy"));
  EXPECT_EQ(status_of(lost), 502) << lost;
  EXPECT_EQ(code_of(lost), "upstream_unreachable");
  // The proxy's failure makes the plugin look: the record says what happened, at once.
  json record;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    record = body_of(call("GET", path, token("judy")));
    if (record["state"] == "failed") break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(record["state"], "failed") << record.dump();
  EXPECT_EQ(record["reason"], "exited");
  EXPECT_EQ(containers(), json({{"active", 0}, {"total_spawned", 1}, {"total_stopped", 1}}));
  EXPECT_TRUE(server->wait_for_output("msg=\"Container exited\"", 2s));
  // Within the cool-down the failure is the answer: no new container per request.
  for (int i = 0; i < 3; ++i) {
    auto again = call("GET", "/api/v1/workloads/me/proxy/", token("judy"));
    EXPECT_EQ(status_of(again), 502) << again;
    EXPECT_EQ(code_of(again), "workload_exited");
    EXPECT_FALSE(header_of(again, "retry-after").empty());
  }
  EXPECT_EQ(containers()["total_spawned"], 1);
  EXPECT_TRUE(docker_ids("", true).empty()) << "the dead container was removed";
}

TEST_F(WorkloadsTest, AWorkloadThatNeverAnswersIsNotReady) {
  // It runs, but serves nothing on the port: the spawn fails as not_ready, bounded.
  start("command: [/bin/busybox, sleep, \"600\"], ready_timeout: 1s");
  auto started = std::chrono::steady_clock::now();
  auto response = call("POST", "/api/v1/workloads", token("kim"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  EXPECT_EQ(status_of(response), 502) << response;
  EXPECT_EQ(code_of(response), "not_ready");
  EXPECT_EQ(body_of(response)["workload"]["reason"], "not_ready");
  EXPECT_TRUE(docker_ids("", true).empty()) << "removed, not left running";
}

TEST_F(WorkloadsTest, LifecycleEventsReachTheOwnerAndAdminsOnly) {
  start();
  // The owner and an admin see mia's workload events; another user, subscribed to the same
  // channel, does not: a user's workloads are never visible to another user.
  EventClient owner(port, token("mia")), admin(port, token("root", "admin")), other(port, token("watcher"));
  for (auto* client : {&owner, &admin, &other}) {
    client->send(R"({"action":"subscribe","channels":["workload"]})");
    ASSERT_EQ(client->receive()["type"], "subscribed");
  }
  auto workload = create("mia");
  auto path = "/api/v1/workloads/" + workload["id"].get<std::string>();
  ASSERT_EQ(status_of(call("DELETE", path, token("mia"))), 200);
  for (auto* client : {&owner, &admin}) {
    std::vector<std::string> topics;
    json stopped;
    while (topics.size() < 3) {
      auto frame = client->receive();
      ASSERT_FALSE(frame.contains("error")) << frame.dump() << " after " << json(topics).dump();
      topics.push_back(frame["event_type"]);
      EXPECT_EQ(frame["payload"]["workload_id"], workload["id"]);
      EXPECT_EQ(frame["payload"]["user_id"], "mia");
      EXPECT_EQ(frame["payload"]["container_id"], workload["container_id"]);
      if (topics.back() == "workload.stopped") stopped = frame["payload"];
    }
    EXPECT_EQ(topics, (std::vector<std::string>{"workload.spawned", "workload.ready", "workload.stopped"}));
    EXPECT_EQ(stopped["reason"], "user");
  }
  // Events are delivered in order: had mia's reached the other user, they would come first.
  auto own = create("watcher");
  auto first = other.receive();
  EXPECT_EQ(first["payload"]["user_id"], "watcher") << first.dump();
  EXPECT_EQ(first["payload"]["workload_id"], own["id"]);
}

TEST_F(WorkloadsTest, BadSettingsAreRefusedAtStartNamingTheFix) {
  for (auto [extra, env, expected] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"memory_limit: 12zb", "", "memory_limit"},
           {"", "soon", "CONTAINER_IDLE_TIMEOUT=soon"},
           {"max_per_host: 0", "", "max_per_host"},
           {"pass_env: [SYNTHORG_JWT_SECRET]", "", "pass_env: 'SYNTHORG_JWT_SECRET' is the kernel's own"},
           {"pass_env: [\"A-B\"]", "", "pass_env: 'A-B' is not a variable name"}}) {
    std::map<std::string, std::string> environment;
    if (!env.empty()) environment["CONTAINER_IDLE_TIMEOUT"] = env;
    auto config = dir.write("bad.yaml", "company_name: Bad\nkernel:\n  plugin_dirs: [" + (dir.path() / "plugins").string() +
                                            "]\nselect: {store: store-sqlite, orchestrator: orchestrator-docker}\n"
                                            "plugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                            std::to_string(port) + "}\n  store-sqlite:\n    config: {path: " +
                                            (dir / "bad.db").string() + "}\n  auth: {config: {accept_external_tokens: true}}\n  workloads:\n    config: {image: x" +
                                            (extra.empty() ? "" : ", " + extra) + "}\n");
    environment["SYNTHORG_JWT_SECRET"] = secret;
    Process bad({"--config", config.string(), "serve"}, environment);
    EXPECT_NE(bad.wait(30s), 0) << bad.output();
    EXPECT_NE(bad.output().find(expected), std::string::npos) << expected << " in: " << bad.output();
  }
}

TEST_F(WorkloadsTest, AnUnreachableOrchestratorIs503AndDoesNotKeepTheKernelDown) {
  start("", {{"DOCKER_HOST", "unix://" + (dir / "no-engine.sock").string()}});
  EXPECT_TRUE(server->wait_for_output("could not reconcile workloads now", 5s)) << server->output();
  auto refused = call("POST", "/api/v1/workloads", token("olga"));
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_EQ(code_of(refused), "orchestrator_unavailable");
  EXPECT_FALSE(header_of(refused, "retry-after").empty());
  EXPECT_EQ(body_of(refused)["workload"]["state"], "failed") << "recorded, and held for the cool-down";
}

TEST_F(WorkloadsTest, ConcurrentRequestsFromOneUserStartOneContainer) {
  start();
  constexpr int requests = 8;
  std::vector<std::string> answers(requests);
  std::vector<std::thread> threads;
  for (int i = 0; i < requests; ++i)
    threads.emplace_back([&, i] { answers[i] = call("POST", "/api/v1/workloads", token("carol")); });
  for (auto& thread : threads) thread.join();
  int created = 0;
  std::set<std::string> ids;
  for (const auto& answer : answers) {
    auto status = status_of(answer);
    ASSERT_TRUE(status == 200 || status == 201) << answer;
    created += status == 201;
    ids.insert(body_of(answer)["id"].get<std::string>());
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(lines(docker_ids("", true)), 1u) << "exactly one container for carol";
}

TEST_F(WorkloadsTest, HardeningIsWhatTheEngineApplied) {
  // PondPilot's DATABASE_URL reaches the workload (pass_env's default); the kernel's own
  // SYNTHORG_* variables never do.
  start("memory_limit: 256m, cpu_limit: 0.5, pids_limit: 64",
        {{"DATABASE_URL", "postgresql://reader@db.internal:5432/analytics"}});
  auto workload = create("dave");
  auto applied = json::parse(shell("docker inspect " + workload["container_id"].get<std::string>()))[0];
  auto environment = applied["Config"]["Env"].dump();
  EXPECT_NE(environment.find("DATABASE_URL=postgresql://reader@db.internal:5432/analytics"), std::string::npos)
      << environment;
  EXPECT_EQ(environment.find("SYNTHORG_JWT_SECRET"), std::string::npos) << environment;
  const auto& host = applied["HostConfig"];
  EXPECT_EQ(host["Memory"], 256LL << 20);
  EXPECT_EQ(host["NanoCpus"], 500'000'000LL);
  EXPECT_EQ(host["PidsLimit"], 64);
  EXPECT_EQ(host["ReadonlyRootfs"], true);
  EXPECT_EQ(host["CapDrop"], json::array({"ALL"}));
  EXPECT_NE(host["SecurityOpt"].dump().find("no-new-privileges"), std::string::npos) << host["SecurityOpt"];
  auto tmp = host["Tmpfs"].value("/tmp", "");
  for (const char* option : {"noexec", "nosuid", "nodev"}) EXPECT_NE(tmp.find(option), std::string::npos) << tmp;
  EXPECT_EQ(applied["Config"]["User"], "65534:65534");
  // And it serves: busybox httpd as nobody, on the port published on loopback.
  auto endpoint = workload["endpoint"];
  Client client(endpoint["port"].get<int>());
  client.send("GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(client.response()), 200);
}

TEST_F(WorkloadsTest, IdleWorkloadsAreReaped) {
  // CONTAINER_IDLE_TIMEOUT (milliseconds, PondPilot's name) wins over idle_timeout.
  start("idle_timeout: 1h, reap_interval: 500ms", {{"CONTAINER_IDLE_TIMEOUT", "2000"}});
  auto workload = create("erin");
  EXPECT_EQ(running(), 1u);
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (running() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(running(), 0u) << server->output();
  auto record = body_of(call("GET", "/api/v1/workloads/" + workload["id"].get<std::string>(), token("erin")));
  EXPECT_EQ(record["state"], "stopped");
  EXPECT_EQ(record["reason"], "idle_timeout");
  EXPECT_TRUE(server->wait_for_output("reason=idle_timeout", 2s));
  EXPECT_EQ(containers(), json({{"active", 0}, {"total_spawned", 1}, {"total_stopped", 1}}));
}

TEST_F(WorkloadsTest, ProxiedRequestsKeepAWorkloadFromTheReaper) {
  start("idle_timeout: 2s, reap_interval: 300ms");
  auto workload = create("lena");
  auto proxy = "/api/v1/workloads/" + workload["id"].get<std::string>() + "/proxy/";
  // 5 s of use through the proxy alone (no touch), more than twice the idle timeout.
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    ASSERT_EQ(status_of(call("GET", proxy, token("lena"))), 200);
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(running(), 1u) << server->output();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (running() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(running(), 0u) << "reaped once unused";
}

TEST_F(WorkloadsTest, MaxPerHostRefusesWith503) {
  start("max_per_host: 1");
  create("frank");
  auto refused = call("POST", "/api/v1/workloads", token("grace"));
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_EQ(code_of(refused), "max_per_host");
  EXPECT_NE(body_of(refused).value("detail", "").find("limit of 1"), std::string::npos) << refused;
  EXPECT_FALSE(header_of(refused, "retry-after").empty());
  EXPECT_EQ(running(), 1u);
  EXPECT_EQ(status_of(call("POST", "/api/v1/workloads", token("frank"))), 200) << "the one there is still served";
}

TEST_F(WorkloadsTest, AFailingImageIsReportedRecordedAndNotRetriedAtOnce) {
  image = "synthorg-test/no-such-image:latest";
  start("failure_cooldown: 30s");
  auto first = call("POST", "/api/v1/workloads", token("heidi"));
  ASSERT_EQ(status_of(first), 502) << first;
  EXPECT_EQ(code_of(first), "image_missing");
  EXPECT_NE(body_of(first).value("detail", "").find("no-such-image"), std::string::npos) << first;
  auto record = body_of(first)["workload"];
  EXPECT_EQ(record["state"], "failed");
  EXPECT_EQ(record["reason"], "image_missing");
  EXPECT_FALSE(header_of(first, "retry-after").empty());

  for (int i = 0; i < 5; ++i) {
    auto again = call("POST", "/api/v1/workloads", token("heidi"));
    EXPECT_EQ(status_of(again), 502);
    EXPECT_EQ(body_of(again)["workload"]["id"], record["id"]) << "the recorded failure, not a new attempt";
  }
  EXPECT_EQ(occurrences(server->output(), "msg=\"Container spawn failed\""), 1u) << server->output();
  auto listed = body_of(call("GET", "/api/v1/workloads", token("heidi")))["workloads"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["state"], "failed");
  EXPECT_TRUE(docker_ids("", true).empty()) << "nothing left behind";

  // Deleting the failed record ends its cool-down: the next request tries again.
  EXPECT_EQ(status_of(call("DELETE", "/api/v1/workloads/" + record["id"].get<std::string>(), token("heidi"))), 200);
  auto retried = call("POST", "/api/v1/workloads", token("heidi"));
  EXPECT_EQ(status_of(retried), 502);
  EXPECT_NE(body_of(retried)["workload"]["id"], record["id"]);
  EXPECT_EQ(occurrences(server->output(), "msg=\"Container spawn failed\""), 2u);
}

TEST_F(WorkloadsTest, ABurstBeyondTheRateLimitGets429) {
  start("", {{"SYNTHORG_WORKLOADS_BURST_SIZE", "5"}, {"SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE", "1"}});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of(call("GET", "/api/v1/workloads", token("ivan"))), 200) << i;
  auto limited = call("GET", "/api/v1/workloads", token("ivan"));
  EXPECT_EQ(status_of(limited), 429) << limited;
  EXPECT_EQ(code_of(limited), "rate_limited");
  auto retry_after = header_of(limited, "retry-after");
  ASSERT_FALSE(retry_after.empty());
  EXPECT_GE(std::stoi(retry_after), 1);
  EXPECT_EQ(status_of(call("POST", "/api/v1/workloads", token("ivan"))), 429) << "every workload route";
  EXPECT_TRUE(server->wait_for_output("level=warn logger=workloads msg=\"Rate limit exceeded\" user_id=ivan", 2s))
      << server->output();
  EXPECT_EQ(status_of(call("GET", "/api/v1/workloads", token("judy"))), 200) << "per user";
}

TEST_F(WorkloadsTest, AKernelKilledWithSigkillReconcilesOnTheNextStart) {
  start();
  auto kept = create("karl");
  auto gone = create("lena");
  server->signal(SIGKILL);
  server->wait(10s);
  server.reset();
  // While it is down: one container vanishes, and a labelled orphan appears.
  shell("docker rm -f " + gone["container_id"].get<std::string>());
  auto orphan = shell("docker run -d --label synthorg.managed=true --label synthorg.component=workloads "
                      "--label synthorg.instance=" + instance + " --label synthorg.workload=not-a-record " +
                      test_image + " /bin/busybox sleep 300");
  ASSERT_FALSE(orphan.empty());
  EXPECT_EQ(running(), 2u);

  start();
  EXPECT_TRUE(server->wait_for_output("adopted=1 orphans_removed=1 vanished=1", 5s)) << server->output();
  auto ids = docker_ids("", true);
  EXPECT_EQ(ids, kept["container_id"].get<std::string>()) << "the adopted one only: orphan removed, nothing new";
  auto again = create("karl", 200);
  EXPECT_EQ(again["id"], kept["id"]);
  EXPECT_EQ(again["container_id"], kept["container_id"]) << "adopted, not started twice";
  auto vanished = body_of(call("GET", "/api/v1/workloads/" + gone["id"].get<std::string>(), token("lena")));
  EXPECT_EQ(vanished["state"], "stopped");
  EXPECT_EQ(vanished["reason"], "vanished");
  EXPECT_EQ(containers()["active"], 1);
  auto fresh = create("lena");  // lena gets a new one
  EXPECT_NE(fresh["id"], gone["id"]);
  EXPECT_EQ(running(), 2u);
}

}  // namespace
}  // namespace synthorg::testing
