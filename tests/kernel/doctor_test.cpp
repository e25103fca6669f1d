// `synthorg doctor` as an operator meets it: every check's verdict and fix, exit code 3 when
// something is unhealthy, secrets judged but never printed, and a running server left alone.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#include <nlohmann/json.hpp>

#include "synthorg/crypto.hpp"
#include "test_support.hpp"

namespace synthorg::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A socket listening on a free loopback port, closed on destruction.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0)
      throw std::runtime_error("cannot listen on loopback");
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

int free_port() {
  Listener listener;
  return listener.port();
}

class DoctorTest : public ::testing::Test {
 protected:
  // A plugin directory with these first-party plugins (from the build tree) and fixtures.
  fs::path plugins(const std::vector<std::string>& first_party, const std::vector<std::string>& fixtures = {}) {
    auto directory = dir.plugins(fixtures);
    for (const auto& name : first_party)
      fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / (name + ".so"), directory / (name + ".so"));
    return directory;
  }
  // store-sqlite and http-api on `port`, data under the temporary directory.
  std::string sqlite_config(int port, const fs::path& db, const std::vector<std::string>& fixtures = {}) {
    return dir
        .write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" +
                                   plugins({"store-sqlite", "http-api"}, fixtures).string() +
                                   "]\nselect: {store: store-sqlite}\nplugins:\n  http-api:\n    config: {address: "
                                   "127.0.0.1, port: " + std::to_string(port) + "}\n  store-sqlite:\n    config: {path: " +
                                   db.string() + "}\nsettings:\n  backup:\n    dir: " + (dir / "backups").string() + "\n")
        .string();
  }
  // The parent's secrets must not decide these tests.
  std::map<std::string, std::string> env(std::map<std::string, std::string> extra = {}) {
    extra.try_emplace("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
    extra.try_emplace("SYNTHORG_JWT_SECRET", "");
    extra.try_emplace("SYNTHORG_DB_PATH", "");
    return extra;
  }
  static bool has(const Result& result, const std::string& text) { return result.output.find(text) != std::string::npos; }

  TempDir dir;
};

TEST_F(DoctorTest, TheGuidesVariablesWithNoCounterpartHereAreNamed) {
  int port = free_port();
  auto config = sqlite_config(port, dir / "data/s.db");
  auto quiet = run_synthorg({"-c", config, "doctor"}, env());
  EXPECT_TRUE(has(quiet, "SKIP  guide variables  none set that this server ignores")) << quiet.output;
  auto noted = run_synthorg({"-c", config, "doctor"}, env({{"SYNTHORG_MEMORY_DIR", "/data/memory"}, {"MEM0_TELEMETRY", "false"}}));
  EXPECT_EQ(noted.exit_code, 0) << noted.output;
  EXPECT_TRUE(has(noted, "OK    guide variables  set but not read by this server: SYNTHORG_MEMORY_DIR (Ignored: SynthOrg's "
                         "agent memory has no counterpart here.)"))
      << noted.output;
  EXPECT_TRUE(has(noted, "MEM0_TELEMETRY")) << noted.output;
  auto warned = run_synthorg({"-c", config, "doctor"},
                             env({{"CLAUDE_API_KEY", "sk-ant-not-a-real-key"}, {"SYNTHORG_NATS_URL", "nats://nats:4222"}}));
  EXPECT_TRUE(has(warned, "WARN  guide variables  set but not read by this server: SYNTHORG_NATS_URL")) << warned.output;
  EXPECT_TRUE(has(warned, "CLAUDE_API_KEY (Ignored: there is no AI integration here")) << warned.output;
  EXPECT_FALSE(has(warned, "sk-ant-not-a-real-key")) << "never the value";
  EXPECT_FALSE(has(warned, "nats://nats:4222"));
  // And the server starts with them all set (they are accepted, not errors).
  auto validated = run_synthorg({"-c", config, "config", "validate"},
                                env({{"SYNTHORG_MEMORY_DIR", "/x"}, {"SYNTHORG_WORKERS", "4"}, {"OPENAI_API_KEY", "sk-x"},
                                     {"SYNTHORG_MEMORY_BACKEND", "mem0"}, {"SYNTHORG_NATS_STREAM_PREFIX", "X"}}));
  EXPECT_EQ(validated.exit_code, 0) << validated.output;
}

TEST_F(DoctorTest, AHealthyInstallPassesAndSaysWhatItChecked) {
  int port = free_port();
  auto config = sqlite_config(port, dir / "data/s.db");
  auto fresh = run_synthorg({"-c", config, "doctor"}, env());
  EXPECT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_TRUE(has(fresh, "OK    config           " + config + " is valid; 2 plugin(s) would start: store-sqlite, http-api"))
      << fresh.output;
  EXPECT_TRUE(has(fresh, "OK    plugin files     2 plugin file(s) load")) << fresh.output;
  EXPECT_TRUE(has(fresh, "OK    settings key")) << fresh.output;
  EXPECT_TRUE(has(fresh, "SKIP  jwt secret")) << fresh.output;
  EXPECT_TRUE(has(fresh, "does not exist yet; store-sqlite creates it")) << fresh.output;
  EXPECT_TRUE(has(fresh, "OK    http port        127.0.0.1:" + std::to_string(port) + " is free")) << fresh.output;
  EXPECT_TRUE(has(fresh, "SKIP  orchestrator     no orchestrator plugin is enabled")) << fresh.output;
  EXPECT_TRUE(has(fresh, "healthy: nothing failed")) << fresh.output;
  EXPECT_FALSE(fs::exists(dir / "data")) << "the doctor creates nothing";

  // Once the database exists the doctor opens it through the Store plugin.
  ASSERT_EQ(run_synthorg({"-c", config, "serve", "--exit-after-start"}, env()).exit_code, 0);
  auto json_run = run_synthorg({"-c", config, "doctor", "--json"}, env());
  ASSERT_EQ(json_run.exit_code, 0) << json_run.output;
  auto report = nlohmann::json::parse(json_run.output.substr(json_run.output.find('{')));
  EXPECT_TRUE(report["healthy"].get<bool>());
  std::map<std::string, std::string> statuses;
  for (const auto& check : report["checks"]) statuses[check["name"]] = check["status"];
  EXPECT_EQ(statuses["database"], "OK") << report.dump(2);
  EXPECT_EQ(statuses["backup directory"], "OK") << report.dump(2);
  for (const auto& check : report["checks"]) {
    if (check["name"] == "database") {
      EXPECT_NE(check["detail"].get<std::string>().find("store-sqlite answers: sqlite 3."), std::string::npos);
    }
  }
}

TEST_F(DoctorTest, BadKeysFailWithTheirFixAndAreNeverPrinted) {
  auto config = sqlite_config(free_port(), dir / "data/s.db");
  const std::string bad_key = "c2VjcmV0LWJ1dC1ub3QtYS1mZXJuZXQta2V5";
  const std::string short_secret = "tiny-secret-QWERTY";
  auto result = run_synthorg({"-c", config, "doctor"},
                             env({{"SYNTHORG_SETTINGS_KEY", bad_key}, {"SYNTHORG_JWT_SECRET", short_secret}}));
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  settings key     SYNTHORG_SETTINGS_KEY: the Fernet key")) << result.output;
  EXPECT_TRUE(has(result, "fix: export SYNTHORG_SETTINGS_KEY=\"$(synthorg keygen fernet)\"")) << result.output;
  EXPECT_TRUE(has(result, "FAIL  jwt secret       SYNTHORG_JWT_SECRET is 18 characters long; it must be at least 32"))
      << result.output;
  EXPECT_TRUE(has(result, "unhealthy: 2 check(s) failed (exit 3)")) << result.output;
  EXPECT_FALSE(has(result, bad_key)) << result.output;
  EXPECT_FALSE(has(result, short_secret)) << result.output;

  auto unset = run_synthorg({"-c", config, "doctor"}, env({{"SYNTHORG_SETTINGS_KEY", ""}}));
  EXPECT_EQ(unset.exit_code, 0) << "a missing settings key is a warning: " << unset.output;
  EXPECT_TRUE(has(unset, "WARN  settings key     SYNTHORG_SETTINGS_KEY is not set")) << unset.output;
}

TEST_F(DoctorTest, ADataDirectoryThatCannotBeCreatedFailsAndSkipsTheDatabase) {
  auto blocker = dir.write("not-a-directory", "a file where a directory should be\n");
  auto result = run_synthorg({"-c", sqlite_config(free_port(), blocker / "data/s.db"), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  data directory   " + (blocker / "data").string() + " cannot be created: " +
                              blocker.string() + " is not a directory"))
      << result.output;
  EXPECT_TRUE(has(result, "fix: create it and give it to the user synthorg runs as")) << result.output;
  EXPECT_TRUE(has(result, "SKIP  database         the data directory is not usable")) << result.output;
}

TEST_F(DoctorTest, APortTakenByAnotherProgramFails) {
  Listener other;
  auto result = run_synthorg({"-c", sqlite_config(other.port(), dir / "data/s.db"), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  http port        127.0.0.1:" + std::to_string(other.port()) +
                              " is in use by another program"))
      << result.output;
  EXPECT_TRUE(has(result, "or set SYNTHORG_HTTP_PORT")) << result.output;
}

// `serve` would run without a dashboard (web is optional) if its port were taken: the doctor says so.
TEST_F(DoctorTest, TheDashboardsPortTakenByAnotherProgramFails) {
  Listener other;
  auto config = dir.write("company.yaml",
                          "company_name: Test\nkernel:\n  plugin_dirs: [" +
                              plugins({"store-sqlite", "http-api", "web"}, {}).string() +
                              "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                              std::to_string(free_port()) + "}\n  store-sqlite:\n    config: {path: " +
                              (dir / "data/s.db").string() + "}\n  web:\n    optional: true\n    config: {address: "
                              "127.0.0.1, port: " + std::to_string(other.port()) + "}\nsettings:\n  backup:\n    dir: " +
                              (dir / "backups").string() + "\n");
  auto result = run_synthorg({"-c", config.string(), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  web port         127.0.0.1:" + std::to_string(other.port()) +
                              " is in use by another program"))
      << result.output;
  EXPECT_TRUE(has(result, "or set SYNTHORG_WEB_PORT / plugins.web.config.port")) << result.output;
  EXPECT_TRUE(has(result, "SKIP  grpc port        the flight-gateway plugin is not enabled")) << result.output;
}

TEST_F(DoctorTest, BesideARunningServerItOnlyWarnsAboutThePort) {
  int port = free_port();
  auto config = sqlite_config(port, dir / "data/s.db");
  Process server({"-c", config, "serve"}, env());
  ASSERT_TRUE(server.wait_for_output("All plugins started", 20s)) << server.output();
  auto result = run_synthorg({"-c", config, "doctor"}, env());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(has(result, "WARN  http port        127.0.0.1:" + std::to_string(port) +
                              " is in use while this install's API answers /api/v1/healthz"))
      << result.output;
  EXPECT_TRUE(has(result, "OK    database         store-sqlite answers")) << "shared with the server: " << result.output;
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(20s), 0) << server.output();
}

TEST_F(DoctorTest, ABrokenConfigurationFailsAndTheRestIsSkipped) {
  auto bad = dir.write("bad.yaml", "company_name: x\nkernel:\n  threads: [1\n");
  auto result = run_synthorg({"-c", bad.string(), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  config           " + bad.string() + ":4:1: malformed YAML")) << result.output;
  EXPECT_TRUE(has(result, "SKIP  database         needs a valid configuration")) << result.output;
  EXPECT_TRUE(has(result, "OK    settings key")) << "keys are checked anyway: " << result.output;
}

TEST_F(DoctorTest, RefusedPluginFilesFail) {
  auto result = run_synthorg({"-c", sqlite_config(free_port(), dir / "data/s.db", {"bad-abi-major"}), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  plugin files     " + (dir.path() / "plugins" / "bad-abi-major.so").string())) << result.output;
  EXPECT_TRUE(has(result, "fix: rebuild each refused plugin against this SDK")) << result.output;
}

TEST_F(DoctorTest, AnUnreachableDatabaseFailsWithoutShowingItsPassword) {
  auto directory = plugins({"store-sqlite", "store-postgres"});
  auto config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + directory.string() +
                                              "]\nplugins:\n  store-postgres:\n    config: {connect_timeout: 2s}\n");
  auto result = run_synthorg({"-c", config.string(), "doctor"},
                             env({{"SYNTHORG_DATABASE_URL", "postgres://someone:pw-SECRET-42@127.0.0.1:1/nowhere"},
                                  {"SYNTHORG_POSTGRES_SSL_MODE", "disable"}}));
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "SKIP  data directory   the Store is not SQLite")) << result.output;
  EXPECT_TRUE(has(result, "FAIL  database")) << result.output;
  EXPECT_TRUE(has(result, "fix: check SYNTHORG_DATABASE_URL")) << result.output;
  EXPECT_FALSE(has(result, "pw-SECRET-42")) << result.output;
}

TEST_F(DoctorTest, TheAuthPluginWithoutItsSecretFails) {
  if (!fs::exists(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / "auth.so")) GTEST_SKIP() << "the auth plugin is not built";
  auto directory = plugins({"store-sqlite", "http-api", "auth"});
  auto config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + directory.string() +
                                              "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: 0}\n"
                                              "  store-sqlite:\n    config: {path: " + (dir / "s.db").string() +
                                              "}\n  auth: {}\n");
  auto result = run_synthorg({"-c", config.string(), "doctor"}, env());
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_TRUE(has(result, "FAIL  jwt secret       SYNTHORG_JWT_SECRET is not set, and the auth plugin refuses to start"))
      << result.output;
  EXPECT_TRUE(has(result, "fix: export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\"")) << result.output;
}

TEST(Probe, AnswersLikeAHealthCheck) {
  TempDir dir;
  int port = free_port();
  auto plugins = dir.path() / "plugins";
  fs::create_directories(plugins);
  fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / "http-api.so", plugins / "http-api.so");
  auto config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                              "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                              std::to_string(port) + "}\n");
  auto nobody = run_synthorg({"probe", "--port", std::to_string(port), "--timeout", "500ms"});
  EXPECT_EQ(nobody.exit_code, 1) << nobody.output;
  EXPECT_NE(nobody.output.find("connect: Connection refused"), std::string::npos) << nobody.output;

  Process server({"-c", config.string(), "serve"});
  ASSERT_TRUE(server.wait_for_output("All plugins started", 20s)) << server.output();
  auto ready = run_synthorg({"probe", "--port", std::to_string(port)});
  EXPECT_EQ(ready.exit_code, 0) << ready.output;
  EXPECT_NE(ready.output.find("200 http://127.0.0.1:" + std::to_string(port) + "/api/v1/readyz"), std::string::npos)
      << ready.output;
  auto from_env = run_synthorg({"probe", "--path", "/api/v1/healthz"}, {{"SYNTHORG_HTTP_PORT", std::to_string(port)}});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.output;
  auto missing = run_synthorg({"probe", "--port", std::to_string(port), "--path", "/no/such/route"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("404 from"), std::string::npos) << missing.output;
  EXPECT_EQ(run_synthorg({"probe", "--timeout", "soon"}).exit_code, 2);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(20s), 0) << server.output();
}

}  // namespace
}  // namespace synthorg::testing
