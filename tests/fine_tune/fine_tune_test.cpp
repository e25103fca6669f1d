// The fine-tune plugin end to end: a real `synthorg serve` (http-api, auth, store-sqlite,
// orchestrator-docker, fine-tune) against the Docker engine scripts/services starts, with the
// local stage image tests/images/build.sh makes (synthorg-test/fine-tune-stage, a busybox script
// that prints the progress protocol and behaves as each run's `options` ask). Each test's
// containers carry a synthorg.instance of their own and are removed at the end.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <csignal>
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

const char* const secret = "test-secret-for-fine-tune-tests-0123456789-abcdefghij";
const char* const stage_image = "synthorg-test/fine-tune-stage:latest";
const std::vector<std::string> stages = {"generating_data", "mining_negatives", "training", "evaluating", "deploying"};

std::string token(const std::string& subject, const std::string& role) {
  auth::JwtCodec codec({secret, {auth::JwtAlgorithm::hs256}, 30s});
  return codec.sign({{"sub", subject}, {"role", role}, {"exp", std::time(nullptr) + 3600}, {"iat", std::time(nullptr)}});
}

class FineTuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* skip = std::getenv("SYNTHORG_TEST_NO_DOCKER"); skip && std::string(skip) == "1")
      GTEST_SKIP() << "SYNTHORG_TEST_NO_DOCKER=1";
    if (shell("docker image inspect --format ok " + std::string(stage_image)) != "ok")
      FAIL() << stage_image << " is missing or the engine is down: run scripts/services docker";
    instance = test_instance("ft");
    link_plugins(dir.path() / "plugins", {"http-api.so", "store-sqlite.so", "auth.so", "orchestrator-docker.so", "fine-tune.so"});
    fs::create_directories(data());
    ::chmod(data().c_str(), 0777);  // the stages run as nobody
    port = free_port();
    admin = token("root", "admin");
  }
  void TearDown() override {
    server.reset();
    EXPECT_EQ(remove_instance_containers(instance), "") << "containers left behind";
  }
  fs::path data() const { return dir / "data"; }

  std::string config(const std::string& extra, bool with_orchestrator = true) {
    return "company_name: FineTune\nkernel:\n  plugin_dirs: [" + (dir.path() / "plugins").string() +
           "]\n  blocking_threads: 16\nselect: {store: store-sqlite" +
           (with_orchestrator ? ", orchestrator: orchestrator-docker" : "") +
           "}\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " + std::to_string(port) +
           "}\n  store-sqlite:\n    config: {path: " + (dir / "s.db").string() +
           "}\n  auth: {config: {accept_external_tokens: true, external_max_role: admin}}\n" + (with_orchestrator ? "  orchestrator-docker:\n    config: {pull_missing: false}\n" : "") +
           "  fine-tune:\n    config: {"
           "cpu_image: \"" + image + "\", instance: " + instance + ", data_dir: " + data().string() +
           ", stop_grace: 1s, health_interval: 300ms, memory_limit: 128m, pids_limit: 64" +
           (extra.empty() ? "" : ", " + extra) + "}\n";
  }
  void start(const std::string& extra = "", std::map<std::string, std::string> env = {}) {
    auto file = dir.write("company.yaml", config(extra));
    env["SYNTHORG_JWT_SECRET"] = secret;
    env["SYNTHORG_HTTP_ACCESS_LOG"] = "false";
    server = std::make_unique<Process>(std::vector<std::string>{"--config", file.string(), "serve"}, env);
    ASSERT_TRUE(server->wait_for_output("All plugins started", 30s)) << server->output();
  }

  std::string call(const std::string& method, const std::string& path, const std::string& body = "",
                   const std::string& bearer = "") {
    Client client(port);
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    request += "Authorization: Bearer " + (bearer.empty() ? admin : bearer) + "\r\n";
    if (method != "GET") request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    client.send(request + "\r\n" + body);
    return client.response();
  }
  json start_run(const json& options, int expected = 201) {
    auto response = call("POST", "/api/v1/fine-tune/runs", json{{"epochs", 2}, {"options", options}}.dump());
    EXPECT_EQ(status_of(response), expected) << response;
    return body_of(response);
  }
  json run(const std::string& id) { return body_of(call("GET", "/api/v1/fine-tune/runs/" + id)); }
  // Polls until the run is in `state`; returns the run as last read.
  json wait_for(const std::string& id, const std::string& state, std::chrono::seconds timeout = 60s) {
    json last;
    std::string response;
    for (auto end = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(200ms)) {
      // A read that got no JSON object (a busy machine's timeout) is one more poll, not the answer.
      response = call("GET", "/api/v1/fine-tune/runs/" + id);
      last = body_of(response);
      if (last.is_object() && last.value("state", "") == state) return last;
    }
    ADD_FAILURE() << "run " << id << " did not become " << state << ": " << last.dump(1) << "\nlast response: "
                  << response << "\n" << server->output();
    return last;
  }
  // The running container of a run's stage, once there is one.
  std::string container_of(const std::string& id, const std::string& stage) {
    for (auto end = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(200ms)) {
      auto found = shell("docker ps -q --no-trunc --filter label=synthorg.run=" + id + " --filter label=synthorg.stage=" +
                         stage);
      if (!found.empty()) return found;
    }
    ADD_FAILURE() << "no running container for stage " << stage << " of run " << id << "\n" << server->output();
    return "";
  }
  std::string containers_of(const std::string& id) { return shell("docker ps -aq --filter label=synthorg.run=" + id); }

  TempDir dir;
  int port = 0;
  std::string instance, admin;
  std::string image = stage_image;  // cpu_image
  std::unique_ptr<Process> server;
};

TEST_F(FineTuneTest, AFullRunCompletesEveryStageInAHardenedContainer) {
  // SYNTHORG_FINE_TUNE_IMAGE wins over the configured image names.
  image = "synthorg-test/not-this-one:latest";
  start("", {{"SYNTHORG_FINE_TUNE_IMAGE", stage_image}});
  EventClient events(port, admin);
  events.send(R"({"action":"subscribe","channels":["fine_tune"]})");
  ASSERT_EQ(events.receive()["type"], "subscribed");

  auto started = start_run({{"check_mounts", true}, {"sleep", "0.05"}, {"hold_stage", "training"}, {"hold_seconds", "3"}});
  auto id = started["id"].get<std::string>();
  EXPECT_EQ(started["state"], "running");
  EXPECT_EQ(started["image"], stage_image);
  EXPECT_EQ(started["config"]["epochs"], 2);

  // While training holds: what the engine applied.
  auto container = container_of(id, "training");
  ASSERT_FALSE(container.empty());
  auto applied = json::parse(shell("docker inspect " + container))[0];
  const auto& host = applied["HostConfig"];
  EXPECT_EQ(host["ReadonlyRootfs"], true);
  EXPECT_EQ(host["CapDrop"], json::array({"ALL"}));
  EXPECT_NE(host["SecurityOpt"].dump().find("no-new-privileges"), std::string::npos) << host["SecurityOpt"];
  EXPECT_TRUE(host["Tmpfs"].contains("/tmp")) << host["Tmpfs"];
  EXPECT_EQ(host["Memory"], 128LL << 20);
  EXPECT_EQ(host["PidsLimit"], 64);
  EXPECT_EQ(host["DeviceRequests"], nullptr) << "the cpu variant asks for no GPU";
  EXPECT_EQ(applied["Config"]["User"], "65534:65534");
  auto labels = applied["Config"]["Labels"];
  EXPECT_EQ(labels["synthorg.managed"], "true");
  EXPECT_EQ(labels["synthorg.component"], "fine-tune");
  EXPECT_EQ(labels["synthorg.run"], id);
  EXPECT_EQ(labels["synthorg.stage"], "training");
  std::string stage_config;
  for (const auto& variable : applied["Config"]["Env"])
    if (variable.get<std::string>().rfind("SYNTHORG_FINE_TUNE_STAGE_CONFIG=", 0) == 0)
      stage_config = variable.get<std::string>().substr(32);
  auto parsed = json::parse(stage_config, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << stage_config;
  EXPECT_EQ(parsed["stage"], "training");
  EXPECT_EQ(parsed["run_id"], id);
  EXPECT_EQ(parsed["config"]["epochs"], 2);
  EXPECT_EQ(parsed["data_dir"], "/data");
  bool data_mounted_rw = false;
  for (const auto& mount : applied["Mounts"])
    if (mount["Destination"] == "/data") data_mounted_rw = mount["RW"].get<bool>();
  EXPECT_TRUE(data_mounted_rw) << applied["Mounts"];
  // The health port answers while it holds; the plugin records that.
  for (int i = 0; i < 50 && run(id)["stages"][2]["health"] != "healthy"; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(run(id)["stages"][2]["health"], "healthy");

  auto done = wait_for(id, "complete");
  EXPECT_EQ(done["progress"], 1.0);
  EXPECT_EQ(done["reason"], "");
  EXPECT_EQ(done["checkpoint"], "/data/checkpoint-" + id) << "CHECKPOINT: recorded";
  ASSERT_EQ(done["stages"].size(), 5u);
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const auto& stage = done["stages"][i];
    EXPECT_EQ(stage["name"], stages[i]);
    EXPECT_EQ(stage["state"], "complete") << stage;
    EXPECT_EQ(stage["exit_code"], 0);
    EXPECT_EQ(stage["attempts"], 1);
    EXPECT_TRUE(stage["duration_ms"].is_number()) << stage;
    EXPECT_TRUE(stage["finished_at"].is_string()) << stage;
    // Written where it may write; evaluating only reads (its script fails if it can write).
    EXPECT_EQ(fs::exists(data() / (stages[i] + "." + id)), stages[i] != "evaluating") << stages[i];
  }
  EXPECT_GE(done["stages"][2]["duration_ms"].get<int>(), 3000) << "training held 3 s";
  EXPECT_EQ(containers_of(id), "") << "every stage container is removed when it ends";

  std::vector<std::string> stage_events;
  int progress_events = 0;
  json finished;
  while (finished.is_null()) {
    auto frame = events.receive();
    ASSERT_FALSE(frame.contains("error")) << frame.dump() << " after " << json(stage_events).dump();
    EXPECT_EQ(frame["payload"]["run_id"], id);
    if (frame["event_type"] == "fine_tune.stage")
      stage_events.push_back(frame["payload"]["stage"].get<std::string>() + ":" + frame["payload"]["state"].get<std::string>());
    if (frame["event_type"] == "fine_tune.progress") {
      ++progress_events;
      EXPECT_GE(frame["payload"]["overall"].get<double>(), 0.0);
      EXPECT_LE(frame["payload"]["overall"].get<double>(), 1.0);
    }
    if (frame["event_type"] == "fine_tune.finished") finished = frame["payload"];
  }
  EXPECT_EQ(finished["state"], "complete");
  std::vector<std::string> expected;
  for (const auto& stage : stages) {
    expected.push_back(stage + ":started");
    expected.push_back(stage + ":complete");
  }
  EXPECT_EQ(stage_events, expected);
  EXPECT_GE(progress_events, 5) << "at least the final PROGRESS:1 of each stage";

  auto listed = body_of(call("GET", "/api/v1/fine-tune/runs"))["runs"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], id);
  EXPECT_EQ(body_of(call("GET", "/api/v1/capabilities"))["fine_tune"], true);
}

// The SynthOrg guide's names: SYNTHORG_ARTIFACT_DIR (here a named volume, as a kernel in a
// container hands its stages the volume it keeps its data on) and SYNTHORG_FINE_TUNE_HEALTH_PORT.
TEST_F(FineTuneTest, TheGuidesArtifactDirMayNameAVolumeAndItsHealthPortIsTheStagesPort) {
  auto volume = "synthorg-test-" + instance;
  ASSERT_EQ(shell("docker volume create --label synthorg.instance=" + instance + " " + volume), volume);
  // The stages run as nobody: the fresh volume's root is made theirs, as an operator would.
  shell("docker run --rm --user 0 --entrypoint /bin/busybox -v " + volume + ":/data " + stage_image + " chmod 777 /data");
  start("", {{"SYNTHORG_ARTIFACT_DIR", volume}, {"SYNTHORG_FINE_TUNE_HEALTH_PORT", "15077"}});
  auto id = start_run({{"check_mounts", true}, {"sleep", "0.05"}, {"hold_stage", "training"}, {"hold_seconds", "2"}})["id"]
                .get<std::string>();
  auto container = container_of(id, "training");
  ASSERT_FALSE(container.empty());
  auto applied = json::parse(shell("docker inspect " + container))[0];
  json data;
  for (const auto& mount : applied["Mounts"])
    if (mount["Destination"] == "/data") data = mount;
  EXPECT_EQ(data["Type"], "volume") << applied["Mounts"];
  EXPECT_EQ(data["Name"], volume) << "SYNTHORG_ARTIFACT_DIR wins over data_dir";
  EXPECT_EQ(data["RW"], true);
  EXPECT_NE(applied["Config"]["Env"].dump().find("SYNTHORG_FINE_TUNE_HEALTH_PORT=15077"), std::string::npos);
  EXPECT_TRUE(applied["Config"]["ExposedPorts"].contains("15077/tcp")) << applied["Config"]["ExposedPorts"];
  // Probed where the stage listens: healthy, not unresponsive.
  for (int i = 0; i < 50 && run(id)["stages"][2]["health"] != "healthy"; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(run(id)["stages"][2]["health"], "healthy");
  auto done = wait_for(id, "complete");
  EXPECT_EQ(done["reason"], "");
  // What the stages wrote is on the volume.
  auto listed = shell("docker run --rm --entrypoint /bin/busybox -v " + volume + ":/data:ro " + stage_image + " ls /data");
  EXPECT_NE(listed.find("training." + id), std::string::npos) << listed;
  server.reset();
  EXPECT_EQ(remove_instance_containers(instance), "");
  shell("docker volume rm " + volume);
}

TEST_F(FineTuneTest, AnArtifactDirOrHealthPortThatIsNoneIsRefusedAtStartNamingTheVariable) {
  for (auto [name, value] : {std::pair{"SYNTHORG_ARTIFACT_DIR", "relative/path"},
                             std::pair{"SYNTHORG_ARTIFACT_DIR", "-volume"},
                             std::pair{"SYNTHORG_FINE_TUNE_HEALTH_PORT", "0"},
                             std::pair{"SYNTHORG_FINE_TUNE_HEALTH_PORT", "70000"},
                             std::pair{"SYNTHORG_FINE_TUNE_HEALTH_PORT", "15002x"}}) {
    auto file = dir.write("company.yaml", config(""));
    auto refused = run_synthorg({"--config", file.string(), "serve"},
                                {{"SYNTHORG_JWT_SECRET", secret}, {std::string(name), std::string(value)}});
    EXPECT_NE(refused.exit_code, 0) << name << "=" << value;
    EXPECT_NE(refused.output.find(name), std::string::npos) << refused.output;
    EXPECT_NE(refused.output.find(std::string("'") + value + "'"), std::string::npos) << refused.output;
  }
}

TEST_F(FineTuneTest, AFailingStageFailsTheRunAndResumeStartsFromIt) {
  start();
  auto id = start_run({{"fail_stage", "training"}, {"sleep", "0.05"}})["id"].get<std::string>();
  auto failed = wait_for(id, "failed");
  EXPECT_EQ(failed["reason"], "stage_failed");
  EXPECT_EQ(failed["last_error"], "injected failure in training");
  EXPECT_EQ(failed["stage"], "training");
  EXPECT_EQ(failed["stages"][1]["state"], "complete");
  EXPECT_EQ(failed["stages"][2]["state"], "failed");
  EXPECT_EQ(failed["stages"][2]["exit_code"], 3);
  EXPECT_EQ(failed["stages"][3]["state"], "pending");
  EXPECT_TRUE(server->wait_for_output("msg=\"Stage reported an error\"", 2s)) << server->output();
  EXPECT_EQ(containers_of(id), "");

  // Cancelling a finished run is refused, saying so.
  auto refused = call("POST", "/api/v1/fine-tune/runs/" + id + "/cancel");
  EXPECT_EQ(status_of(refused), 409) << refused;
  EXPECT_EQ(code_of(refused), "run_finished");
  EXPECT_NE(body_of(refused).value("detail", "").find("failed already"), std::string::npos) << refused;

  // Resume goes on from training: the stages before it are not run again.
  auto resumed = call("POST", "/api/v1/fine-tune/runs/" + id + "/resume");
  ASSERT_EQ(status_of(resumed), 200) << resumed;
  EXPECT_EQ(body_of(resumed)["state"], "running");
  auto again = wait_for(id, "failed");
  EXPECT_EQ(again["stages"][0]["attempts"], 1);
  EXPECT_EQ(again["stages"][1]["attempts"], 1);
  EXPECT_EQ(again["stages"][2]["attempts"], 2);
  EXPECT_EQ(again["resumes"], 1);
}

TEST_F(FineTuneTest, AStageExitingNonZeroWithoutErrorFailsWithItsExitCode) {
  start();
  auto id = start_run({{"exit_stage", "mining_negatives"}, {"sleep", "0.05"}})["id"].get<std::string>();
  auto failed = wait_for(id, "failed");
  EXPECT_EQ(failed["reason"], "stage_failed");
  EXPECT_EQ(failed["stages"][1]["exit_code"], 7);
  EXPECT_EQ(failed["last_error"], "stage mining_negatives exited with code 7 without an ERROR: line");
}

TEST_F(FineTuneTest, GarbageAndVeryLongLinesAreIgnoredAndLoggedSparingly) {
  start();
  auto id = start_run({{"garbage_stage", "generating_data"}, {"sleep", "0.05"}})["id"].get<std::string>();
  auto done = wait_for(id, "complete");
  // PROGRESS:lots, PROGRESS:1.5, STAGE_START:, ERROR:, and the 100 kB PROGRESS line (cut).
  EXPECT_GE(done["stages"][0]["malformed_lines"].get<int>(), 5) << done["stages"][0];
  EXPECT_EQ(done["stages"][1]["malformed_lines"], 0);
  EXPECT_EQ(done["last_error"], "") << "an empty ERROR: is malformed, not an error";
  auto output = server->output();
  EXPECT_EQ(occurrences(output, "msg=\"Malformed progress line ignored\""), 1u) << "rate-limited: " << output;
  std::size_t longest = 0;
  for (std::size_t at = 0, next; at < output.size(); at = next + 1) {
    next = output.find('\n', at);
    if (next == std::string::npos) next = output.size();
    longest = std::max(longest, next - at);
  }
  EXPECT_LT(longest, 4000u) << "a long stage line never reaches the log whole";
}

TEST_F(FineTuneTest, CancelMidStageStopsAndRemovesTheContainer) {
  start();
  auto id = start_run({{"hang_stage", "mining_negatives"}, {"sleep", "0.05"}})["id"].get<std::string>();
  ASSERT_FALSE(container_of(id, "mining_negatives").empty());
  auto cancelled = call("POST", "/api/v1/fine-tune/runs/" + id + "/cancel");
  ASSERT_EQ(status_of(cancelled), 200) << cancelled;
  auto record = body_of(cancelled);
  EXPECT_EQ(record["state"], "cancelled");
  EXPECT_EQ(record["reason"], "user");
  EXPECT_EQ(record["stages"][0]["state"], "complete");
  EXPECT_EQ(record["stages"][1]["state"], "cancelled");
  EXPECT_EQ(containers_of(id), "") << "stopped and removed";
  auto twice = call("POST", "/api/v1/fine-tune/runs/" + id + "/cancel");
  EXPECT_EQ(status_of(twice), 409);
  EXPECT_EQ(code_of(twice), "run_finished");
}

TEST_F(FineTuneTest, AStageRunningPastItsTimeoutIsStoppedAndTheRunFails) {
  start("stage_timeout: 2s");
  auto id = start_run({{"hang_stage", "generating_data"}})["id"].get<std::string>();
  auto failed = wait_for(id, "failed", 30s);
  EXPECT_EQ(failed["reason"], "timeout");
  EXPECT_EQ(failed["last_error"], "stage generating_data ran longer than its timeout of 2s and was stopped");
  EXPECT_EQ(failed["stages"][0]["state"], "failed");
  EXPECT_GE(failed["stages"][0]["duration_ms"].get<int>(), 2000);
  EXPECT_EQ(containers_of(id), "");
}

TEST_F(FineTuneTest, AStageThatStopsAnsweringItsHealthPortIsReported) {
  start();
  EventClient events(port, admin);
  events.send(R"({"action":"subscribe","channels":["fine_tune"]})");
  ASSERT_EQ(events.receive()["type"], "subscribed");
  auto id = start_run({{"quiet_stage", "generating_data"}, {"hold_stage", "generating_data"}, {"hold_seconds", "3"}})["id"]
                .get<std::string>();
  EXPECT_TRUE(server->wait_for_output("msg=\"Stage is not answering its health port\"", 15s)) << server->output();
  json unhealthy;
  for (int i = 0; i < 50 && unhealthy.is_null(); ++i) {
    auto frame = events.receive();
    ASSERT_FALSE(frame.contains("error")) << frame.dump();
    if (frame["event_type"] == "fine_tune.stage" && frame["payload"]["state"] == "unhealthy") unhealthy = frame["payload"];
  }
  EXPECT_EQ(unhealthy["stage"], "generating_data");
  EXPECT_NE(unhealthy["detail"].get<std::string>().find("/healthz"), std::string::npos) << unhealthy;
  auto done = wait_for(id, "complete");
  EXPECT_EQ(done["stages"][0]["health"], "unresponsive") << "reported, and the run goes on";
}

TEST_F(FineTuneTest, OneActiveRunAtATimeAndACompleteRunCannotBeResumed) {
  start();
  auto hanging = start_run({{"hang_stage", "generating_data"}})["id"].get<std::string>();
  auto second = call("POST", "/api/v1/fine-tune/runs", "{}");
  EXPECT_EQ(status_of(second), 409) << second;
  EXPECT_EQ(code_of(second), "too_many_active_runs");
  EXPECT_EQ(body_of(second)["max_active_runs"], 1);
  auto active = call("POST", "/api/v1/fine-tune/runs/" + hanging + "/resume");
  EXPECT_EQ(status_of(active), 409);
  EXPECT_EQ(code_of(active), "run_active");
  ASSERT_EQ(status_of(call("POST", "/api/v1/fine-tune/runs/" + hanging + "/cancel")), 200);

  auto quick = start_run({{"sleep", "0.01"}})["id"].get<std::string>();
  wait_for(quick, "complete");
  auto complete = call("POST", "/api/v1/fine-tune/runs/" + quick + "/resume");
  EXPECT_EQ(status_of(complete), 409) << complete;
  EXPECT_EQ(code_of(complete), "run_complete");
  EXPECT_NE(body_of(complete).value("detail", "").find("nothing to resume"), std::string::npos);
}

TEST_F(FineTuneTest, BadRequestsAreRefusedWithProblems) {
  start();
  for (auto [body, field] : std::vector<std::pair<std::string, std::string>>{{R"({"epochs": 0})", "epochs"},
                                                                             {R"({"learning_rate": 3})", "learning_rate"},
                                                                             {R"({"batch_size": "big"})", "batch_size"},
                                                                             {R"({"validation_split": 1.0})", "validation_split"},
                                                                             {R"({"epoch": 3})", "epoch"}}) {
    auto response = call("POST", "/api/v1/fine-tune/runs", body);
    EXPECT_EQ(status_of(response), 400) << body << ": " << response;
    EXPECT_EQ(header_of(response, "content-type"), "application/problem+json");
    EXPECT_EQ(code_of(response), "invalid_run_config");
    EXPECT_EQ(body_of(response)["field"], field);
  }
  EXPECT_EQ(code_of(call("POST", "/api/v1/fine-tune/runs", "{oops")), "invalid_body");
  EXPECT_EQ(status_of(call("GET", "/api/v1/fine-tune/runs/nope")), 404);
  EXPECT_EQ(code_of(call("POST", "/api/v1/fine-tune/runs/nope/cancel")), "not_found");
  EXPECT_EQ(code_of(call("POST", "/api/v1/fine-tune/runs/nope/resume")), "not_found");
  EXPECT_EQ(status_of(call("POST", "/api/v1/fine-tune/runs", "{}", token("vera", "viewer"))), 403) << "admins only";
  EXPECT_EQ(status_of(call("GET", "/api/v1/fine-tune/runs", "", token("vera", "viewer"))), 403);
  EXPECT_EQ(shell("docker ps -aq --filter label=synthorg.instance=" + instance), "") << "nothing was started";

  auto document = body_of(call("GET", "/api/v1/openapi.json"));
  EXPECT_TRUE(document["paths"].contains("/api/v1/fine-tune/runs/{id}/resume"));
  auto file = dir.write("openapi.json", document.dump());
  std::string command = "python3 -c \"import json,sys; from openapi_spec_validator import validate; "
                        "validate(json.load(open(sys.argv[1])))\" " + file.string() + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "openapi-spec-validator rejected the document";
}

TEST_F(FineTuneTest, AMissingImageFailsTheRunAndPreflightSaysWhy) {
  start("", {{"SYNTHORG_FINE_TUNE_IMAGE", "synthorg-test/no-such-stage:latest"}});
  auto preflight = body_of(call("POST", "/api/v1/fine-tune/preflight"));
  EXPECT_EQ(preflight["ok"], false) << preflight;
  EXPECT_EQ(preflight["checks"]["orchestrator"]["ok"], true);
  EXPECT_EQ(preflight["checks"]["image"]["ok"], false);
  EXPECT_EQ(preflight["checks"]["image"]["reason"], "image_missing");
  EXPECT_NE(preflight["checks"]["image"]["detail"].get<std::string>().find("no-such-stage"), std::string::npos);

  auto id = start_run({})["id"].get<std::string>();
  auto failed = wait_for(id, "failed");
  EXPECT_EQ(failed["reason"], "image_missing");
  EXPECT_NE(failed["last_error"].get<std::string>().find("no-such-stage"), std::string::npos) << failed;
  EXPECT_EQ(failed["stages"][0]["state"], "failed");
}

TEST_F(FineTuneTest, PreflightChecksTheImageAndTheGpuVariant) {
  start("variant: gpu, gpu_image: \"" + std::string(stage_image) + "\"");
  auto preflight = body_of(call("POST", "/api/v1/fine-tune/preflight"));
  EXPECT_EQ(preflight["variant"], "gpu");
  EXPECT_EQ(preflight["checks"]["orchestrator"]["ok"], true) << preflight;
  EXPECT_EQ(preflight["checks"]["image"]["ok"], true) << preflight;
  // This machine has no GPU: the engine refuses the DeviceRequests, and preflight says so.
  if (!fs::exists("/dev/nvidia0")) {
    EXPECT_EQ(preflight["checks"]["gpu"]["ok"], false) << preflight;
    // The engine's words name the capability asked for: the spec carried the GPU request.
    EXPECT_NE(preflight["checks"]["gpu"]["detail"].get<std::string>().find("gpu"), std::string::npos) << preflight;
    EXPECT_EQ(preflight["ok"], false);
  }
  EXPECT_EQ(shell("docker ps -aq --filter label=synthorg.instance=" + instance), "") << "preflight cleans up";
}

TEST_F(FineTuneTest, AfterARestartARunningStageIsReattached) {
  start();
  auto id = start_run({{"hold_stage", "training"}, {"hold_seconds", "6"}, {"sleep", "0.05"}})["id"].get<std::string>();
  auto container = container_of(id, "training");
  ASSERT_FALSE(container.empty());
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait(20s), 0) << server->output();
  EXPECT_TRUE(server->output().find("msg=\"Run detached; its stage keeps running for the next start\"") != std::string::npos)
      << server->output();
  EXPECT_EQ(shell("docker ps -q --no-trunc --filter label=synthorg.run=" + id), container) << "the stage outlives the kernel";

  start();
  EXPECT_TRUE(server->wait_for_output("reattached=1 interrupted=0 orphans_removed=0", 5s)) << server->output();
  auto done = wait_for(id, "complete");
  EXPECT_EQ(done["stages"][2]["attempts"], 1) << "re-attached, not started again";
  EXPECT_EQ(done["stages"][2]["container_id"], container);
  EXPECT_EQ(done["stages"][3]["state"], "complete");
}

TEST_F(FineTuneTest, AfterARestartAVanishedStageIsInterruptedAndResumes) {
  start();
  auto id = start_run({{"hold_stage", "training"}, {"hold_seconds", "60"}, {"sleep", "0.05"}})["id"].get<std::string>();
  auto container = container_of(id, "training");
  ASSERT_FALSE(container.empty());
  server->signal(SIGKILL);
  server->wait(10s);
  server.reset();
  shell("docker rm -f " + container);

  start();
  EXPECT_TRUE(server->wait_for_output("reattached=0 interrupted=1", 5s)) << server->output();
  auto interrupted = run(id);
  EXPECT_EQ(interrupted["state"], "interrupted");
  EXPECT_EQ(interrupted["reason"], "vanished");
  EXPECT_EQ(interrupted["stages"][2]["state"], "interrupted");
  EXPECT_NE(interrupted["last_error"].get<std::string>().find("vanished"), std::string::npos);

  auto resumed = call("POST", "/api/v1/fine-tune/runs/" + id + "/resume");
  ASSERT_EQ(status_of(resumed), 200) << resumed;
  auto done = wait_for(id, "complete");  // the stage holds on its first attempt only
  EXPECT_EQ(done["stages"][0]["attempts"], 1);
  EXPECT_EQ(done["stages"][1]["attempts"], 1);
  EXPECT_EQ(done["stages"][2]["attempts"], 2);
  EXPECT_EQ(done["resumes"], 1);
}

TEST_F(FineTuneTest, AnUnreachableOrchestratorIs503AndDoesNotKeepTheKernelDown) {
  start("", {{"DOCKER_HOST", "unix://" + (dir / "no-engine.sock").string()}});
  EXPECT_TRUE(server->wait_for_output("could not reconcile fine-tune runs now", 5s)) << server->output();
  auto refused = call("POST", "/api/v1/fine-tune/runs", "{}");
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_EQ(code_of(refused), "orchestrator_unavailable");
  EXPECT_FALSE(header_of(refused, "retry-after").empty());
  EXPECT_EQ(body_of(call("GET", "/api/v1/fine-tune/runs"))["runs"], json::array()) << "reading needs no orchestrator";
  auto preflight = body_of(call("POST", "/api/v1/fine-tune/preflight"));
  EXPECT_EQ(preflight["ok"], false);
  EXPECT_EQ(preflight["checks"]["orchestrator"]["ok"], false) << preflight;
}

TEST_F(FineTuneTest, EnablingItWithoutAnOrchestratorIsAClearStartUpError) {
  fs::remove(dir.path() / "plugins" / "orchestrator-docker.so");
  auto file = dir.write("no-orchestrator.yaml", config("", false));
  Process kernel({"--config", file.string(), "serve"}, {{"SYNTHORG_JWT_SECRET", secret}});
  EXPECT_NE(kernel.wait(30s), 0) << kernel.output();
  EXPECT_NE(kernel.output().find("plugin 'fine-tune'"), std::string::npos) << kernel.output();
  EXPECT_NE(kernel.output().find("synthorg.Orchestrator/1"), std::string::npos) << kernel.output();
}

}  // namespace
}  // namespace synthorg::testing
