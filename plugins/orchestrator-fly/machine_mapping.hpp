// WorkloadSpec -> Fly CreateMachineRequest, and Fly Machine -> WorkloadStatus. Pure functions:
// what the API is asked for, and how its answers are read, with no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_fly {

struct MappingOptions {
  std::string region;             // empty: Fly picks (near the API's caller)
  std::string cpu_kind = "shared";  // shared or performance
  std::string gpu_kind;           // e.g. a10, l40s, a100-pcie-40gb; needed when a spec asks for GPUs
  std::string stop_signal = "SIGTERM";
};

inline constexpr std::int64_t mib = 1LL << 20;
// Fly sizes guest memory in steps of 256 MiB.
inline constexpr std::int64_t memory_step_mb = 256;

inline constexpr int max_cpus = 16;

// Memory for the guest in MiB: the spec's bytes rounded up to the next multiple of 256 MiB, and
// at least Fly's smallest size for the CPUs (256 MiB per shared CPU, 2048 MiB per performance
// CPU), so a workload never gets less than it asked for. 0 (no limit) gives that smallest size.
std::int64_t guest_memory_mb(std::int64_t memory_bytes, int cpus, const std::string& cpu_kind);
// Whole CPUs in Fly's sizes (1, 2, 4, 8, 16): the smallest that holds the spec's cpus, at least 1.
int guest_cpus(double cpus);

// A machine name from the spec's: lower case, [a-z0-9-], at most 63 characters; empty gives
// "synthorg-" and random hex.
std::string machine_name(const std::string& name);

// The CreateMachineRequest body. Throws invalid_spec (before any request) for what a Fly
// machine cannot be: bind mounts of host paths, read-only volumes, more than one volume,
// a named network, "all GPUs", labels in Fly's reserved fly_ namespace. The command goes to
// config.init.cmd; with a user it goes to the machine's one process (config.processes[0],
// which has `user` where init has none).
nlohmann::json create_request(const WorkloadSpec& spec, const MappingOptions& options);

// Whether the machine carries synthorg.managed=true in its metadata.
bool managed(const nlohmann::json& machine);

// The newest exit event's code (events[].request.exit_event, or .MonitorEvent.exit_event
// as flyd writes older ones); a missing exit_code is 0 (flyd omits zero), a signal without
// a code is 128+signal.
struct ExitInfo {
  int code = 0;
  bool oom_killed = false;
  std::string exited_at;  // RFC 3339
};
std::optional<ExitInfo> last_exit(const nlohmann::json& machine);

WorkloadState state_of(std::string_view fly_state);
// Reads a Machine as the API returns it (labels are its metadata without Fly's fly_* keys;
// memory and cpus from config.guest).
WorkloadStatus status_of(const nlohmann::json& machine);

}  // namespace synthorg::orchestrator_fly
