// Orchestrator: runs workloads (containers, pods, machines, processes) somewhere and reports on
// them. Workloads and fine-tune use it; third parties implement it for their own backends and
// prove it with `synthorg plugins check --kind orchestrator`.
//
// Every call may block (it talks to a daemon or an API server): call it from the blocking pool,
// never from an I/O thread. Every object a provider creates carries the label
// `synthorg.managed=true`; a provider refuses to touch objects without it. inspect, stop, wait,
// logs and endpoint throw not_found for an id the backend does not know or does not manage.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/services/health.hpp"

namespace synthorg {

enum class OrchestratorErrc {
  not_found,      // no such workload, or not one of ours (never managed by SynthOrg)
  image_missing,  // the image does not exist and could not be pulled
  capacity,       // the backend has no room (memory, quota, Fly insufficient_capacity...)
  unavailable,    // the backend cannot be reached, or answered 5xx: retry later
  invalid_spec,   // the spec (or an argument) is wrong: fix it before retrying
  conflict,       // the name is taken, or the object changed underneath
  failed,         // anything else the backend refused; the message carries its reason
};
std::string_view to_string(OrchestratorErrc code) noexcept;

class OrchestratorError : public std::runtime_error {
 public:
  OrchestratorError(OrchestratorErrc code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  OrchestratorErrc code() const noexcept { return code_; }

 private:
  OrchestratorErrc code_;
};

struct BindMount {
  std::string source;  // absolute path on the host (or a backend volume name)
  std::string target;  // absolute path in the workload
  bool read_only = true;
};

struct TmpfsMount {
  std::string target;                                   // absolute path in the workload
  std::string options = "rw,noexec,nosuid,nodev,size=64m";
};

struct PortRequest {
  std::uint16_t container_port = 0;
  std::string protocol = "tcp";
};

struct GpuRequest {
  int count = 0;  // 0: none; -1: every GPU the host has
  std::string driver;  // "" lets the backend choose ("nvidia")
};

struct WorkloadSpec {
  std::string name;  // optional; a backend-safe unique name is derived from it
  std::string image;
  std::vector<std::string> command;  // empty: the image's default
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;  // synthorg.managed=true is always added

  // 0 means "no limit" for each.
  std::int64_t memory_bytes = 0;
  double cpus = 0;
  std::int64_t pids_limit = 0;

  // Hardening: on unless a spec turns it off.
  bool read_only_root = true;
  bool drop_all_capabilities = true;
  bool no_new_privileges = true;
  std::string user;  // "uid[:gid]" or a name; empty keeps the image's

  std::vector<TmpfsMount> tmpfs;
  std::vector<BindMount> mounts;
  std::string network;  // empty: the backend's default
  // Reachable later through endpoint(). A backend that cannot give each workload a network
  // namespace of its own sets SYNTHORG_LISTEN_HOST in its environment to an address of that
  // workload's own (127.x.y.z): the workload listens there, and endpoint() returns it.
  std::vector<PortRequest> ports;
  GpuRequest gpu;
  bool one_shot = false;  // runs to completion, never restarted; its exit code is the result
};

enum class WorkloadState {
  pending,  // created, not running yet (pulling, scheduling)
  running,
  exited,   // stopped or finished; exit_code says how
  unknown,
};
std::string_view to_string(WorkloadState state) noexcept;

struct WorkloadStatus {
  std::string id;  // the backend's id: container id, pod name, machine id, pid-based id
  std::string name;
  std::string image;
  WorkloadState state = WorkloadState::unknown;
  std::optional<int> exit_code;
  std::map<std::string, std::string> labels;
  std::string created_at;  // RFC 3339 UTC when the backend reports it
  std::string started_at;
  std::string finished_at;
  std::string message;  // the backend's own words about a failure, if any
  // Limits as the backend reports them back (0 where it cannot say).
  std::int64_t memory_bytes = 0;
  double cpus = 0;
  std::int64_t pids_limit = 0;
};

struct WaitResult {
  bool exited = false;  // false: the timeout passed first
  std::optional<int> exit_code;
};

struct Endpoint {
  std::string host;  // reachable from the kernel: 127.0.0.1, a pod IP, a 6PN address
  std::uint16_t port = 0;
};

// A backend that cannot tell the streams apart reports every line as stdout_stream and says so
// with health().info["log_streams"] = "combined".
enum class LogStream { stdout_stream, stderr_stream };

struct LogOptions {
  std::size_t tail = 100;  // lines from the end; 0 means all
  bool follow = false;     // keep reading until the workload exits or `stop` is requested
  std::stop_token stop;
};

// One line without its newline; return false to stop reading.
using LogSink = std::function<bool(LogStream stream, std::string_view line)>;

struct OrchestratorHealth {
  bool up = false;
  std::string detail;  // why it is down and what to do; never a secret
  // backend, version, api_version... and what the backend cannot do, which callers (and the
  // conformance kit) respect:
  //   "log_streams": "combined"  every log line comes as stdout_stream
  //   "logs": "unsupported"      logs() throws failed, naming where the logs are instead
  //   "limits": "rounded_up"     inspect reports limits at least as large as requested
  //   "not_isolated": [...]      spec fields the backend cannot apply, of "user",
  //                              "read_only_root", "drop_capabilities", "no_new_privileges"
  //                              (and others it names); anything not listed is applied
  nlohmann::json info = nlohmann::json::object();
};

// The contract's answers, each held by a test of the orchestrator conformance kit:
//   - Calls arrive concurrently, from any thread (ConcurrentSpawns).
//   - stop() returns once the workload has exited (StopReturnsOnceTheWorkloadHasExited).
//   - A spec.name in use: conflict, or a workload of its own (ANameInUseIsAConflictOrASecondWorkload).
//   - logs() with tail and follow: the last lines, then the new ones; the stop token is honoured
//     while the stream is silent (TailWithFollow..., FollowHonoursItsStopToken).
//   - After the plugin stopped, a caller may still hold this object: every call then throws
//     unavailable, promptly (ALeaseHeldAfterStopAnswersUnavailable). Register a
//     orchestrator::ClosableOrchestrator and close() it in stop().
//   - Beside it the plugin registers a HealthCheck named "orchestrator.<backend()>"
//     (orchestrator::health_check; AHealthCheckIsNamedAfterTheBackend).
//   - Capacity: a backend that declares health().info["max_workloads"] counts every workload it
//     holds, running or exited, until remove(); past it spawn() throws capacity
//     (ExitedWorkloadsCountTowardCapacityUntilRemoved).
class Orchestrator {
 public:
  static constexpr std::string_view service_id = "synthorg.Orchestrator/1";
  virtual ~Orchestrator() = default;

  virtual std::string backend() const = 0;  // "docker", "kubernetes", "fly", "process"

  // Creates and starts a workload; returns once it is running (or, for a one-shot that ended
  // already, exited). Throws invalid_spec before touching the backend when the spec is wrong.
  // A spec.name already in use: throw conflict, or create a workload of its own under a derived
  // name (Docker does the first, the process and Kubernetes backends the second); never hand back
  // the existing one. spec.env reaches the workload exactly as given.
  virtual WorkloadStatus spawn(const WorkloadSpec& spec) = 0;
  virtual WorkloadStatus inspect(const std::string& id) = 0;
  // Managed workloads carrying every given label; exited ones included.
  virtual std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) = 0;
  // Asks the workload to stop, then kills it after `grace`, and returns once it has exited
  // (inspect() then says exited). Stopping an exited one is a no-op.
  virtual void stop(const std::string& id, std::chrono::seconds grace) = 0;
  // Removes it, killing it if it still runs. Removing one already gone is a no-op (an id the
  // backend never knew included: it cannot tell the two apart); one that exists but is not
  // managed is refused with not_found.
  virtual void remove(const std::string& id) = 0;
  virtual WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) = 0;
  // The last `tail` lines written so far (0: all), then, with `follow`, every new line until the
  // workload exits, the sink returns false, or the stop token is triggered (looked at while the
  // stream is silent too, not only when lines arrive).
  virtual void logs(const std::string& id, const LogOptions& options, const LogSink& sink) = 0;
  // Where the kernel reaches `container_port` of a running workload. Throws invalid_spec when
  // the port was not requested in the spec, and failed when the workload is not running.
  virtual Endpoint endpoint(const std::string& id, std::uint16_t container_port) = 0;
  virtual OrchestratorHealth health() = 0;
};

namespace orchestrator {

inline constexpr std::string_view managed_label = "synthorg.managed";

// Checks what every backend agrees on (image present, labels valid, limits non-negative, paths
// absolute, ports 1..65535, no duplicate targets); throws invalid_spec naming the field.
void check_spec(const WorkloadSpec& spec);
// Label keys: 1..63 characters, optionally prefixed by a DNS name and '/'; [A-Za-z0-9._-],
// starting and ending alphanumeric. Values: up to 63 of the same (Kubernetes' rule, the strictest).
bool valid_label_key(std::string_view key) noexcept;
bool valid_label_value(std::string_view value) noexcept;
// "512m", "1g", "64k", "1048576" → bytes; throws std::invalid_argument with the reason.
std::int64_t parse_memory(std::string_view text);
// The spec's labels plus synthorg.managed=true.
std::map<std::string, std::string> managed_labels(const WorkloadSpec& spec);

nlohmann::json to_json(const WorkloadStatus& status);

// What a plugin registers in place of its backend, so that a caller still holding a lease after
// the plugin stopped gets OrchestratorError(unavailable) from every call, never a backend torn
// down under it. The plugin calls close() in stop(), after dropping its registration.
class ClosableOrchestrator final : public Orchestrator {
 public:
  explicit ClosableOrchestrator(std::shared_ptr<Orchestrator> backend) : backend_(std::move(backend)) {}
  void close() noexcept { closed_.store(true); }

  std::string backend() const override { return backend_->backend(); }
  WorkloadStatus spawn(const WorkloadSpec& spec) override { return open().spawn(spec); }
  WorkloadStatus inspect(const std::string& id) override { return open().inspect(id); }
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override { return open().list(labels); }
  void stop(const std::string& id, std::chrono::seconds grace) override { open().stop(id, grace); }
  void remove(const std::string& id) override { open().remove(id); }
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override { return open().wait(id, timeout); }
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override {
    open().logs(id, options, sink);
  }
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override {
    return open().endpoint(id, container_port);
  }
  OrchestratorHealth health() override;

 private:
  Orchestrator& open();  // the backend, or throws unavailable once closed
  std::shared_ptr<Orchestrator> backend_;
  std::atomic<bool> closed_{false};
};

// The HealthCheck every orchestrator plugin registers beside its Orchestrator: named
// "orchestrator.<backend()>", reporting health() (up, detail, info). `critical`: whether
// /readyz waits for the backend (false for a fallback such as local processes).
std::shared_ptr<HealthCheck> health_check(std::shared_ptr<Orchestrator> backend, bool critical = true);

}  // namespace orchestrator
}  // namespace synthorg
