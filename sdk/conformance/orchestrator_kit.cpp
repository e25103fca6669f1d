// The Orchestrator conformance kit: what every synthorg.Orchestrator/1 provider must do, checked
// through the interface alone, on real workloads. Run it with
//
//   synthorg plugins check --kind orchestrator my-orchestrator.so --config '{...}'
//   synthorg-conformance --kind orchestrator --plugin my-orchestrator.so [--kit-image IMAGE]
//
// Workloads. Every workload the kit starts is a portable shell script run by busybox:
// command ["/bin/busybox", "sh", "-c", SCRIPT] in the image given by --kit-image (default
// $SYNTHORG_KIT_IMAGE, else synthorg-test/busybox:latest, which tests/images/build.sh makes from
// Debian's busybox-static). Every spec keeps the hardening on: read-only root, all capabilities
// dropped, no-new-privileges, user "65534:65534" and a tmpfs on /tmp. A conformant backend runs
// workloads that way.
//
// Listening. A listening workload runs
//   exec /bin/busybox httpd -f -p "${SYNTHORG_LISTEN_HOST:-0.0.0.0}:8080" -h /tmp
// and the kit GETs endpoint(id, 8080) over TCP. A backend that gives every workload its own
// network namespace (Docker, a pod, a machine) leaves SYNTHORG_LISTEN_HOST unset. One that cannot
// (the process orchestrator, the Kubernetes and Fly contract servers) sets it, in each workload's
// environment, to a loopback address of that workload's own (127.x.y.z) and returns that address
// from endpoint(), so two workloads can both listen on 8080.
//
// Log streams. A backend whose logs cannot tell stdout from stderr (the Kubernetes logs API
// merges them) reports every line as stdout_stream and says so with
// health().info["log_streams"] == "combined"; the kit then accepts the stderr marker on either
// stream. Every other backend must deliver it as stderr_stream.
//
// What a backend cannot do it says in health().info, and the kit respects it: "logs":
// "unsupported" (logs() must then throw failed; the log tests are skipped) and "limits":
// "rounded_up" (limits read back may be larger than requested, never smaller).
//
// Isolation between runs. Every workload carries the label synthorg.kit.run=<a value unique to
// this run>, so parallel runs against one backend never see each other's workloads. Each test
// removes what it made, even when it fails; the last test checks that nothing is left.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "kit.hpp"
#include "orchestrator_kit_support.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::conformance {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using namespace kit_support;

constexpr std::string_view default_kit_image = "synthorg-test/busybox:latest";
constexpr std::string_view run_label = "synthorg.kit.run";
constexpr std::string_view case_label = "synthorg.kit.case";
constexpr std::uint16_t http_port = 8080;
constexpr auto ready_limit = 10s;   // how long a workload may take to answer or to log
constexpr auto call_limit = 60s;    // how long any single call may take before the kit gives up on it
constexpr auto grace = 1s;          // stop() grace: busybox as PID 1 may ignore SIGTERM

const char* listen_script = "exec /bin/busybox httpd -f -p \"${SYNTHORG_LISTEN_HOST:-0.0.0.0}:8080\" -h /tmp";

std::string kit_image() {
  if (!options().kit_image.empty()) return options().kit_image;
  if (const char* image = std::getenv("SYNTHORG_KIT_IMAGE"); image && *image) return image;
  return std::string(default_kit_image);
}

class OrchestratorKit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One label for the whole run, even when the runner splits it over processes (isolation).
    const char* shared_run = std::getenv(std::string(run_environment).c_str());
    run_ = shared_run && *shared_run ? shared_run : "r" + random_hex(12);
    if (options().plugins.empty()) return;
    try {
      host_ = new KitHost();
      host_->start_providers();
      const auto& file = load(options().plugins.front());
      instance_ = new host::PluginInstance(file, host_->context_for(file));
      instance_->configure(options().config);
      within_limit("start()", file.manifest.name, [] { instance_->start(); });
      orchestrator_ = marking_calls(host_->registry().get<Orchestrator>());
      if (!orchestrator_)
        setup_error_ = "the plugin under test registered no " + std::string(Orchestrator::service_id);
      else if (options().after_crash)
        remove_what_a_crash_left();
    } catch (const std::exception& error) {
      setup_error_ = std::string("the plugin under test did not start: ") + error.what();
    }
  }

  // A test that crashed its process left its workloads behind; this process removes them before
  // its own tests run, so none of them is blamed for another's leftovers.
  static void remove_what_a_crash_left() {
    auto orchestrator = orchestrator_;
    auto removed = std::make_shared<std::size_t>(0);
    finishes_within(call_limit, [orchestrator, removed] {
      for (const auto& status : orchestrator->list({{std::string(run_label), run_}})) {
        try {
          orchestrator->remove(status.id);
          ++*removed;
        } catch (...) {
        }
      }
    });
    std::printf("synthorg-conformance: removed %zu workload(s) that a crashed test left behind\n", *removed);
  }

  static void TearDownTestSuite() {
    // A safety net behind each test's own cleanup: whatever still carries this run's label goes.
    if (orchestrator_) {
      auto orchestrator = orchestrator_;
      finishes_within(call_limit, [orchestrator] {
        for (const auto& status : orchestrator->list({{std::string(run_label), run_}})) {
          try {
            orchestrator->remove(status.id);
          } catch (...) {
          }
        }
      });
    }
    orchestrator_.reset();
    if (instance_) {
      try {
        within_limit("stop()", instance_->name(), [] { instance_->stop(); });
      } catch (const std::exception& error) {
        ADD_FAILURE() << "stopping the plugin after the kit: " << error.what();
      }
    }
    delete instance_;
    delete host_;
    instance_ = nullptr;
    host_ = nullptr;
  }

  void SetUp() override {
    if (!orchestrator_) GTEST_FAIL() << (setup_error_.empty() ? "no plugin under test" : setup_error_);
    // What the backend says it cannot do (orchestrator.hpp, OrchestratorHealth::info).
    try {
      auto info = orchestrator_->health().info;
      combined_logs_ = info.value("log_streams", "") == "combined";
      logs_unsupported_ = info.value("logs", "") == "unsupported";
      limits_rounded_up_ = info.value("limits", "") == "rounded_up";
    } catch (...) {
      // HealthIsUp reports it
    }
  }

  // The scope guard of every test: whatever it spawned is removed, whether it passed or not.
  void TearDown() override {
    std::vector<std::string> ids;
    {
      std::lock_guard lock(created_mutex_);
      ids.swap(created_);
    }
    for (const auto& id : ids) {
      Outcome outcome;
      auto orchestrator = orchestrator_;
      if (!finishes_within(call_limit, [orchestrator, id] { orchestrator->remove(id); }, &outcome))
        ADD_FAILURE() << "cleanup: remove(\"" << id << "\") did not return within " << call_limit.count() << " s";
      else if (outcome.threw)
        ADD_FAILURE() << "cleanup: remove(\"" << id << "\") " << outcome.description
                      << " (removing a workload, even one already removed, must succeed)";
    }
  }

  // A hardened spec running `script`, labelled with this run and the test's case.
  static WorkloadSpec spec(const std::string& case_name, const std::string& script) {
    WorkloadSpec spec;
    spec.name = "kit-" + case_name + "-" + random_hex(6);
    spec.image = kit_image();
    spec.command = {"/bin/busybox", "sh", "-c", script};
    spec.labels = {{std::string(run_label), run_}, {std::string(case_label), case_name}};
    spec.read_only_root = true;
    spec.drop_all_capabilities = true;
    spec.no_new_privileges = true;
    spec.user = "65534:65534";
    spec.tmpfs = {TmpfsMount{"/tmp"}};
    return spec;
  }

  static Labels case_labels(const std::string& case_name) {
    return {{std::string(run_label), run_}, {std::string(case_label), case_name}};
  }

  // spawn(), with the new workload remembered for TearDown. Fails the test (fatally, in the
  // caller's ASSERT_NO_FATAL_FAILURE) when spawn throws.
  WorkloadStatus spawn(const WorkloadSpec& spec) {
    WorkloadStatus status;
    Outcome outcome;
    auto orchestrator = orchestrator_;
    auto result = std::make_shared<WorkloadStatus>();
    if (!finishes_within(call_limit, [orchestrator, spec, result] { *result = orchestrator->spawn(spec); }, &outcome)) {
      ADD_FAILURE() << "spawn(" << spec.name << ") did not return within " << call_limit.count() << " s";
      return status;
    }
    if (outcome.threw) {
      ADD_FAILURE() << "spawn(" << spec.name << ", image " << spec.image << ") " << outcome.description;
      return status;
    }
    status = *result;
    if (status.id.empty()) {
      ADD_FAILURE() << "spawn(" << spec.name << ") returned a status with an empty id";
      return status;
    }
    remember(status.id);
    return status;
  }

  // Runs `request` as a one-shot to its end: its exit code, or nullopt after failing the test.
  std::optional<int> exit_code_of(WorkloadSpec request, std::string& id) {
    request.one_shot = true;
    id = spawn(request).id;
    if (id.empty()) return std::nullopt;
    WaitResult waited;
    try {
      waited = orchestrator_->wait(id, 60s);
    } catch (const std::exception& error) {
      ADD_FAILURE() << "wait(\"" << id << "\") threw: " << error.what();
      return std::nullopt;
    }
    if (!waited.exited || !waited.exit_code) ADD_FAILURE() << id << " did not exit with a code within 60 s";
    return waited.exit_code;
  }

  void remember(const std::string& id) {
    std::lock_guard lock(created_mutex_);
    created_.push_back(id);
  }

  void expect_error(OrchestratorErrc expected, const std::string& call_text, const std::function<void()>& call) {
    Outcome outcome;
    if (!finishes_within(call_limit, call, &outcome)) {
      ADD_FAILURE() << call_text << " did not return within " << call_limit.count() << " s";
      return;
    }
    EXPECT_TRUE(outcome.orchestrator_error && outcome.code == expected)
        << call_text << " should throw OrchestratorError(" << to_string(expected) << "); it " << outcome.description;
  }

  // Polls inspect() until the workload answers with `state` (or `limit` passes).
  WorkloadStatus await_state(const std::string& id, WorkloadState state, std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    WorkloadStatus status;
    for (;;) {
      status = orchestrator_->inspect(id);
      if (status.state == state || Clock::now() >= deadline) return status;
      std::this_thread::sleep_for(100ms);
    }
  }

  // True once inspect(id) says not_found and list() no longer shows it (within `limit`: a
  // backend may delete asynchronously, like a pod that terminates).
  bool await_gone(const std::string& id, const Labels& labels, std::string& seen) {
    auto deadline = Clock::now() + ready_limit;
    for (;;) {
      auto inspected = outcome_of([&] { orchestrator_->inspect(id); });
      bool listed = false;
      for (const auto& status : orchestrator_->list(labels)) listed = listed || status.id == id;
      bool not_found = inspected.orchestrator_error && inspected.code == OrchestratorErrc::not_found;
      if (not_found && !listed) return true;
      // Still there (inspect answers, or list shows it) may pass; a wrong error will not.
      bool settled = inspected.threw && !not_found;
      if (settled || Clock::now() >= deadline) {
        seen = "inspect " + inspected.description + (listed ? "; list() still shows it" : "; list() no longer shows it");
        return false;
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  // Collects the workload's logs until `done` says they are complete (or `limit` passes).
  // Without follow, logs() is called again until then; with follow, once, and the kit
  // requests stop when the limit passes.
  std::shared_ptr<LogCapture> read_logs(const std::string& id, std::size_t tail,
                                        const std::function<bool(LogCapture&)>& done, Outcome& outcome,
                                        std::string& problem) {
    auto orchestrator = orchestrator_;
    auto deadline = Clock::now() + ready_limit;
    for (;;) {
      auto capture = std::make_shared<LogCapture>();
      if (!finishes_within(call_limit, [orchestrator, id, tail, capture] {
            orchestrator->logs(id, {tail, false, {}}, [capture](LogStream stream, std::string_view line) {
              capture->add(stream, line);
              return true;
            });
          }, &outcome)) {
        problem = "logs(\"" + id + "\", follow=false) did not return within " + std::to_string(call_limit.count()) + " s";
        return capture;
      }
      if (outcome.threw || done(*capture) || Clock::now() >= deadline) return capture;
      std::this_thread::sleep_for(200ms);
    }
  }

  // The lifecycle workload's logs: without follow, with tail, and with follow.
  void check_logs(const std::string& id, const std::string& out_marker, const std::string& err_marker) {
    // Logs without follow: both markers, each on its own stream; tail counts lines from the end.
    auto has_all = [&](LogCapture& capture) {
      return capture.stream_of(out_marker) && capture.stream_of(err_marker) && capture.stream_of("kit-tail-2");
    };
    Outcome outcome;
    std::string problem;
    auto all = read_logs(id, 0, has_all, outcome, problem);
    ASSERT_TRUE(problem.empty()) << problem;
    ASSERT_FALSE(outcome.threw) << "logs(\"" << id << "\", tail=0) " << outcome.description;
    auto out_stream = all->stream_of(out_marker), err_stream = all->stream_of(err_marker);
    EXPECT_TRUE(out_stream && *out_stream == LogStream::stdout_stream)
        << "logs of " << id << ": expected \"" << out_marker << "\" on stdout; saw " << (out_stream ? stream_name(*out_stream) : "nothing") << ":\n"
        << all->dump();
    EXPECT_TRUE(err_stream && (*err_stream == LogStream::stderr_stream || combined_logs_))
        << "logs of " << id << ": expected \"" << err_marker << "\" on stderr; saw " << (err_stream ? stream_name(*err_stream) : "nothing")
        << " (a backend that cannot tell the streams apart says so with health().info.log_streams = \"combined\"):\n"
        << all->dump();
    if (!all->stream_of("kit-tail-2")) {
      ADD_FAILURE() << "logs of " << id << ": expected the line \"kit-tail-2\" within " << ready_limit.count() << " s";
    } else {
      auto tail = read_logs(id, 1, [](LogCapture& capture) { return capture.stream_of("kit-tail-2").has_value(); },
                            outcome, problem);
      EXPECT_TRUE(problem.empty()) << problem;
      EXPECT_FALSE(outcome.threw) << "logs(\"" << id << "\", tail=1) " << outcome.description;
      std::lock_guard lock(tail->mutex);
      EXPECT_EQ(tail->lines.size(), 1u) << "logs(\"" << id << "\", tail=1) should give the last line only";
      if (!tail->lines.empty()) {
        EXPECT_EQ(tail->lines.back().second, "kit-tail-2") << "the last line of " << id;
      }
    }

    // Logs with follow: the same markers arrive, and returning false from the sink ends the call.
    auto followed = std::make_shared<LogCapture>();
    std::stop_source stop;
    auto orchestrator = orchestrator_;
    auto follow = [orchestrator, id, followed, token = stop.get_token(), out_marker, err_marker] {
      LogOptions options{0, true, token};
      orchestrator->logs(id, options, [followed, out_marker, err_marker](LogStream stream, std::string_view line) {
        followed->add(stream, line);
        return !(followed->stream_of(out_marker) && followed->stream_of(err_marker));
      });
    };
    auto done = std::make_shared<std::promise<Outcome>>();
    auto follow_result = done->get_future();
    std::thread follower([done, follow] { done->set_value(outcome_of(follow)); });
    bool returned = follow_result.wait_for(ready_limit) == std::future_status::ready;
    if (!returned) {
      stop.request_stop();
      returned = follow_result.wait_for(5s) == std::future_status::ready;
    }
    if (returned) {
      follower.join();
      auto followed_outcome = follow_result.get();
      EXPECT_FALSE(followed_outcome.threw) << "logs(\"" << id << "\", follow=true) " << followed_outcome.description;
    } else {
      follower.detach();
      ADD_FAILURE() << "logs(\"" << id << "\", follow=true) went on after its sink returned false and after stop was requested";
    }
    EXPECT_TRUE(followed->stream_of(out_marker) && followed->stream_of(err_marker))
        << "logs(\"" << id << "\", follow=true) should deliver both markers within " << ready_limit.count() << " s; saw:\n"
        << followed->dump();
  }

  static KitHost* host_;
  static host::PluginInstance* instance_;
  static std::shared_ptr<Orchestrator> orchestrator_;
  static std::string setup_error_;
  static std::string run_;

  bool combined_logs_ = false;
  bool logs_unsupported_ = false;
  bool limits_rounded_up_ = false;
  std::mutex created_mutex_;
  std::vector<std::string> created_;
};

KitHost* OrchestratorKit::host_ = nullptr;
host::PluginInstance* OrchestratorKit::instance_ = nullptr;
std::shared_ptr<Orchestrator> OrchestratorKit::orchestrator_;
std::string OrchestratorKit::setup_error_;
std::string OrchestratorKit::run_;

TEST_F(OrchestratorKit, HealthIsUp) {
  EXPECT_FALSE(orchestrator_->backend().empty()) << "backend() names the backend: \"docker\", \"process\"...";
  auto health = orchestrator_->health();
  EXPECT_TRUE(health.up) << "health() says the backend is down: " << health.detail;
  EXPECT_TRUE(health.info.is_object() && !health.info.empty())
      << "health().info should describe the backend (backend, version...); it is " << health.info.dump();
}

// The whole life of a listening workload: spawn, serve, log, stop, wait, remove.
TEST_F(OrchestratorKit, SpawnServeLogStopWaitRemove) {
  auto token = random_hex(8);
  auto out_marker = "kit-out-" + token, err_marker = "kit-err-" + token;
  auto script = "echo " + out_marker + "; echo " + err_marker + " >&2; sleep 1; echo kit-tail-1; echo kit-tail-2; " +
                listen_script;
  auto request = spec("lifecycle", script);
  request.ports = {PortRequest{http_port}};
  auto spawned = spawn(request);
  ASSERT_FALSE(spawned.id.empty());
  const auto& id = spawned.id;
  EXPECT_EQ(to_string(spawned.state), to_string(WorkloadState::running))
      << "spawn() of " << id << " returns once the workload runs";
  auto inspected = orchestrator_->inspect(id);
  EXPECT_EQ(inspected.id, id) << "inspect(\"" << id << "\") answered for another id";
  EXPECT_EQ(to_string(inspected.state), to_string(WorkloadState::running)) << "inspect(\"" << id << "\") right after spawn";

  // The endpoint reaches the workload's port 8080.
  Endpoint endpoint;
  ASSERT_NO_THROW(endpoint = orchestrator_->endpoint(id, http_port)) << "endpoint(\"" << id << "\", 8080)";
  EXPECT_FALSE(endpoint.host.empty()) << "endpoint(\"" << id << "\", 8080) has no host";
  EXPECT_NE(endpoint.port, 0) << "endpoint(\"" << id << "\", 8080) has no port";
  std::string status_line, error;
  for (auto deadline = Clock::now() + ready_limit; status_line.empty() && Clock::now() < deadline;) {
    status_line = http_status_line(endpoint, 2s, error);
    if (status_line.empty()) std::this_thread::sleep_for(200ms);
  }
  RecordProperty("endpoint", endpoint.host + ":" + std::to_string(endpoint.port));
  RecordProperty("http_status_line", status_line);
  EXPECT_FALSE(status_line.empty()) << "GET http://" << endpoint.host << ":" << endpoint.port << "/ (endpoint of " << id
                                    << ", port 8080) did not answer within " << ready_limit.count()
                                    << " s; last error: " << error;

  if (logs_unsupported_) {
    auto o = orchestrator_;
    expect_error(OrchestratorErrc::failed, "logs(\"" + id + "\") of a backend whose health().info says logs: unsupported",
                 [o, id] { o->logs(id, {10, false, {}}, [](LogStream, std::string_view) { return true; }); });
  } else {
    check_logs(id, out_marker, err_marker);
  }

  // Stop, then wait: exited, with an exit code; stopping again is a no-op.
  ASSERT_NO_THROW(orchestrator_->stop(id, grace)) << "stop(\"" << id << "\")";
  WaitResult waited;
  ASSERT_NO_THROW(waited = orchestrator_->wait(id, 30s)) << "wait(\"" << id << "\") after stop";
  EXPECT_TRUE(waited.exited) << "wait(\"" << id << "\", 30 s) after stop(" << grace.count() << " s) says it still runs";
  EXPECT_TRUE(waited.exit_code.has_value()) << "wait(\"" << id << "\") after stop reports no exit code";
  auto stopped = orchestrator_->inspect(id);
  EXPECT_EQ(to_string(stopped.state), to_string(WorkloadState::exited)) << "inspect(\"" << id << "\") after stop and wait";
  EXPECT_TRUE(stopped.exit_code.has_value()) << "inspect(\"" << id << "\") of a stopped workload reports no exit code";
  auto o = orchestrator_;
  expect_error(OrchestratorErrc::failed, "endpoint(\"" + id + "\", 8080) of an exited workload",
               [o, id] { o->endpoint(id, http_port); });
  Outcome again = outcome_of([&] { orchestrator_->stop(id, grace); });
  EXPECT_FALSE(again.threw) << "stop(\"" << id << "\") of an exited workload is a no-op; it " << again.description;

  // Remove: gone from inspect and list; removing again is a no-op.
  ASSERT_NO_THROW(orchestrator_->remove(id)) << "remove(\"" << id << "\")";
  std::string seen;
  EXPECT_TRUE(await_gone(id, case_labels("lifecycle"), seen))
      << "after remove(\"" << id << "\") inspect should throw not_found and list() should not show it; " << seen;
  Outcome removed_again = outcome_of([&] { orchestrator_->remove(id); });
  EXPECT_FALSE(removed_again.threw) << "remove(\"" << id << "\") of a removed workload is a no-op; it "
                                    << removed_again.description;
}

TEST_F(OrchestratorKit, LabelsAndListFilters) {
  struct Made {
    std::string group;
    WorkloadStatus status;
  };
  std::vector<Made> made;
  for (const std::string group : {"a", "a", "b"}) {
    auto request = spec("labels", "exec /bin/busybox sleep 300");
    request.labels["synthorg.kit.group"] = group;
    auto status = spawn(request);
    ASSERT_FALSE(status.id.empty());
    made.push_back({group, status});
  }
  for (const auto& [group, status] : made) {
    auto want = case_labels("labels");
    want["synthorg.kit.group"] = group;
    want[std::string(orchestrator::managed_label)] = "true";
    auto inspected = orchestrator_->inspect(status.id);
    for (const auto& [key, value] : want) {
      EXPECT_TRUE(has_label(inspected.labels, key, value))
          << "inspect(\"" << status.id << "\") should carry the label " << key << "=" << value << "; its labels are "
          << show(inspected.labels);
      EXPECT_TRUE(has_label(status.labels, key, value))
          << "spawn() returned " << status.id << " without the label " << key << "=" << value << "; its labels are "
          << show(status.labels);
    }
  }
  // One workload exits: list() still shows it.
  ASSERT_NO_THROW(orchestrator_->stop(made[1].status.id, grace));
  orchestrator_->wait(made[1].status.id, 30s);

  auto expect_list = [&](Labels filter, std::set<std::string> expected) {
    std::set<std::string> seen;
    for (const auto& status : orchestrator_->list(filter)) {
      seen.insert(status.id);
      for (const auto& [key, value] : filter) {
        EXPECT_TRUE(has_label(status.labels, key, value))
            << "list(" << show(filter) << ") returned " << status.id << ", whose labels " << show(status.labels)
            << " do not match the filter";
      }
    }
    EXPECT_EQ(show(seen), show(expected)) << "list(" << show(filter) << ") should return exactly the matching workloads";
  };
  auto with_group = [&](const std::string& group) {
    auto labels = case_labels("labels");
    labels["synthorg.kit.group"] = group;
    return labels;
  };
  expect_list(with_group("a"), {made[0].status.id, made[1].status.id});
  expect_list(with_group("b"), {made[2].status.id});
  expect_list(with_group("none"), {});
  expect_list(case_labels("labels"), {made[0].status.id, made[1].status.id, made[2].status.id});
  // No filter: every managed workload, ours among them.
  // Only managed ones: a backend shared with other tenants (other containers on the engine,
  // other pods in the namespace) must never hand theirs to the kernel, which would reap them.
  std::set<std::string> everything;
  for (const auto& status : orchestrator_->list({})) {
    everything.insert(status.id);
    EXPECT_TRUE(has_label(status.labels, std::string(orchestrator::managed_label), "true"))
        << "list({}) returned " << status.id << " without " << orchestrator::managed_label
        << "=true (labels " << show(status.labels) << "): list() must return only the workloads this backend manages";
  }
  for (const auto& [group, status] : made)
    EXPECT_TRUE(everything.count(status.id)) << "list({}) should include " << status.id;
  for (const auto& status : orchestrator_->list(with_group("a"))) {
    if (status.id == made[1].status.id) {
      EXPECT_EQ(to_string(status.state), to_string(WorkloadState::exited)) << "list() shows " << status.id << " as";
    }
  }
}

TEST_F(OrchestratorKit, LimitsAreReportedBack) {
  auto request = spec("limits", "exec /bin/busybox sleep 300");
  request.memory_bytes = 64LL << 20;
  request.cpus = 0.5;
  request.pids_limit = 64;
  auto status = spawn(request);
  ASSERT_FALSE(status.id.empty());
  auto inspected = orchestrator_->inspect(status.id);
  // 0 means "the backend cannot say"; anything else must be what was asked for.
  // A backend that sizes in steps (health().info.limits == "rounded_up") may report more, never less.
  if (limits_rounded_up_) {
    if (inspected.memory_bytes != 0) {
      EXPECT_GE(inspected.memory_bytes, request.memory_bytes) << "inspect(\"" << status.id << "\").memory_bytes, rounded up";
    }
    if (inspected.cpus != 0) {
      EXPECT_GE(inspected.cpus + 1e-3, request.cpus) << "inspect(\"" << status.id << "\").cpus, rounded up";
    }
    if (inspected.pids_limit != 0) {
      EXPECT_GE(inspected.pids_limit, request.pids_limit) << "inspect(\"" << status.id << "\").pids_limit, rounded up";
    }
  } else {
    if (inspected.memory_bytes != 0) {
      EXPECT_EQ(inspected.memory_bytes, request.memory_bytes) << "inspect(\"" << status.id << "\").memory_bytes";
    }
    if (inspected.cpus != 0) {
      EXPECT_NEAR(inspected.cpus, request.cpus, 1e-3) << "inspect(\"" << status.id << "\").cpus";
    }
    if (inspected.pids_limit != 0) {
      EXPECT_EQ(inspected.pids_limit, request.pids_limit) << "inspect(\"" << status.id << "\").pids_limit";
    }
  }
  RecordProperty("limits_reported", std::to_string(inspected.memory_bytes != 0) + std::to_string(inspected.cpus != 0) +
                                        std::to_string(inspected.pids_limit != 0));
  EXPECT_EQ(to_string(inspected.state), to_string(WorkloadState::running))
      << "a workload within its limits runs: " << status.id << " (" << inspected.message << ")";
}

TEST_F(OrchestratorKit, OneShotExitCodes) {
  for (int code : {3, 0}) {
    auto request = spec("oneshot", "exit " + std::to_string(code));
    request.one_shot = true;
    auto status = spawn(request);
    ASSERT_FALSE(status.id.empty());
    WaitResult waited;
    ASSERT_NO_THROW(waited = orchestrator_->wait(status.id, 30s)) << "wait(\"" << status.id << "\")";
    EXPECT_TRUE(waited.exited) << "one-shot workload " << status.id << " (`exit " << code << "`) did not exit within 30 s";
    EXPECT_EQ(show(waited.exit_code), std::to_string(code))
        << "wait(\"" << status.id << "\") lost the exit code of `exit " << code << "`";
    auto inspected = orchestrator_->inspect(status.id);
    EXPECT_EQ(to_string(inspected.state), to_string(WorkloadState::exited)) << "inspect(\"" << status.id << "\") after it exited";
    EXPECT_EQ(show(inspected.exit_code), std::to_string(code))
        << "inspect(\"" << status.id << "\") lost the exit code of `exit " << code << "`";
  }
}

// The hardening every kit spec asks for is applied, or the backend declares in
// health().info["not_isolated"] that it cannot apply it: never silently ignored. The workload
// looks at itself (/proc/self/status, /proc/self/mounts) and reports by its exit code, one bit
// per promise, so backends without logs are held to it too.
TEST_F(OrchestratorKit, HardeningIsAppliedOrDeclared) {
  std::set<std::string> declared;
  auto info = orchestrator_->health().info;
  if (info.contains("not_isolated") && info["not_isolated"].is_array())
    for (const auto& field : info["not_isolated"])
      if (field.is_string()) declared.insert(field.get<std::string>());
  auto request = spec("hardening", R"sh(s=/proc/self/status; c=0
[ "$(/bin/busybox awk '/^Uid:/{print $2 $3}' $s)" = 6553465534 ] || c=$((c|1))
[ "$(/bin/busybox awk '/^Gid:/{print $2 $3}' $s)" = 6553465534 ] || c=$((c|1))
/bin/busybox grep -q '^NoNewPrivs:[[:space:]]*1$' $s || c=$((c|2))
/bin/busybox grep -q '^CapEff:[[:space:]]*0*$' $s || c=$((c|4))
/bin/busybox grep -q '^CapBnd:[[:space:]]*0*$' $s || c=$((c|4))
/bin/busybox awk '$2 == "/" { o = $4 } END { exit !(o ~ /^ro(,|$)/) }' /proc/self/mounts || c=$((c|8))
exit $c)sh");
  std::string id;
  auto exited = exit_code_of(request, id);
  ASSERT_TRUE(exited);
  int code = *exited;
  ASSERT_LT(code, 16) << id << " exited " << code << ": the check itself did not run (is /bin/busybox in the image?)";
  struct Promise {
    int bit;
    const char* field;
    const char* what;
  };
  for (auto [bit, field, what] : {Promise{1, "user", "spec.user 65534:65534 (real and effective uid and gid)"},
                                  Promise{2, "no_new_privileges", "spec.no_new_privileges (NoNewPrivs: 1)"},
                                  Promise{4, "drop_capabilities", "spec.drop_all_capabilities (CapEff and CapBnd empty)"},
                                  Promise{8, "read_only_root", "spec.read_only_root (/ mounted ro)"}}) {
    RecordProperty(field, (code & bit) ? (declared.contains(field) ? "declared not applied" : "IGNORED") : "applied");
    EXPECT_TRUE(!(code & bit) || declared.contains(field))
        << what << " was not applied to " << id << ", and health().info[\"not_isolated\"] does not declare \""
        << field << "\": apply it, or declare that this backend cannot (never ignore it silently)";
  }
}

// A memory limit is enforced: a workload that allocates well past it is killed (a cgroup's OOM
// kill) or refused the memory (an address-space limit), unless the backend declares "memory" in
// health().info["not_isolated"]. The same workload first proves it can allocate a little.
TEST_F(OrchestratorKit, AMemoryLimitIsEnforced) {
  auto info = orchestrator_->health().info;
  if (info.contains("not_isolated") && info["not_isolated"].is_array())
    for (const auto& field : info["not_isolated"])
      if (field == "memory") GTEST_SKIP() << "health().info[\"not_isolated\"] declares memory";
  constexpr std::int64_t limit = 64 << 20;
  // A backend may round the limit up (health().info limits: rounded_up; Fly sizes guests in
  // 256 MiB steps): allocate four times the larger, at once, as one buffer.
  const std::int64_t big = 4 * std::max(limit, limits_rounded_up_ ? std::int64_t{256} << 20 : limit);
  auto probe = spec("memory", "/bin/busybox dd if=/dev/zero of=/dev/null bs=1048576 count=4 2>/dev/null || exit 100; "
                              "exec /bin/busybox dd if=/dev/zero of=/dev/null bs=" + std::to_string(big) + " count=1");
  probe.memory_bytes = limit;
  std::string id;
  auto exited = exit_code_of(probe, id);
  ASSERT_TRUE(exited);
  ASSERT_NE(*exited, 100) << id << " could not allocate 4 MiB under a limit of 64 MiB";
  EXPECT_NE(*exited, 0) << id << " allocated " << (big >> 20)
                                  << " MiB at once under a memory limit of 64 MiB and ran to completion: the limit "
                                     "is not enforced; enforce it, or declare \"memory\" in "
                                     "health().info[\"not_isolated\"]";
  RecordProperty("exit_code", std::to_string(*exited));
}

// spec.env reaches the workload as given, spaces and '=' included: the workload checks it itself
// and says so by its exit code, so backends without logs are held to it too.
TEST_F(OrchestratorKit, SpecEnvReachesTheWorkload) {
  auto request = spec("env", R"sh([ "$KIT_PLAIN" = "kit-value-42" ] || exit 5; [ "$KIT_SPACED" = "a b=c; d" ] || exit 6; exit 0)sh");
  request.env = {{"KIT_PLAIN", "kit-value-42"}, {"KIT_SPACED", "a b=c; d"}};
  request.one_shot = true;
  auto status = spawn(request);
  ASSERT_FALSE(status.id.empty());
  WaitResult waited;
  ASSERT_NO_THROW(waited = orchestrator_->wait(status.id, 30s)) << "wait(\"" << status.id << "\")";
  ASSERT_TRUE(waited.exited) << status.id << " did not exit within 30 s";
  EXPECT_EQ(show(waited.exit_code), "0")
      << "spec.env did not reach the workload as given (exit 5: KIT_PLAIN, exit 6: KIT_SPACED, a value with a "
         "space, '=' and ';')";
}

// The contract's answer on names: a spec.name already in use is OrchestratorError(conflict), or a
// second workload of its own (a derived name); never the first one handed back, never another error.
TEST_F(OrchestratorKit, ANameInUseIsAConflictOrASecondWorkload) {
  auto first_spec = spec("samename", "exec /bin/busybox sleep 300");
  auto first = spawn(first_spec);
  ASSERT_FALSE(first.id.empty());
  auto again = spec("samename", "exec /bin/busybox sleep 300");
  again.name = first_spec.name;
  Outcome outcome;
  auto orchestrator = orchestrator_;
  auto second = std::make_shared<WorkloadStatus>();
  ASSERT_TRUE(finishes_within(call_limit, [orchestrator, again, second] { *second = orchestrator->spawn(again); }, &outcome))
      << "spawn(" << again.name << ") a second time did not return within " << call_limit.count() << " s";
  if (outcome.threw) {
    EXPECT_TRUE(outcome.orchestrator_error && outcome.code == OrchestratorErrc::conflict)
        << "spawn(" << again.name << ") with a name in use " << outcome.description
        << "; the contract: OrchestratorError(conflict), or a workload of its own";
    return;
  }
  if (second->id != first.id) remember(second->id);  // removed with the rest
  EXPECT_NE(second->id, first.id) << "spawn(" << again.name << ") with a name in use handed back the first workload";
  EXPECT_NO_THROW(orchestrator_->inspect(first.id)) << "the first workload is gone after a second spawn of its name";
  EXPECT_NO_THROW(orchestrator_->inspect(second->id));
}

// The contract's answer on stop(): it returns once the workload has exited (after its grace,
// killed if need be), so a caller may remove it or reuse its resources at once.
TEST_F(OrchestratorKit, StopReturnsOnceTheWorkloadHasExited) {
  auto status = spawn(spec("stopblocks", "trap '/bin/busybox sleep 1; exit 0' TERM; "
                                         "while :; do /bin/busybox sleep 1; done"));
  ASSERT_FALSE(status.id.empty());
  ASSERT_NO_THROW(orchestrator_->stop(status.id, grace)) << "stop(\"" << status.id << "\")";
  WorkloadStatus inspected;
  ASSERT_NO_THROW(inspected = orchestrator_->inspect(status.id)) << "inspect(\"" << status.id << "\") after stop()";
  EXPECT_EQ(to_string(inspected.state), to_string(WorkloadState::exited))
      << "stop(\"" << status.id << "\") returned while the workload was still " << to_string(inspected.state)
      << ": stop() must return once it has exited";
}

TEST_F(OrchestratorKit, WaitTimesOut) {
  auto status = spawn(spec("waittimeout", "exec /bin/busybox sleep 30"));
  ASSERT_FALSE(status.id.empty());
  auto started = Clock::now();
  WaitResult waited;
  ASSERT_NO_THROW(waited = orchestrator_->wait(status.id, 500ms)) << "wait(\"" << status.id << "\", 500 ms)";
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  EXPECT_FALSE(waited.exited) << "wait(\"" << status.id << "\", 500 ms) on a `sleep 30` workload reported it exited (code "
                              << show(waited.exit_code) << ")";
  EXPECT_GE(took.count(), 400) << "wait(\"" << status.id << "\", 500 ms) returned early";
  EXPECT_LE(took.count(), 5500) << "wait(\"" << status.id << "\", 500 ms) took far longer than its timeout";
}

// A backend's logs follow a workload until it exits.
TEST_F(OrchestratorKit, FollowEndsWhenTheWorkloadExits) {
  if (logs_unsupported_) GTEST_SKIP() << "health().info says logs: unsupported (SpawnServeLogStopWaitRemove checks that logs() says so)";
  auto request = spec("followexit", "echo kit-follow-1; sleep 1; echo kit-follow-2; exit 0");
  request.one_shot = true;
  auto status = spawn(request);
  ASSERT_FALSE(status.id.empty());
  auto capture = std::make_shared<LogCapture>();
  auto orchestrator = orchestrator_;
  auto id = status.id;
  Outcome outcome;
  bool returned = finishes_within(ready_limit + 20s, [orchestrator, id, capture] {
    orchestrator->logs(id, {0, true, {}}, [capture](LogStream stream, std::string_view line) {
      capture->add(stream, line);
      return true;
    });
  }, &outcome);
  ASSERT_TRUE(returned) << "logs(\"" << id << "\", follow=true) did not return after the workload exited; it had delivered:\n"
                        << capture->dump();
  EXPECT_FALSE(outcome.threw) << "logs(\"" << id << "\", follow=true) " << outcome.description;
  EXPECT_TRUE(capture->stream_of("kit-follow-1") && capture->stream_of("kit-follow-2"))
      << "logs(\"" << id << "\", follow=true) should deliver every line up to the exit; saw:\n"
      << capture->dump();
}

// The contract's answer on tail with follow: the last `tail` lines written so far, then every new
// line until the workload exits.
TEST_F(OrchestratorKit, TailWithFollowGivesTheLastLinesThenTheNewOnes) {
  if (logs_unsupported_) GTEST_SKIP() << "health().info says logs: unsupported (SpawnServeLogStopWaitRemove checks that logs() says so)";
  auto request = spec("tailfollow", "for n in 1 2 3 4 5; do echo kit-tail-$n; done; /bin/busybox sleep 3; "
                                    "echo kit-tail-after; exit 0");
  request.one_shot = true;
  auto status = spawn(request);
  ASSERT_FALSE(status.id.empty());
  auto orchestrator = orchestrator_;
  auto id = status.id;
  // Once the first five are written (and before the last one is), follow with tail 2.
  bool written = false;
  for (auto end = Clock::now() + ready_limit; !written && Clock::now() < end; std::this_thread::sleep_for(100ms)) {
    auto so_far = std::make_shared<LogCapture>();
    finishes_within(ready_limit, [orchestrator, id, so_far] {
      orchestrator->logs(id, {0, false, {}}, [so_far](LogStream stream, std::string_view line) {
        so_far->add(stream, line);
        return true;
      });
    });
    written = so_far->stream_of("kit-tail-5").has_value();
  }
  ASSERT_TRUE(written) << "logs(\"" << id << "\") never showed the first five lines";
  auto capture = std::make_shared<LogCapture>();
  Outcome outcome;
  ASSERT_TRUE(finishes_within(ready_limit + 20s, [orchestrator, id, capture] {
    orchestrator->logs(id, {2, true, {}}, [capture](LogStream stream, std::string_view line) {
      capture->add(stream, line);
      return true;
    });
  }, &outcome)) << "logs(\"" << id << "\", tail=2, follow=true) did not return after the workload exited";
  EXPECT_FALSE(outcome.threw) << outcome.description;
  std::vector<std::string> seen;
  {
    std::lock_guard lock(capture->mutex);
    for (const auto& [stream, line] : capture->lines) seen.push_back(line);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"kit-tail-4", "kit-tail-5", "kit-tail-after"}))
      << "logs(\"" << id << "\", tail=2, follow=true) delivered:\n" << capture->dump();
}

TEST_F(OrchestratorKit, FollowHonoursItsStopToken) {
  if (logs_unsupported_) GTEST_SKIP() << "health().info says logs: unsupported (SpawnServeLogStopWaitRemove checks that logs() says so)";
  auto status = spawn(spec("followstop", "echo kit-follow-ready; exec /bin/busybox sleep 300"));
  ASSERT_FALSE(status.id.empty());
  auto capture = std::make_shared<LogCapture>();
  std::stop_source stop;
  auto orchestrator = orchestrator_;
  auto id = status.id;
  auto done = std::make_shared<std::promise<Outcome>>();
  auto result = done->get_future();
  std::thread follower([done, orchestrator, id, capture, token = stop.get_token()] {
    done->set_value(outcome_of([&] {
      orchestrator->logs(id, {0, true, token}, [capture](LogStream stream, std::string_view line) {
        capture->add(stream, line);
        return true;
      });
    }));
  });
  {
    std::unique_lock lock(capture->mutex);
    capture->changed.wait_for(lock, ready_limit, [&] { return !capture->lines.empty(); });
  }
  // The token is triggered while the stream is open and silent (the workload sleeps): a follow
  // that looks at its token only when lines arrive is then blocked waiting for the next line and
  // fails the bound below, however busy the machine. Triggering it right after the first line
  // would let such a follow notice it on its way out of that batch, and pass by luck.
  if (result.wait_for(1500ms) == std::future_status::ready) {
    follower.join();
    ADD_FAILURE() << "logs(\"" << id << "\", follow=true) returned while the workload still runs: "
                  << result.get().description;
    return;
  }
  auto asked = Clock::now();
  stop.request_stop();
  if (result.wait_for(5s) != std::future_status::ready) {
    follower.detach();
    ADD_FAILURE() << "logs(\"" << id << "\", follow=true) did not return within 5 s of its stop_token being triggered";
    return;
  }
  follower.join();
  auto outcome = result.get();
  EXPECT_FALSE(outcome.threw) << "logs(\"" << id << "\", follow=true) stopped by its token " << outcome.description;
  RecordProperty("follow_stop_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked).count()));
  EXPECT_TRUE(capture->stream_of("kit-follow-ready")) << "logs(\"" << id << "\", follow=true) delivered:\n" << capture->dump();
}

TEST_F(OrchestratorKit, UnknownIdsAreNotFound) {
  auto id = "synthorg-kit-missing-" + random_hex(12);
  auto o = orchestrator_;
  auto quoted = "(\"" + id + "\")";
  expect_error(OrchestratorErrc::not_found, "inspect" + quoted, [o, id] { o->inspect(id); });
  expect_error(OrchestratorErrc::not_found, "stop" + quoted, [o, id] { o->stop(id, grace); });
  expect_error(OrchestratorErrc::not_found, "wait" + quoted, [o, id] { o->wait(id, 100ms); });
  auto read = [o, id] { o->logs(id, {10, false, {}}, [](LogStream, std::string_view) { return true; }); };
  if (logs_unsupported_) {
    auto outcome = outcome_of(read);
    EXPECT_TRUE(outcome.orchestrator_error &&
                (outcome.code == OrchestratorErrc::not_found || outcome.code == OrchestratorErrc::failed))
        << "logs" << quoted << " should throw OrchestratorError(not_found or, logs being unsupported, failed); it "
        << outcome.description;
  } else {
    expect_error(OrchestratorErrc::not_found, "logs" + quoted, read);
  }
  expect_error(OrchestratorErrc::not_found, "endpoint" + quoted, [o, id] { o->endpoint(id, http_port); });
  // The contract: removing one already gone is a no-op, and an id never seen is as gone as one
  // removed (a backend cannot tell them apart).
  Outcome removed;
  ASSERT_TRUE(finishes_within(call_limit, [o, id] { o->remove(id); }, &removed)) << "remove" << quoted << " hung";
  EXPECT_FALSE(removed.threw) << "remove" << quoted << " of an unknown id is a no-op; it " << removed.description;
}

TEST_F(OrchestratorKit, InvalidSpecsAreRefusedAndCreateNothing) {
  struct Case {
    std::string what;
    std::function<void(WorkloadSpec&)> spoil;
  };
  std::vector<Case> cases = {
      {"an empty image", [](WorkloadSpec& s) { s.image.clear(); }},
      {"a bad label key", [](WorkloadSpec& s) { s.labels["bad key!"] = "x"; }},
      {"negative memory", [](WorkloadSpec& s) { s.memory_bytes = -1; }},
      {"a relative mount target", [](WorkloadSpec& s) { s.mounts = {BindMount{"/tmp", "relative/target", true}}; }},
  };
  for (const auto& c : cases) {
    auto request = spec("invalid", "exec /bin/busybox sleep 300");
    c.spoil(request);
    auto o = orchestrator_;
    Outcome outcome;
    auto made = std::make_shared<WorkloadStatus>();
    ASSERT_TRUE(finishes_within(call_limit, [o, request, made] { *made = o->spawn(request); }, &outcome))
        << "spawn with " << c.what << " hung";
    if (!outcome.threw && !made->id.empty()) remember(made->id);
    EXPECT_TRUE(outcome.orchestrator_error && outcome.code == OrchestratorErrc::invalid_spec)
        << "spawn with " << c.what << " should throw OrchestratorError(invalid_spec); it " << outcome.description;
  }
  std::set<std::string> left;
  for (const auto& status : orchestrator_->list(case_labels("invalid"))) left.insert(status.id);
  EXPECT_TRUE(left.empty()) << "refused specs must create nothing; list() shows " << show(left);
}

TEST_F(OrchestratorKit, EndpointOfAnUnrequestedPortIsInvalid) {
  auto request = spec("ports", "exec /bin/busybox sleep 300");
  request.ports = {PortRequest{http_port}};
  auto status = spawn(request);
  ASSERT_FALSE(status.id.empty());
  auto o = orchestrator_;
  auto id = status.id;
  expect_error(OrchestratorErrc::invalid_spec, "endpoint(\"" + id + "\", 9999) (port 9999 was not requested)",
               [o, id] { o->endpoint(id, 9999); });
}

TEST_F(OrchestratorKit, ConcurrentSpawns) {
  constexpr int threads = 8;
  std::vector<std::optional<WorkloadStatus>> results(threads);
  std::vector<std::string> failures(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      auto request = spec("concurrent", "exec /bin/busybox sleep 300");
      request.name.clear();  // the name is optional: the backend derives a unique one
      ++ready;
      while (ready.load() < threads) std::this_thread::yield();  // all at once
      auto outcome = outcome_of([&] { results[t] = orchestrator_->spawn(request); });
      if (results[t] && !results[t]->id.empty()) remember(results[t]->id);
      if (outcome.threw) failures[t] = outcome.description;
    });
  for (auto& worker : workers) worker.join();
  std::set<std::string> ids;
  for (int t = 0; t < threads; ++t) {
    EXPECT_TRUE(failures[t].empty()) << "concurrent spawn #" << t << " " << failures[t];
    if (results[t]) ids.insert(results[t]->id);
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(threads)) << "concurrent spawns should return distinct ids; got " << show(ids);
  std::set<std::string> listed;
  for (const auto& status : orchestrator_->list(case_labels("concurrent"))) listed.insert(status.id);
  EXPECT_EQ(show(listed), show(ids)) << "list() after the concurrent spawns";
  for (const auto& id : ids) EXPECT_NO_THROW(orchestrator_->remove(id)) << "remove(\"" << id << "\")";
  for (const auto& id : ids) {
    std::string seen;
    EXPECT_TRUE(await_gone(id, case_labels("concurrent"), seen)) << "after remove(\"" << id << "\"): " << seen;
  }
}

// The contract's answer on health: beside its Orchestrator a plugin registers a HealthCheck named
// "orchestrator.<backend()>" (orchestrator::health_check), which /readyz and /health/detailed show.
TEST_F(OrchestratorKit, AHealthCheckIsNamedAfterTheBackend) {
  auto expected = "orchestrator." + orchestrator_->backend();
  std::string registered;
  bool found = false;
  for (const auto& check : host_->registry().all<HealthCheck>()) {
    registered += (registered.empty() ? "" : ", ") + check->name();
    found = found || check->name() == expected;
  }
  EXPECT_TRUE(found) << "the plugin registered no HealthCheck named " << expected << " (registered: "
                     << (registered.empty() ? "none" : registered)
                     << "); register orchestrator::health_check(backend) beside the Orchestrator";
}

// The contract's answer on capacity: a backend that declares health().info["max_workloads"]
// counts every workload it holds, running or exited, until remove(); past it, spawn() is
// OrchestratorError(capacity), and a remove() makes room again.
TEST_F(OrchestratorKit, ExitedWorkloadsCountTowardCapacityUntilRemoved) {
  auto info = orchestrator_->health().info;
  if (!info.contains("max_workloads") || !info["max_workloads"].is_number_unsigned())
    GTEST_SKIP() << "health().info declares no max_workloads: the backend's capacity is not its own to count";
  auto max = info["max_workloads"].get<std::size_t>();
  auto held = orchestrator_->list({}).size();
  if (max > 64 || held >= max)
    GTEST_SKIP() << "max_workloads " << max << " with " << held << " held: run the kit with a limit of 64 or less";
  std::vector<std::string> ids;
  for (std::size_t i = held; i < max; ++i) {
    auto request = spec("capacity", "exit 0");
    request.one_shot = true;
    auto status = spawn(request);
    ASSERT_FALSE(status.id.empty()) << "spawn " << i + 1 << " of max_workloads " << max;
    ids.push_back(status.id);
  }
  for (const auto& id : ids) ASSERT_TRUE(orchestrator_->wait(id, 30s).exited) << id << " did not exit within 30 s";
  auto orchestrator = orchestrator_;
  auto one_more = spec("capacity", "exit 0");
  one_more.one_shot = true;
  auto extra = std::make_shared<WorkloadStatus>();
  Outcome outcome;
  ASSERT_TRUE(finishes_within(call_limit, [orchestrator, one_more, extra] { *extra = orchestrator->spawn(one_more); }, &outcome));
  if (!outcome.threw) remember(extra->id);
  EXPECT_TRUE(outcome.threw && outcome.orchestrator_error && outcome.code == OrchestratorErrc::capacity)
      << "spawn() with " << max << " exited workloads held (max_workloads " << max << ") " << outcome.description
      << "; exited workloads count until they are removed, so this must be OrchestratorError(capacity)";
  ASSERT_NO_THROW(orchestrator_->remove(ids.front()));
  auto after = spawn(one_more);
  EXPECT_FALSE(after.id.empty()) << "spawn() after a remove() made room";
}

// The contract's answer on leases: a caller may hold the Orchestrator after its plugin stopped
// (a request in flight, the workloads plugin's lease). Every call on it then throws
// OrchestratorError(unavailable), promptly: no crash, no hang, no work done on a stopped backend.
// The plugin then starts again with a working provider. Runs late: it restarts the plugin.
TEST_F(OrchestratorKit, ALeaseHeldAfterStopAnswersUnavailable) {
  auto lease = orchestrator_;
  auto name = instance_->name();
  within_limit("stop()", name, [] { instance_->stop(); });
  expect_error(OrchestratorErrc::unavailable, "list({}) on an Orchestrator held after its plugin stopped",
               [lease] { lease->list({}); });
  auto request = spec("afterstop", "exit 0");
  auto stray = std::make_shared<WorkloadStatus>();
  Outcome outcome;
  ASSERT_TRUE(finishes_within(call_limit, [lease, request, stray] { *stray = lease->spawn(request); }, &outcome))
      << "spawn() on an Orchestrator held after its plugin stopped did not return within " << call_limit.count() << " s";
  EXPECT_TRUE(outcome.threw && outcome.orchestrator_error && outcome.code == OrchestratorErrc::unavailable)
      << "spawn() on an Orchestrator held after its plugin stopped " << outcome.description
      << "; it should throw OrchestratorError(unavailable)";
  within_limit("start()", name, [] { instance_->start(); });
  orchestrator_ = marking_calls(host_->registry().get<Orchestrator>());
  ASSERT_TRUE(orchestrator_) << "after stop() and start() again, the plugin registered no Orchestrator";
  if (!outcome.threw && !stray->id.empty()) remember(stray->id);
  EXPECT_NO_THROW(orchestrator_->list({})) << "list({}) after the plugin started again";
}

// Defined last, so it runs last: every test above removed what it made.
TEST_F(OrchestratorKit, NothingIsLeftBehind) {
  Labels mine{{std::string(run_label), run_}};
  std::set<std::string> left;
  for (auto deadline = Clock::now() + ready_limit;;) {
    left.clear();
    for (const auto& status : orchestrator_->list(mine)) left.insert(status.id);
    if (left.empty() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(left.empty()) << "workloads labelled " << run_label << "=" << run_ << " outlived the kit: " << show(left);
}

class CrashCleanup final : public OrchestratorKit {
  void TestBody() override {}  // SetUpTestSuite removes the leftovers; this only brings it about
};

}  // namespace

void register_crash_cleanup() {
  ::testing::RegisterTest("OrchestratorKit", "CleanUpAfterACrash", nullptr, nullptr, __FILE__, __LINE__,
                          []() -> OrchestratorKit* { return new CrashCleanup; });
}

}  // namespace synthorg::conformance
