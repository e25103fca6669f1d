// The synthorg binary as an operator meets it: exit codes, signals, messages.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <regex>

#include <nlohmann/json.hpp>

#include "synthorg/crypto.hpp"
#include "http_client.hpp"
#include "serve_testing.hpp"
#include "test_support.hpp"

namespace synthorg::testing {
namespace {

using namespace std::chrono_literals;

std::string config_for(const TempDir& dir, const std::vector<std::string>& fixtures, const std::string& plugins) {
  auto plugin_dir = dir.plugins(fixtures);
  return dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugin_dir.string() + "]\nplugins:\n" + plugins).string();
}

TEST(Cli, VersionAndUsage) {
  auto version = run_synthorg({"version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("plugin ABI 1.0"), std::string::npos) << version.output;
  EXPECT_EQ(run_synthorg({}).exit_code, 2) << "no command is a usage error";
  EXPECT_EQ(run_synthorg({"serve", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(run_synthorg({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(run_synthorg({"version"}, {{"SYNTHORG_LOG_LEVEL", "loud"}}).exit_code, 2);
}

// Both shipped configurations listen on 3001, 3000 and 8081 unless told otherwise; ctest runs
// these side by side, so each asks for free ports instead. Workloads stay off the shared Docker
// engine, where another test's kernel may be reconciling.
const std::map<std::string, std::string> any_free_ports{{"SYNTHORG_HTTP_PORT", "0"},
                                                        {"SYNTHORG_WEB_PORT", "0"},
                                                        {"SYNTHORG_GRPC_PORT", "0"},
                                                        {"SYNTHORG_ORCHESTRATOR", "orchestrator-process"}};

TEST(Cli, ServesTheEmbeddedDefaultAndStopsCleanly) {
  auto result = run_synthorg({"serve", "--exit-after-start"}, any_free_ports);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("config=\"<embedded default>\""), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("msg=\"All plugins started\""), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("msg=\"Shutdown complete\""), std::string::npos) << result.output;
}

// `make run` as a new user meets it: `synthorg serve` with nothing set, in an empty directory,
// runs the whole product: the dashboard says where it is and that setup waits, sign-in works with
// a secret made on first start (0600, never printed) that the next start reuses, and a user gets
// their own workload behind the Flight SQL port.
TEST(Cli, TheEmbeddedDefaultRunsTheWholeProductWithNothingSet) {
  TempDir dir;
  int http = free_port(), web = free_port(), grpc = free_port();
  std::map<std::string, std::string> env{{"SYNTHORG_HTTP_PORT", std::to_string(http)},
                                         {"SYNTHORG_WEB_PORT", std::to_string(web)},
                                         {"SYNTHORG_GRPC_PORT", std::to_string(grpc)},
                                         {"SYNTHORG_ORCHESTRATOR", "orchestrator-process"},
                                         {"SYNTHORG_HTTP_ACCESS_LOG", "false"}};
  auto protos = std::filesystem::path(SYNTHORG_CONTRACTS_DIR) / "arrow-flight";
  bool have_protos = std::filesystem::exists(protos / "Flight.proto");
  if (have_protos) env["FLIGHT_PROTO_DIR"] = protos.string();
  const std::vector<std::string> in_dir{"env", "-u", "SYNTHORG_JWT_SECRET", "-u", "SYNTHORG_CONFIG_PATH",
                                        "--chdir=" + dir.path().string()};
  auto server = std::make_unique<Process>(std::vector<std::string>{"serve"}, env, in_dir);
  ASSERT_TRUE(server->wait_for_output("All plugins started", 30s)) << server->output();
  auto output = server->output();
  EXPECT_NE(output.find("msg=\"web listening: open the dashboard in a browser\" url=http://127.0.0.1:" +
                        std::to_string(web) + "/"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("setup is waiting"), std::string::npos) << output;
  for (const char* plugin : {"auth", "workloads", "flight-gateway", "web", "orchestrator-process"})
    EXPECT_NE(output.find(std::string("msg=\"Plugin started\" plugin=") + plugin + " "), std::string::npos)
        << plugin << "\n" << output;

  auto secret_file = dir / "data/jwt-secret";
  ASSERT_TRUE(std::filesystem::exists(secret_file)) << output;
  EXPECT_EQ(std::filesystem::status(secret_file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::string secret;
  std::getline(std::ifstream(secret_file) >> std::ws, secret);
  EXPECT_GE(secret.size(), 64u);
  EXPECT_EQ(output.find(secret), std::string::npos) << "the secret is never printed";
  EXPECT_NE(output.find("production must set its own SYNTHORG_JWT_SECRET"), std::string::npos) << output;

  // Through the dashboard's port, as the browser does it.
  auto call = [&](const std::string& method, const std::string& path, const std::string& body, const std::string& token) {
    return request(web, method, path, body, token);
  };
  EXPECT_EQ(status_of(call("GET", "/", "", "")), 200);
  nlohmann::json admin = {{"username", "admin"}, {"password", "a long pass phrase 1"}};
  ASSERT_EQ(status_of(call("POST", "/api/v1/auth/setup", admin.dump(), "")), 201) << server->output();
  auto token = body_of(call("POST", "/api/v1/auth/login", admin.dump(), "")).value("token", "");
  ASSERT_FALSE(token.empty()) << server->output();
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", token)), 200);
  EXPECT_NO_THROW(Client{grpc}) << "the Flight SQL port listens";
  if (have_protos) {
    auto created = call("POST", "/api/v1/workloads", "", token);
    ASSERT_EQ(status_of(created), 201) << created << "\n" << server->output();
    EXPECT_EQ(body_of(created).value("state", ""), "running") << created;
    EXPECT_TRUE(body_of(created)["endpoints"].contains("grpc")) << created;
  } else {
    std::cout << "[  NOTE    ] the workload part is not run: no Arrow Flight protos at " << protos
              << " (the tests read them from ../shared/contracts/arrow-flight)\n";
  }

  // The next start signs with the same secret: the session from before is still good.
  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(30s), 0) << server->output();
  server = std::make_unique<Process>(std::vector<std::string>{"serve"}, env, in_dir);
  ASSERT_TRUE(server->wait_for_output("All plugins started", 30s)) << server->output();
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", token)), 200) << server->output();
  EXPECT_EQ(server->output().find("generated now"), std::string::npos) << "made once, then reused";
  EXPECT_EQ(server->output().find("setup is waiting"), std::string::npos) << server->output();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait(30s), 0) << server->output();

  // A secret file others may read is refused, with the fix.
  std::filesystem::permissions(secret_file, std::filesystem::perms::group_read | std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  auto refused = Process(std::vector<std::string>{"serve"}, env, in_dir);
  EXPECT_EQ(refused.wait(30s), 1) << refused.output();
  EXPECT_NE(refused.output().find("chmod 600"), std::string::npos) << refused.output();
  EXPECT_EQ(refused.output().find(secret), std::string::npos);
}

// The PondPilot guide's names work where the guide puts them: JWT_SECRET, PORT and GRPC_PORT;
// when ours are set too, ours win and the conflict is logged, never the values.
TEST(Cli, ThePondPilotGuidesVariablesAreAcceptedAndOursWin) {
  TempDir dir;
  int port = free_port(), grpc = free_port();
  const std::string secret(40, 'p');
  std::map<std::string, std::string> env{{"JWT_SECRET", secret},
                                         {"PORT", std::to_string(port)},
                                         {"GRPC_PORT", std::to_string(grpc)},
                                         {"SYNTHORG_WEB_PORT", "0"},
                                         {"SYNTHORG_ORCHESTRATOR", "orchestrator-process"}};
  const std::vector<std::string> in_dir{"env", "-u", "SYNTHORG_JWT_SECRET", "-u", "SYNTHORG_HTTP_PORT", "-u",
                                        "SYNTHORG_GRPC_PORT", "--chdir=" + dir.path().string()};
  {
    Process server(std::vector<std::string>{"serve"}, env, in_dir);
    ASSERT_TRUE(server.wait_for_output("All plugins started", 30s)) << server.output();
    EXPECT_EQ(status_of(request(port, "GET", "/api/v1/healthz")), 200) << "PORT is the API's port";
    EXPECT_NO_THROW(Client{grpc});
    auto output = server.output();
    EXPECT_NE(output.find("variable=JWT_SECRET as=SYNTHORG_JWT_SECRET"), std::string::npos) << output;
    EXPECT_NE(output.find("variable=PORT as=SYNTHORG_HTTP_PORT"), std::string::npos) << output;
    EXPECT_EQ(output.find(secret), std::string::npos) << "values are never logged";
    EXPECT_FALSE(std::filesystem::exists(dir / "data/jwt-secret")) << "JWT_SECRET signs; no secret is made";
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait(30s), 0);
  }
  int ours = free_port();
  env["SYNTHORG_HTTP_PORT"] = std::to_string(ours);
  Process server(std::vector<std::string>{"serve"}, env,
                 {"env", "-u", "SYNTHORG_JWT_SECRET", "-u", "SYNTHORG_GRPC_PORT", "--chdir=" + dir.path().string()});
  ASSERT_TRUE(server.wait_for_output("All plugins started", 30s)) << server.output();
  EXPECT_EQ(status_of(request(ours, "GET", "/api/v1/healthz")), 200) << "SYNTHORG_HTTP_PORT wins over PORT";
  EXPECT_EQ(occurrences(server.output(), "used=SYNTHORG_HTTP_PORT ignored=PORT"), 1u) << server.output();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(30s), 0);
}

// Secrets as Docker and Kubernetes hand them over: NAME_FILE, or /run/secrets/<name> (here a
// directory of the test's, through SYNTHORG_SECRETS_DIR), PondPilot's `jwt_secret` included.
TEST(Cli, SecretsAreReadFromFilesAsDockerAndKubernetesHandThemOver) {
  TempDir dir;
  const std::string secret(48, 'f');
  auto file = dir.write("jwt", secret + "\n");
  std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                         std::filesystem::perms::group_read | std::filesystem::perms::others_read);
  std::map<std::string, std::string> env = any_free_ports;
  const std::vector<std::string> in_dir{"env", "-u", "SYNTHORG_JWT_SECRET", "-u", "JWT_SECRET", "--chdir=" + dir.path().string()};
  env["SYNTHORG_JWT_SECRET_FILE"] = file.string();
  Process from_file(std::vector<std::string>{"serve", "--exit-after-start"}, env, in_dir);
  EXPECT_EQ(from_file.wait(30s), 0) << from_file.output();
  auto output = from_file.output();
  EXPECT_NE(output.find("msg=\"Secret read from a file\" variable=SYNTHORG_JWT_SECRET file=" + file.string()),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("may be read by other users"), std::string::npos) << "a 0644 file is warned about";
  EXPECT_EQ(output.find(secret), std::string::npos) << "never the value";
  EXPECT_FALSE(std::filesystem::exists(dir / "data/jwt-secret")) << "the file's secret signs; none is made";

  env.erase("SYNTHORG_JWT_SECRET_FILE");
  std::filesystem::create_directories(dir / "secrets");
  auto docker_secret = dir.write("secrets/jwt_secret", secret);
  std::filesystem::permissions(docker_secret, std::filesystem::perms::owner_read);
  env["SYNTHORG_SECRETS_DIR"] = (dir / "secrets").string();
  Process from_docker(std::vector<std::string>{"serve", "--exit-after-start"}, env, in_dir);
  EXPECT_EQ(from_docker.wait(30s), 0) << from_docker.output();
  EXPECT_NE(from_docker.output().find("variable=SYNTHORG_JWT_SECRET file=" + docker_secret.string()), std::string::npos)
      << from_docker.output();
  EXPECT_EQ(from_docker.output().find("may be read by other users"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "data/jwt-secret"));

  env["SYNTHORG_SETTINGS_KEY_FILE"] = (dir / "absent").string();
  Process refused(std::vector<std::string>{"serve", "--exit-after-start"}, env, in_dir);
  EXPECT_EQ(refused.wait(30s), 2) << refused.output();
  EXPECT_NE(refused.output().find("SYNTHORG_SETTINGS_KEY_FILE names " + (dir / "absent").string() +
                                  ", which cannot be read"),
            std::string::npos)
      << refused.output();
}

TEST(Cli, ServesTheShippedConfigFile) {
  auto result = run_synthorg({"--config", SYNTHORG_SOURCE_DIR "/config/company.yaml", "serve", "--exit-after-start"}, any_free_ports);
  EXPECT_EQ(result.exit_code, 0) << result.output;
}

TEST(Cli, SigtermWhileServingStopsInReverseAndExitsZero) {
  TempDir dir;
  Process kernel({"-c", config_for(dir, {"greeter", "greeter-client"}, "  greeter-client: {}\n"), "serve"});
  ASSERT_TRUE(kernel.wait_for_output("All plugins started", 10s)) << kernel.output();
  kernel.signal(SIGTERM);
  EXPECT_EQ(kernel.wait(10s), 0) << kernel.output();
  auto out = kernel.output();
  EXPECT_NE(out.find("msg=\"Shutting down\" reason=SIGTERM"), std::string::npos) << out;
  EXPECT_LT(out.find("msg=\"Plugin stopped\" plugin=greeter-client"), out.find("msg=\"Plugin stopped\" plugin=greeter\n")) << out;
}

TEST(Cli, SigtermDuringStartUpStopsWhatStartedAndExitsZero) {
  TempDir dir;
  Process kernel({"-c", config_for(dir, {"slow", "greeter"}, "  greeter: {}\n  slow: {config: {start_delay: 1500ms}}\n"), "serve"});
  ASSERT_TRUE(kernel.wait_for_output("plugin=greeter", 10s)) << kernel.output();  // greeter is up, slow is starting
  kernel.signal(SIGTERM);
  EXPECT_EQ(kernel.wait(10s), 0) << kernel.output();
  auto out = kernel.output();
  EXPECT_NE(out.find("Shutdown requested during start-up"), std::string::npos) << out;
  EXPECT_EQ(out.find("All plugins started"), std::string::npos) << out;
  EXPECT_NE(out.find("msg=\"Plugin stopped\" plugin=greeter"), std::string::npos) << out;
}

TEST(Cli, StartFailureExitsOneWithTheReason) {
  TempDir dir;
  auto result = run_synthorg({"-c", config_for(dir, {"greeter", "throwing-start"}, "  greeter: {}\n  throwing-start: {}\n"), "serve"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("msg=\"Start-up failed\" error=\"plugin 'throwing-start': start failed: database unreachable"),
            std::string::npos) << result.output;
  EXPECT_NE(result.output.find("msg=\"Plugin stopped\" plugin=greeter"), std::string::npos) << "rolled back: " << result.output;
}

// A plugin that crashes the process is named before the process dies, with the call it was in.
TEST(Cli, AFatalSignalNamesThePluginCallInFlight) {
  TempDir dir;
  auto result = run_synthorg({"-c", config_for(dir, {"greeter", "crashing-start"}, "  greeter: {}\n  crashing-start: {}\n"), "serve"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("synthorg: fatal SIGSEGV (invalid memory access) while start() of plugin 'crashing-start' "
                               "was in flight on the crashing thread"),
            std::string::npos)
      << result.output;
}

TEST(Cli, ConfigurationErrorsExitOneWithPositions) {
  TempDir dir;
  auto bad = dir.write("bad.yaml", "company_name: x\nkernel:\n  threads: [1\n");
  auto result = run_synthorg({"-c", bad.string(), "serve"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find(bad.string() + ":4:1: malformed YAML"), std::string::npos) << result.output;
  result = run_synthorg({"serve"}, {{"SYNTHORG_CONFIG_PATH", (dir / "absent.yaml").string()}});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("no such file"), std::string::npos) << result.output;
}

TEST(Cli, ConfigValidateChecksPluginSettingsWithoutStarting) {
  TempDir dir;
  auto good = run_synthorg({"-c", config_for(dir, {"greeter", "greeter-client"}, "  greeter-client: {}\n"), "config", "validate"});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("valid; 2 plugin(s) would start in this order: greeter,greeter-client"), std::string::npos) << good.output;
  EXPECT_EQ(good.output.find("Plugin started"), std::string::npos);
  TempDir other;
  auto bad = run_synthorg({"-c", config_for(other, {"greeter"}, "  greeter: {config: {repeat: 0}}\n"), "config", "validate"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find(":5:22: plugins.greeter.config.repeat: 0 is out of range"), std::string::npos) << bad.output;
}

TEST(Cli, PluginsListShowsManifestsAndRefusals) {
  TempDir dir;
  auto config = config_for(dir, {"greeter", "bad-toolchain", "not-a-plugin"}, "  greeter: {}\n");
  auto table = run_synthorg({"-c", config, "plugins", "list"});
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("greeter"), std::string::npos);
  EXPECT_NE(table.output.find("test.Greeter/1"), std::string::npos);
  EXPECT_NE(table.output.find("refused: " + (dir.path() / "plugins" / "bad-toolchain.so").string() + ": built with another toolchain"),
            std::string::npos) << table.output;
  auto json = run_synthorg({"-c", config, "plugins", "list", "--json"});
  ASSERT_EQ(json.exit_code, 0);
  auto parsed = nlohmann::json::parse(json.output.substr(json.output.find('{')));
  EXPECT_EQ(parsed["plugins"][0]["name"], "greeter");
  EXPECT_EQ(parsed["plugins"][0]["abi"], "1.0");
  EXPECT_EQ(parsed["refused"].size(), 2u);
}

// A third-party plugin is deployed by putting it in a directory of its own named by
// SYNTHORG_PLUGIN_PATH: the installed plugins are still found, and a bad entry is named.
TEST(Cli, SynthorgPluginPathAddsDirectoriesBesideTheInstalledOnes) {
  TempDir dir;
  auto extra = dir.path() / "third-party";
  std::filesystem::create_directories(extra);
  std::filesystem::create_symlink(std::filesystem::path(SYNTHORG_FIXTURE_DIR) / "greeter.so", extra / "greeter.so");
  auto config = dir.write("company.yaml", "company_name: Test\n");  // plugin_dirs empty: the installed directory
  auto listed = run_synthorg({"-c", config.string(), "plugins", "list"},
                             {{"SYNTHORG_PLUGIN_PATH", "::" + extra.string() + ":"}});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("greeter"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("http-api"), std::string::npos) << "the installed plugins too: " << listed.output;
  for (auto [value, expected] : {std::pair{"relative/dir", "not an absolute path"},
                                 std::pair{"/no/such/synthorg/dir", "not a directory"}}) {
    auto refused = run_synthorg({"-c", config.string(), "plugins", "list"}, {{"SYNTHORG_PLUGIN_PATH", value}});
    EXPECT_NE(refused.exit_code, 0) << value;
    EXPECT_NE(refused.output.find(std::string("SYNTHORG_PLUGIN_PATH: \"") + value + "\" is " + expected),
              std::string::npos)
        << refused.output;
  }
}

TEST(Cli, ConfigSchemaIncludesEveryPluginsMap) {
  TempDir dir;
  auto result = run_synthorg({"-c", config_for(dir, {"greeter"}, "  greeter: {}\n"), "config", "schema"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto schema = nlohmann::json::parse(result.output.substr(result.output.find('{')));
  EXPECT_EQ(schema["properties"]["plugins"]["properties"]["greeter"]["properties"]["config"]["properties"]["repeat"]["maximum"], 10);
  EXPECT_EQ(schema["properties"]["kernel"]["properties"]["shutdown_timeout"]["default"], "10s");
}

TEST(Cli, PluginsCheckRunsTheKit) {
  auto good = run_synthorg({"plugins", "check", fixture("greeter").string()}, {}, 60s);
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("[  PASSED  ] 5 tests"), std::string::npos) << good.output;
  auto bad = run_synthorg({"plugins", "check", fixture("leaky").string()}, {}, 60s);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("release their tokens in stop()"), std::string::npos) << bad.output;
  EXPECT_EQ(run_synthorg({"plugins", "check", "/no/such/file.so"}).exit_code, 2);
  // A file the host refuses: said once, with the loader's reason, and no kit runs.
  auto refused = run_synthorg({"plugins", "check", fixture("undefined-symbol").string()}, {}, 60s);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  auto said = refused.output.find("FAILED: the host refuses this file, so no kit can run:");
  EXPECT_NE(said, std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("FAILED: the host refuses", said + 1), std::string::npos) << "once: " << refused.output;
  EXPECT_NE(refused.output.find("undefined symbol: synthorg_fixture_symbol_nobody_defines"), std::string::npos);
  EXPECT_EQ(refused.output.find("[ RUN"), std::string::npos) << refused.output;
}

// No --kind: every kit the manifest calls for. A broken orchestrator must not pass on the generic
// kit alone, and a kind given by hand says what it leaves unchecked.
TEST(Cli, PluginsCheckRunsEveryKitTheManifestCallsFor) {
  auto automatic = run_synthorg({"plugins", "check", fixture("broken-orchestrator").string()}, {}, 240s);
  EXPECT_NE(automatic.output.find("running the orchestrator kit, from the plugins' manifests"), std::string::npos)
      << automatic.output;
  EXPECT_NE(automatic.output.find("OrchestratorKit."), std::string::npos) << automatic.output;
  EXPECT_NE(automatic.exit_code, 0) << "the broken orchestrator fails its contract";
  auto narrowed = run_synthorg({"plugins", "check", "--kind", "generic", fixture("broken-orchestrator").string()}, {}, 60s);
  EXPECT_NE(narrowed.output.find("a plugin provides the orchestrator service, whose contract --kind generic leaves "
                                 "unchecked"),
            std::string::npos)
      << narrowed.output;
  EXPECT_EQ(narrowed.output.find("OrchestratorKit."), std::string::npos);
  auto plain = run_synthorg({"plugins", "check", fixture("greeter").string()}, {}, 60s);
  EXPECT_NE(plain.output.find("running the generic kit"), std::string::npos) << plain.output;
}

// A start() that hangs fails the kit within its limit, naming the call, instead of holding it.
TEST(Cli, PluginsCheckFailsAStartThatOverrunsNamingTheCall) {
  auto began = std::chrono::steady_clock::now();
  auto hung = run_synthorg({"plugins", "check", fixture("slow").string(), "--config", R"({"start_delay": "20s"})",
                            "--call-timeout", "500"},
                           {}, 60s);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 15s) << "not the 20 s start";
  EXPECT_EQ(hung.exit_code, 1) << hung.output;
  EXPECT_NE(hung.output.find("FAILED: start() of plugin 'slow' did not return within 500 ms"), std::string::npos)
      << hung.output;
}

TEST(Cli, KeygenPrintsOnlyAFreshSecret) {
  auto fernet = run_synthorg({"keygen", "fernet"});
  ASSERT_EQ(fernet.exit_code, 0) << fernet.output;
  EXPECT_TRUE(std::regex_match(fernet.output, std::regex("[A-Za-z0-9_-]{43}=\n"))) << fernet.output;
  auto key = fernet.output.substr(0, 44);
  EXPECT_EQ(crypto::base64url_decode(key).value_or("").size(), 32u);
  EXPECT_NO_THROW(crypto::Fernet{key});

  auto jwt = run_synthorg({"keygen", "jwt"});
  ASSERT_EQ(jwt.exit_code, 0) << jwt.output;
  EXPECT_TRUE(std::regex_match(jwt.output, std::regex("[A-Za-z0-9_-]{86}\n"))) << jwt.output;
  EXPECT_EQ(crypto::base64url_decode(jwt.output.substr(0, 86)).value_or("").size(), 64u);

  EXPECT_NE(run_synthorg({"keygen", "fernet"}).output, fernet.output) << "two runs give two keys";
  EXPECT_NE(run_synthorg({"keygen", "jwt"}).output, jwt.output);
}

TEST(Cli, KeygenWithoutAKnownKindIsAUsageError) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"keygen", "bogus"}, {"keygen"},
                                                {"keygen", "fernet", "extra"}, {"keygen", "jwt", "--bits", "512"}}) {
    auto result = run_synthorg(args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_NE(result.output.find("`synthorg keygen fernet`"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("`synthorg keygen jwt`"), std::string::npos) << result.output;
  }
  EXPECT_NE(run_synthorg({"keygen", "bogus"}).output.find("unknown argument 'bogus'"), std::string::npos);
}

}  // namespace
}  // namespace synthorg::testing
