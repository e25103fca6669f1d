// orchestrator-fly: the mapping on its own, then the plugin (loaded from its file, as the kernel
// loads it) against the Fly Machines contract server (tests/contract/fly_server.py), which
// checks every request against ../shared/contracts/fly-machines-openapi.json and runs machines
// as local processes. On bad input above all: capacity, names taken, wrong tokens, sizes Fly
// does not have, bind mounts, machines that are not ours, long lists. What every orchestrator
// must do is the conformance kit's job (conformance.orchestrator-fly runs it).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "fly_api.hpp"
#include "machine_mapping.hpp"
#include "orchestrator_testing.hpp"
#include "plugin_host.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "test_support.hpp"

namespace synthorg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using synthorg::testing::ContractServer;
using synthorg::testing::ContractServerTest;
using synthorg::testing::orchestrator_error_of;
using synthorg::testing::PluginHost;

const std::string plugin_path = std::string(SYNTHORG_PLUGIN_BUILD_DIR) + "/orchestrator-fly.so";
const std::string server_script = std::string(SYNTHORG_SOURCE_DIR) + "/tests/contract/fly_server.py";
const std::string contract = std::string(SYNTHORG_CONTRACTS_DIR) + "/fly-machines-openapi.json";
constexpr const char* default_token = "fly-test-token-0123456789";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

using synthorg::testing::ScopedEnv;

// --- The mapping, without a server ---------------------------------------------------------------

TEST(FlyMapping, TokenSchemeFollowsFlyGo) {
  using orchestrator_fly::authorization_header;
  EXPECT_EQ(authorization_header("plain-token"), "Bearer plain-token");
  EXPECT_EQ(authorization_header("fm2_abc"), "FlyV1 fm2_abc");
  EXPECT_EQ(authorization_header("fm1r_abc"), "FlyV1 fm1r_abc");
  EXPECT_EQ(authorization_header("fm2_abc,fm2_def"), "FlyV1 fm2_abc,fm2_def");
  EXPECT_EQ(authorization_header("xx,fm1r_def"), "FlyV1 xx,fm1r_def") << "one macaroon part is enough, as in fly-go";
  EXPECT_EQ(authorization_header("FlyV1 fm2_abc,fm2_def"), "FlyV1 fm2_abc,fm2_def") << "already prefixed: unchanged";
  EXPECT_EQ(authorization_header("fm3_abc"), "Bearer fm3_abc");
  EXPECT_EQ(authorization_header("fm2abc"), "Bearer fm2abc");
}

TEST(FlyMapping, MemoryIsRoundedUpToFlysSizes) {
  using orchestrator_fly::guest_memory_mb;
  constexpr std::int64_t MiB = 1 << 20;
  EXPECT_EQ(guest_memory_mb(0, 1, "shared"), 256) << "no limit: the smallest shared guest";
  EXPECT_EQ(guest_memory_mb(1, 1, "shared"), 256);
  EXPECT_EQ(guest_memory_mb(64 * MiB, 1, "shared"), 256);
  EXPECT_EQ(guest_memory_mb(256 * MiB, 1, "shared"), 256);
  EXPECT_EQ(guest_memory_mb(256 * MiB + 1, 1, "shared"), 512) << "never less than asked for";
  EXPECT_EQ(guest_memory_mb(1000 * MiB, 1, "shared"), 1024);
  EXPECT_EQ(guest_memory_mb(256 * MiB, 4, "shared"), 1024) << "shared-cpu-4x starts at 1 GiB";
  EXPECT_EQ(guest_memory_mb(0, 2, "performance"), 4096) << "performance-2x starts at 4 GiB";
  EXPECT_EQ(guest_memory_mb(5000 * MiB, 2, "performance"), 5120);
  using orchestrator_fly::guest_cpus;
  EXPECT_EQ(guest_cpus(0), 1);
  EXPECT_EQ(guest_cpus(0.5), 1);
  EXPECT_EQ(guest_cpus(2), 2);
  EXPECT_EQ(guest_cpus(2.5), 4) << "Fly sizes are 1, 2, 4, 8, 16";
  EXPECT_EQ(guest_cpus(9), 16);
}

TEST(FlyMapping, EveryFieldOfTheSpecReachesTheCreateRequest) {
  WorkloadSpec spec;
  spec.name = "My_Job.1";
  spec.image = "registry.fly.io/app:1";
  spec.command = {"serve", "--port", "8080"};
  spec.env = {{"A", "1"}};
  spec.labels = {{"synthorg.user", "u1"}};
  spec.memory_bytes = 300LL << 20;
  spec.cpus = 0.5;
  spec.ports = {{8080, "tcp"}, {5353, "udp"}};
  spec.mounts = {{"vol_123", "/data", false}};
  spec.gpu = {1, "nvidia"};
  orchestrator_fly::MappingOptions options;
  options.region = "ams";
  options.gpu_kind = "a10";
  auto request = orchestrator_fly::create_request(spec, options);
  const auto& config = request["config"];
  EXPECT_EQ(request["name"], "my-job-1");
  EXPECT_EQ(request["region"], "ams");
  EXPECT_EQ(config["image"], "registry.fly.io/app:1");
  EXPECT_EQ(config["init"]["cmd"], json({"serve", "--port", "8080"}));
  EXPECT_EQ(config["env"], json({{"A", "1"}}));
  EXPECT_EQ(config["metadata"], json({{"synthorg.user", "u1"}, {"synthorg.managed", "true"}}));
  EXPECT_EQ(config["guest"], json({{"cpu_kind", "shared"}, {"cpus", 1}, {"memory_mb", 512}, {"gpus", 1}, {"gpu_kind", "a10"}}));
  EXPECT_EQ(config["restart"], json({{"policy", "no"}}));
  EXPECT_EQ(config["auto_destroy"], false);
  EXPECT_EQ(config["services"][0], json({{"protocol", "tcp"}, {"internal_port", 8080}, {"autostart", false}, {"autostop", "off"}}));
  EXPECT_EQ(config["services"][1]["protocol"], "udp");
  EXPECT_EQ(config["mounts"], json({{{"volume", "vol_123"}, {"path", "/data"}}}));
  EXPECT_FALSE(config.contains("processes"));

  // A user moves the command to the machine's one process, which has a user field.
  spec.user = "65534:65534";
  spec.gpu = {};
  auto as_user = orchestrator_fly::create_request(spec, options)["config"];
  EXPECT_FALSE(as_user.contains("init"));
  EXPECT_EQ(as_user["processes"], json({{{"user", "65534:65534"}, {"cmd", {"serve", "--port", "8080"}}}}));

  WorkloadSpec unnamed;
  unnamed.image = "x";
  auto a = orchestrator_fly::create_request(unnamed, {})["name"].get<std::string>();
  auto b = orchestrator_fly::create_request(unnamed, {})["name"].get<std::string>();
  EXPECT_TRUE(a.starts_with("synthorg-")) << a;
  EXPECT_NE(a, b) << "names derived for unnamed specs must differ";
}

TEST(FlyMapping, WhatAMachineCannotBeIsRefusedNamingWhy) {
  auto refused = [](const std::function<void(WorkloadSpec&)>& change, std::string_view expected,
                    orchestrator_fly::MappingOptions options = {}) {
    WorkloadSpec spec;
    spec.image = "x";
    change(spec);
    auto error = orchestrator_error_of([&] { orchestrator_fly::create_request(spec, options); });
    EXPECT_EQ(error.code(), OrchestratorErrc::invalid_spec) << error.what();
    EXPECT_TRUE(contains(error.what(), expected)) << error.what();
  };
  refused([](auto& s) { s.mounts = {{"/srv/data", "/data", true}}; }, "can mount only a Fly volume");
  refused([](auto& s) { s.mounts = {{"vol_1", "/data", true}}; }, "read-write");
  refused([](auto& s) { s.mounts = {{"vol_1", "/a", false}, {"vol_2", "/b", false}}; }, "one volume");
  refused([](auto& s) { s.network = "backend"; }, "private network");
  refused([](auto& s) { s.gpu = {-1, ""}; }, "explicit count");
  refused([](auto& s) { s.gpu = {1, ""}; }, "gpu_kind");
  refused([](auto& s) { s.gpu = {1, "amd"}; }, "NVIDIA", {.gpu_kind = "a10"});
  refused([](auto& s) { s.labels = {{"fly_process_group", "x"}}; }, "reserves");
  refused([](auto& s) { s.cpus = 17; }, "16 CPUs");
  refused([](auto& s) { s.memory_bytes = -1; }, "memory_bytes");  // the shared checks run first
}

TEST(FlyMapping, ExitCodesComeFromTheNewestExitEvent) {
  json machine = {
      {"id", "m1"},
      {"state", "stopped"},
      {"config", {{"image", "x"}, {"metadata", {{"synthorg.managed", "true"}, {"fly_platform_version", "v2"}}},
                  {"guest", {{"cpus", 2}, {"memory_mb", 512}}}}},
      {"events",
       {{{"type", "exit"}, {"timestamp", 3000}, {"request", {{"exit_event", {{"exit_code", 7}}}}}},
        {{"type", "start"}, {"timestamp", 2000}},
        {{"type", "exit"}, {"timestamp", 1000}, {"request", {{"exit_event", {{"exit_code", 1}}}}}}}}};
  auto status = orchestrator_fly::status_of(machine);
  EXPECT_EQ(status.state, WorkloadState::exited);
  EXPECT_EQ(status.exit_code, 7);
  EXPECT_EQ(status.memory_bytes, 512LL << 20);
  EXPECT_EQ(status.cpus, 2);
  EXPECT_EQ(status.labels, (std::map<std::string, std::string>{{"synthorg.managed", "true"}})) << "fly_* keys are Fly's";
  EXPECT_EQ(status.started_at, "1970-01-01T00:00:02Z");

  // flyd omits a zero exit code; older events nest it under MonitorEvent; a signal alone is 128+n.
  machine["events"] = {{{"type", "exit"}, {"timestamp", 5}, {"request", {{"exit_event", {{"requested_stop", true}}}}}}};
  EXPECT_EQ(orchestrator_fly::status_of(machine).exit_code, 0);
  machine["events"] = {{{"type", "exit"}, {"timestamp", 5}, {"request", {{"MonitorEvent", {{"exit_event", {{"exit_code", 4}}}}}}}}};
  EXPECT_EQ(orchestrator_fly::status_of(machine).exit_code, 4);
  machine["events"] = {{{"type", "exit"}, {"timestamp", 5}, {"request", {{"exit_event", {{"signal", 9}, {"oom_killed", true}}}}}}};
  auto killed = orchestrator_fly::status_of(machine);
  EXPECT_EQ(killed.exit_code, 137);
  EXPECT_TRUE(contains(killed.message, "out of memory")) << killed.message;

  machine["state"] = "started";
  EXPECT_EQ(orchestrator_fly::status_of(machine).exit_code, std::nullopt) << "a running machine has no exit code";
  EXPECT_EQ(orchestrator_fly::state_of("created"), WorkloadState::pending);
  EXPECT_EQ(orchestrator_fly::state_of("starting"), WorkloadState::pending);
  EXPECT_EQ(orchestrator_fly::state_of("failed"), WorkloadState::exited);
  EXPECT_EQ(orchestrator_fly::state_of("destroyed"), WorkloadState::exited);
  EXPECT_EQ(orchestrator_fly::state_of("who-knows"), WorkloadState::unknown);
}

TEST(FlyMapping, ErrorsMapToTheContractsCodes) {
  using orchestrator_fly::error_for;
  auto code = [](int status, const json& body) { return error_for(status, body.dump(), "creating", "app").code(); };
  EXPECT_EQ(code(412, {{"error", "no room"}, {"status", "insufficient_capacity"}}), OrchestratorErrc::capacity);
  EXPECT_EQ(code(422, {{"error", "no room"}, {"status", "insufficient_capacity"}}), OrchestratorErrc::capacity);
  EXPECT_EQ(code(409, {{"error", "host full"}, {"status", "volume_placement_capacity"}}), OrchestratorErrc::capacity);
  EXPECT_EQ(code(409, {{"error", "could not reserve resource for machine: insufficient memory available to fulfill request"}}),
            OrchestratorErrc::capacity);
  EXPECT_EQ(code(409, {{"error", "taken"}, {"status", "name_taken"}}), OrchestratorErrc::conflict);
  EXPECT_EQ(code(409, {{"error", "version mismatch"}}), OrchestratorErrc::conflict);
  EXPECT_EQ(code(404, {{"error", "machine not found"}}), OrchestratorErrc::not_found);
  EXPECT_EQ(code(401, {{"error", "unauthorized"}}), OrchestratorErrc::unavailable);
  EXPECT_EQ(code(403, {{"error", "forbidden"}}), OrchestratorErrc::unavailable);
  EXPECT_EQ(code(400, {{"error", "invalid guest"}}), OrchestratorErrc::invalid_spec);
  EXPECT_EQ(code(422, {{"error", "failed to get manifest x: MANIFEST_UNKNOWN"}}), OrchestratorErrc::image_missing);
  EXPECT_EQ(code(429, {{"error", "slow down"}}), OrchestratorErrc::unavailable);
  EXPECT_EQ(code(502, {{"error", "bad gateway"}}), OrchestratorErrc::unavailable);
  EXPECT_EQ(code(418, {{"error", "teapot"}}), OrchestratorErrc::failed);
  auto invalid = error_for(422, R"({"error":"invalid config.guest.memory_mb 300"})", "creating", "app");
  EXPECT_TRUE(contains(invalid.what(), "invalid config.guest.memory_mb 300")) << "the API's words are kept";
  auto unauthorized = error_for(401, "{}", "listing", "my-app");
  EXPECT_TRUE(contains(unauthorized.what(), "FLY_API_TOKEN") && contains(unauthorized.what(), "my-app"))
      << unauthorized.what();
}

// --- Against the contract server -----------------------------------------------------------------

// fly_server.py on an ephemeral port with its own CA, stopped with the object.
class FlyServer : public ContractServer {
 public:
  explicit FlyServer(const std::string& token = default_token)
      : ContractServer(server_script, {"--token", token, "--spec", contract}, "the Fly contract server") {}

  std::string app() const { return info().at("app"); }
  json config(json extra = json::object()) const {
    json config = {{"api_url", url()}, {"ca_file", ca_file()}, {"app", app()}};
    config.update(extra);
    return config;
  }
};

// GET / over TCP to host:port; the status line, or "" when nothing answered.
std::string http_status_line(const Endpoint& endpoint) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(endpoint.port);
  std::string line;
  if (::inet_pton(AF_INET, endpoint.host.c_str(), &address.sin_addr) == 1 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    std::string request = "GET / HTTP/1.0\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buffer[512];
      auto n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) line.assign(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return line.substr(0, line.find("\r\n"));
}

class FlyTest : public ContractServerTest<FlyServer> {
 protected:
  FlyTest() : ContractServerTest(contract, "Fly") {}

  std::shared_ptr<Orchestrator> start(json extra = json::object()) {
    return start_plugin(plugin_path, server_->config(std::move(extra)));
  }

  // The plugin reads the token (and the overrides fly-go honours) from the environment.
  ScopedEnv token_{"FLY_API_TOKEN", default_token};
  ScopedEnv base_url_{"FLY_FLAPS_BASE_URL", nullptr};
  ScopedEnv app_{"FLY_APP_NAME", nullptr};
};

TEST_F(FlyTest, InsufficientCapacityIsCapacity) {
  auto orchestrator = start();
  server_->fail_next({{"method", "POST"},
                      {"path", "/machines$"},
                      {"status", 412},
                      {"body", {{"error", "insufficient resources to create machine in region iad"},
                                {"status", "insufficient_capacity"}}}});
  auto error = orchestrator_error_of([&] { orchestrator->spawn(spec("sleep 60")); });
  EXPECT_EQ(error.code(), OrchestratorErrc::capacity) << error.what();
  EXPECT_TRUE(contains(error.what(), "insufficient resources")) << "the API's words are kept: " << error.what();
  EXPECT_TRUE(orchestrator->list({{"synthorg.test-run", run_}}).empty());
}

TEST_F(FlyTest, NameTakenIsConflict) {
  auto orchestrator = start();
  auto first = spec("exec /bin/busybox sleep 60");
  first.name = "only-one-" + run_;
  auto made = orchestrator->spawn(first);
  EXPECT_EQ(made.name, first.name);
  auto error = orchestrator_error_of([&] { orchestrator->spawn(first); });
  EXPECT_EQ(error.code(), OrchestratorErrc::conflict) << error.what();
  EXPECT_EQ(orchestrator->list({{"synthorg.test-run", run_}}).size(), 1u);
}

TEST_F(FlyTest, UnauthorizedIsUnavailableWithATokenHintAndNoToken) {
  const char* wrong = "fm2_lJPECAAAAAAAAwYAHVyb3N0ZWQ,fm2_SECRETSECRETSECRET";
  ScopedEnv token("FLY_API_TOKEN", wrong);
  auto orchestrator = start();  // a refused token is not fatal at start: readiness reports it
  auto error = orchestrator_error_of([&] { orchestrator->list({}); });
  EXPECT_EQ(error.code(), OrchestratorErrc::unavailable) << error.what();
  EXPECT_TRUE(contains(error.what(), "FLY_API_TOKEN")) << error.what();
  EXPECT_TRUE(contains(error.what(), server_->app())) << "names the app the token needs: " << error.what();
  for (std::string_view secret : {"SECRETSECRET", "lJPECAAAAAAAAwYAHVyb3N0ZWQ"})
    EXPECT_FALSE(contains(error.what(), secret)) << "the token leaked: " << error.what();
  auto health = host_.get<HealthCheck>()->check();
  EXPECT_FALSE(health.up);
  EXPECT_TRUE(contains(health.detail, "FLY_API_TOKEN")) << health.detail;
  EXPECT_FALSE(contains(health.detail + health.data.dump(), "SECRETSECRET")) << health.detail << health.data.dump();
  auto spawn_error = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(spawn_error.code(), OrchestratorErrc::unavailable) << spawn_error.what();
}

TEST_F(FlyTest, TheTokenGoesWithTheSchemeFlyGoUses) {
  struct Case {
    std::string token, scheme;
  };
  for (const auto& [token, scheme] : std::vector<Case>{{"plain-token-abcdef", "Bearer"},
                                                       {"fm2_first,fm2_second", "FlyV1"},
                                                       {"fm1r_readonly", "FlyV1"},
                                                       {"FlyV1 fm2_prefixed,fm2_already", "FlyV1"}}) {
    SCOPED_TRACE(token);
    // The server accepts exactly what fly-go would send for its token; anything else is a
    // violation (same token, other scheme) or a 401.
    FlyServer server(token);
    ScopedEnv env("FLY_API_TOKEN", token.c_str());
    PluginHost host;
    host.start(plugin_path, server.config());
    auto orchestrator = host.get<Orchestrator>();
    EXPECT_NO_THROW(orchestrator->list({}));
    EXPECT_TRUE(host.get<HealthCheck>()->check().up);
    auto seen = server.requests();
    ASSERT_FALSE(seen.empty());
    for (const auto& request : seen) EXPECT_EQ(request["scheme"], scheme) << request.dump();
    EXPECT_TRUE(server.violations().empty()) << server.violations().dump(2);
  }
}

TEST_F(FlyTest, MemoryAndCpusAreRoundedUpAndReportedAsFlyHasThem) {
  auto orchestrator = start();
  auto small = spec("exec /bin/busybox sleep 60");
  small.memory_bytes = 300LL << 20;
  small.cpus = 0.5;
  auto made = orchestrator->spawn(small);
  auto inspected = orchestrator->inspect(made.id);
  EXPECT_EQ(inspected.memory_bytes, 512LL << 20) << "300 MiB is rounded up to Fly's next 256 MiB step";
  EXPECT_EQ(inspected.cpus, 1);
  auto created = requests("POST", "/machines");
  ASSERT_FALSE(created.empty());
  EXPECT_EQ(created.back()["body"]["config"]["guest"], json({{"cpu_kind", "shared"}, {"cpus", 1}, {"memory_mb", 512}}));

  auto unlimited = spec("exec /bin/busybox sleep 60");
  EXPECT_EQ(orchestrator->inspect(orchestrator->spawn(unlimited).id).memory_bytes, 256LL << 20)
      << "no limit: Fly's smallest guest";
}

TEST_F(FlyTest, BindMountsAreRefusedBeforeAnyRequest) {
  auto orchestrator = start();
  auto request = spec("true");
  request.mounts = {{"/srv/models", "/models", true}};
  auto before = requests("POST", "/machines").size();
  auto error = orchestrator_error_of([&] { orchestrator->spawn(request); });
  EXPECT_EQ(error.code(), OrchestratorErrc::invalid_spec) << error.what();
  EXPECT_TRUE(contains(error.what(), "/srv/models") && contains(error.what(), "Fly volume")) << error.what();
  EXPECT_EQ(requests("POST", "/machines").size(), before) << "nothing may reach Fly for a refused spec";
}

TEST_F(FlyTest, MachinesSynthOrgDoesNotManageAreRefused) {
  auto orchestrator = start();
  auto theirs = server_->hook("POST", "/__contract/seed",
                              {{"name", "someone-elses"},
                               {"config", {{"image", "nginx"}, {"init", {{"cmd", {"sleep", "60"}}}},
                                           {"metadata", {{"owner", "them"}}}}}});
  std::string id = theirs["id"];
  for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"inspect", [&] { orchestrator->inspect(id); }},
           {"stop", [&] { orchestrator->stop(id, 1s); }},
           {"remove", [&] { orchestrator->remove(id); }},
           {"wait", [&] { orchestrator->wait(id, 100ms); }},
           {"endpoint", [&] { orchestrator->endpoint(id, 80); }}}) {
    auto error = orchestrator_error_of(call);
    EXPECT_EQ(error.code(), OrchestratorErrc::not_found) << what << ": " << error.what();
    EXPECT_TRUE(contains(error.what(), "not managed by SynthOrg")) << what << ": " << error.what();
  }
  for (const auto& status : orchestrator->list({})) EXPECT_NE(status.id, id) << "list() shows a machine not ours";
  EXPECT_TRUE(requests("DELETE", "/machines/" + id).empty()) << "remove() must not touch it";
  EXPECT_TRUE(requests("POST", "/machines/" + id + "/stop").empty()) << "stop() must not touch it";
}

TEST_F(FlyTest, ListFollowsTheCursorAcrossPages) {
  auto orchestrator = start({{"page_size", 2}});
  std::set<std::string> made;
  for (int i = 0; i < 5; ++i) made.insert(orchestrator->spawn(spec("exec /bin/busybox sleep 60")).id);
  std::set<std::string> listed;
  for (const auto& status : orchestrator->list({{"synthorg.test-run", run_}})) listed.insert(status.id);
  EXPECT_EQ(listed, made);
  auto pages = requests("GET", "/machines");
  ASSERT_GE(pages.size(), 3u) << "five machines, two a page";
  int with_cursor = 0;
  for (const auto& page : pages) {
    std::map<std::string, std::string> query;
    for (const auto& pair : page["query"]) query[pair[0]] = pair[1];
    EXPECT_EQ(query["limit"], "2");
    EXPECT_EQ(query["metadata.synthorg.managed"], "true") << "always filtered on the managed label";
    EXPECT_EQ(query["metadata.synthorg.test-run"], run_);
    with_cursor += query.count("cursor");
  }
  EXPECT_GE(with_cursor, 2) << "pages after the first are asked for with the fly-next-cursor value";
}

TEST_F(FlyTest, MissingTokenIsAClearStartupError) {
  ScopedEnv no_token("FLY_API_TOKEN", nullptr);
  try {
    host_.configure(plugin_path, server_->config());
    ADD_FAILURE() << "orchestrator-fly configured without FLY_API_TOKEN";
  } catch (const host::PluginFailed& error) {
    EXPECT_TRUE(contains(error.what(), "FLY_API_TOKEN is not set")) << error.what();
    EXPECT_TRUE(contains(error.what(), "fly tokens create")) << "says how to get one: " << error.what();
  }
  ScopedEnv token("FLY_API_TOKEN", default_token);
  try {
    host_.configure(plugin_path, {{"api_url", server_->url()}, {"ca_file", server_->ca_file()}});
    ADD_FAILURE() << "orchestrator-fly configured without an app";
  } catch (const host::PluginFailed& error) {
    EXPECT_TRUE(contains(error.what(), "FLY_APP_NAME")) << error.what();
  }
  // FLY_APP_NAME stands in for the app, and FLY_FLAPS_BASE_URL for api_url, as in fly-go.
  ScopedEnv app("FLY_APP_NAME", server_->app().c_str());
  ScopedEnv base("FLY_FLAPS_BASE_URL", server_->url().c_str());
  host_.start(plugin_path, {{"api_url", "https://api.machines.dev.invalid"}, {"ca_file", server_->ca_file()}});
  EXPECT_TRUE(host_.get<HealthCheck>()->check().up);
}

TEST_F(FlyTest, UnknownImagesAndServerErrors) {
  auto orchestrator = start();
  auto missing = spec("true");
  missing.image = "missing/nothing:1";
  auto error = orchestrator_error_of([&] { orchestrator->spawn(missing); });
  EXPECT_EQ(error.code(), OrchestratorErrc::image_missing) << error.what();

  server_->fail_next({{"method", "POST"}, {"path", "/machines$"}, {"status", 503}, {"body", {{"error", "flaps is down"}}}});
  auto unavailable = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(unavailable.code(), OrchestratorErrc::unavailable) << unavailable.what();

  // GETs are retried: one 502 is not an error.
  server_->fail_next({{"method", "GET"}, {"path", "/machines$"}, {"status", 502}, {"body", {{"error", "bad gateway"}}}});
  EXPECT_NO_THROW(orchestrator->list({}));
}

// What the kit's lifecycle test cannot reach for Fly (its logs step comes first): serving on
// the private address, stop, the exit code, remove.
TEST_F(FlyTest, ServeStopWaitRemove) {
  auto orchestrator = start();
  auto request = spec("exec /bin/busybox httpd -f -p \"$SYNTHORG_LISTEN_HOST:8080\" -h /tmp");
  request.ports = {{8080, "tcp"}};
  auto made = orchestrator->spawn(request);
  EXPECT_EQ(made.state, WorkloadState::running);
  auto endpoint = orchestrator->endpoint(made.id, 8080);
  EXPECT_TRUE(endpoint.host.starts_with("127.0.2.")) << "the machine's private_ip: " << endpoint.host;
  EXPECT_EQ(endpoint.port, 8080);
  std::string line;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; line.empty() && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(100ms))
    line = http_status_line(endpoint);
  EXPECT_TRUE(line.starts_with("HTTP/")) << "GET http://" << endpoint.host << ":8080/ answered '" << line << "'";

  auto logs =
      orchestrator_error_of([&] { orchestrator->logs(made.id, {}, [](LogStream, std::string_view) { return true; }); });
  EXPECT_EQ(logs.code(), OrchestratorErrc::failed);
  EXPECT_TRUE(contains(logs.what(), "fly logs")) << logs.what();

  orchestrator->stop(made.id, 1s);
  auto stop = requests("POST", "/machines/" + made.id + "/stop");
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0]["body"], json({{"signal", "SIGTERM"}, {"timeout", "1s"}}));
  auto waited = orchestrator->wait(made.id, 10s);
  EXPECT_TRUE(waited.exited);
  EXPECT_EQ(waited.exit_code, 143) << "SIGTERM";
  auto stopped = orchestrator->inspect(made.id);
  EXPECT_EQ(stopped.state, WorkloadState::exited);
  EXPECT_EQ(stopped.exit_code, 143);
  EXPECT_FALSE(stopped.finished_at.empty());
  EXPECT_NO_THROW(orchestrator->stop(made.id, 1s)) << "stopping an exited workload is a no-op";
  EXPECT_EQ(orchestrator_error_of([&] { orchestrator->endpoint(made.id, 8080); }).code(), OrchestratorErrc::failed);

  orchestrator->remove(made.id);
  auto removed = requests("DELETE", "/machines/" + made.id);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0]["query"], json::array({json::array({"force", "true"})}));
  EXPECT_EQ(orchestrator_error_of([&] { orchestrator->inspect(made.id); }).code(), OrchestratorErrc::not_found);
  EXPECT_NO_THROW(orchestrator->remove(made.id)) << "removing a removed workload is a no-op";
  EXPECT_TRUE(orchestrator->list({{"synthorg.test-run", run_}}).empty());
}

TEST_F(FlyTest, OneShotsKeepTheirExitCodes) {
  auto orchestrator = start();
  auto job = spec("sleep 2; exit 5");
  job.one_shot = true;
  auto made = orchestrator->spawn(job);
  auto waited = orchestrator->wait(made.id, 20s);
  EXPECT_TRUE(waited.exited);
  EXPECT_EQ(waited.exit_code, 5);
  for (const auto& request : requests("GET", "/wait")) {
    std::set<std::string> states;
    for (const auto& pair : request["query"]) {
      if (pair[0] == "state") {
        states.insert(pair[1]);
      } else if (pair[0] == "timeout") {
        EXPECT_LE(std::stoi(pair[1].get<std::string>()), 60) << "flaps waits 60 s at most";
      }
    }
    EXPECT_FALSE(states.empty()) << request.dump();
  }
  auto quick = spec("exit 0");
  quick.one_shot = true;
  auto done = orchestrator->spawn(quick);
  auto result = orchestrator->wait(done.id, 10s);
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.exit_code, 0) << "flyd omits a zero exit code";
}

}  // namespace
}  // namespace synthorg
