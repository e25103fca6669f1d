// Workloads: each signed-in user's own sandboxed container, provided by the workloads plugin.
// http-api reads the counters for /health/detailed (`containers`); the dashboard reads them too;
// the Flight SQL gateway acquires a caller's workload and relays their calls to its `grpc` port.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace synthorg {

struct WorkloadCounters {
  std::int64_t active = 0;         // running (or starting) right now
  std::int64_t total_spawned = 0;  // since this process started
  std::int64_t total_stopped = 0;  // idle, user, shutdown, failed or vanished, since start
};

// Where one named port of a running workload is reached.
struct WorkloadEndpoint {
  std::string workload_id;
  std::string host;
  std::uint16_t port = 0;
};

// Why a caller cannot have their workload now. `code` is stable: max_per_host (this host runs its
// limit), no_port (the workloads serve no port of that name), busy (the blocking pool is full),
// conflict (a start by another request or replica is under way), or the reason a start failed
// (failed, not_ready, image_not_found, ...; the same cool-down then applies). `detail` says what
// to do; `retry_after_seconds` is 0 when there is nothing to wait for.
class WorkloadUnavailable : public std::runtime_error {
 public:
  WorkloadUnavailable(std::string code, const std::string& detail, std::int64_t retry_after_seconds = 0)
      : std::runtime_error(detail), code_(std::move(code)), retry_after_(retry_after_seconds) {}
  const std::string& code() const noexcept { return code_; }
  std::int64_t retry_after_seconds() const noexcept { return retry_after_; }

 private:
  std::string code_;
  std::int64_t retry_after_;
};

class Workloads {
 public:
  static constexpr std::string_view service_id = "synthorg.Workloads/2";
  virtual ~Workloads() = default;

  // Cheap (atomics); any thread.
  virtual WorkloadCounters counters() const = 0;

  // The running workload of `owner` (a principal's subject) and where its port named `port`
  // ("http" or "grpc") is reached: started, and waited for until it answers (bounded by the
  // plugin's ready_timeout), when the owner has none. Marks it used now. The answer comes from the
  // Store's record, so a workload another kernel of the same deployment started is found too.
  // Blocks (Store, orchestrator): call it from the blocking pool. Throws WorkloadUnavailable.
  virtual WorkloadEndpoint acquire(const std::string& owner, std::string_view port) = 0;

  // Marks `workload_id` of `owner` used now, so that calls in progress keep it from the idle
  // reaper; false when this kernel does not know it as running (then acquire() again). Never
  // blocks (memory only).
  virtual bool touch(const std::string& workload_id, const std::string& owner) = 0;

  // The caller could not reach `workload_id`: its container is looked at now, and when it is gone
  // or exited the record says so (failed, reason exited) and a later acquire() starts another once
  // the failure cool-down has passed. Blocks (orchestrator): call it from the blocking pool.
  virtual void check_alive(const std::string& workload_id) = 0;

  // Takes one call from `owner`'s rate limit (workloads.requests_per_minute, burst_size): 0 when
  // taken, else the whole seconds until the next is allowed. Never blocks.
  virtual std::int64_t take_call(const std::string& owner) = 0;
};

}  // namespace synthorg
