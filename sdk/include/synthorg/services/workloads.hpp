// Workloads: each signed-in user's own sandboxed container, provided by the workloads plugin.
// http-api reads the counters for /health/detailed (`containers`); the dashboard reads them too.
#pragma once

#include <cstdint>
#include <string_view>

namespace synthorg {

struct WorkloadCounters {
  std::int64_t active = 0;         // running (or starting) right now
  std::int64_t total_spawned = 0;  // since this process started
  std::int64_t total_stopped = 0;  // idle, user, shutdown, failed or vanished, since start
};

class Workloads {
 public:
  static constexpr std::string_view service_id = "synthorg.Workloads/1";
  virtual ~Workloads() = default;

  // Cheap (atomics); any thread.
  virtual WorkloadCounters counters() const = 0;
};

}  // namespace synthorg
