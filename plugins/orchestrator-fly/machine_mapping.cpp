#include "machine_mapping.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

namespace synthorg::orchestrator_fly {
namespace {

[[noreturn]] void refuse(const std::string& message) {
  throw OrchestratorError(OrchestratorErrc::invalid_spec, "invalid workload spec for Fly: " + message);
}

std::string rfc3339_from_ms(std::int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

const nlohmann::json& member(const nlohmann::json& object, const char* key) {
  static const nlohmann::json null;
  if (!object.is_object()) return null;
  auto it = object.find(key);
  return it == object.end() ? null : *it;
}

std::string text_of(const nlohmann::json& object, const char* key) {
  const auto& value = member(object, key);
  return value.is_string() ? value.get<std::string>() : std::string();
}

// The exit payload of one event, where flyd puts it.
const nlohmann::json& exit_payload(const nlohmann::json& event) {
  const auto& request = member(event, "request");
  const auto& monitor = member(member(request, "MonitorEvent"), "exit_event");
  if (monitor.is_object()) return monitor;
  return member(request, "exit_event");
}

}  // namespace

std::int64_t guest_memory_mb(std::int64_t memory_bytes, int cpus, const std::string& cpu_kind) {
  // Fly's smallest guest per CPU: shared-cpu-Nx starts at N x 256 MiB, performance-Nx at N x 2 GiB.
  std::int64_t smallest = (cpu_kind == "performance" ? 2048 : memory_step_mb) * std::max(cpus, 1);
  if (memory_bytes <= 0) return smallest;
  std::int64_t mb = (memory_bytes + mib - 1) / mib;
  return std::max(smallest, (mb + memory_step_mb - 1) / memory_step_mb * memory_step_mb);
}

int guest_cpus(double cpus) {
  // Fly sizes come in 1, 2, 4, 8 and 16 CPUs: the next one up from what was asked.
  int wanted = cpus <= 0 ? 1 : static_cast<int>(std::min(std::ceil(cpus), 1024.0));
  int size = 1;
  while (size < wanted) size *= 2;
  return size;
}

std::string machine_name(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    out += ok ? c : '-';
  }
  if (out.size() > 63) out.resize(63);
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (!out.empty()) return out;
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x%06x", random() & 0xffffff, random() & 0xffffff);
  return std::string("synthorg-") + suffix;
}

nlohmann::json create_request(const WorkloadSpec& spec, const MappingOptions& options) {
  orchestrator::check_spec(spec);
  if (!spec.network.empty())
    refuse("network '" + spec.network + "': Fly machines join their app's private network (6PN) and nothing else");
  if (spec.gpu.count < 0) refuse("gpu.count -1 (all GPUs): Fly needs an explicit count of GPUs");
  if (spec.gpu.count > 0) {
    if (!spec.gpu.driver.empty() && spec.gpu.driver != "nvidia")
      refuse("gpu.driver '" + spec.gpu.driver + "': Fly GPUs are NVIDIA GPUs");
    if (options.gpu_kind.empty())
      refuse("the spec asks for GPUs but plugins.orchestrator-fly.config.gpu_kind is empty; set it to a Fly GPU "
             "kind such as a10, l40s or a100-pcie-40gb");
  }
  for (const auto& [key, value] : spec.labels)
    if (key.starts_with("fly_")) refuse("label " + key + ": Fly reserves metadata keys that start with fly_");

  nlohmann::json config = {{"image", spec.image}};
  if (spec.user.empty()) {
    if (!spec.command.empty()) config["init"] = {{"cmd", spec.command}};
  } else {
    // init has no user; a machine process (config.processes, fly.MachineProcess) has one.
    nlohmann::json process = {{"user", spec.user}};
    if (!spec.command.empty()) process["cmd"] = spec.command;
    config["processes"] = nlohmann::json::array({process});
  }
  if (!spec.env.empty()) config["env"] = spec.env;
  // Fly machines have no labels: metadata (string to string) is where they go, and where
  // `GET /machines?metadata.{key}=value` filters.
  config["metadata"] = orchestrator::managed_labels(spec);

  int cpus = guest_cpus(spec.cpus);
  if (cpus > max_cpus)
    refuse("cpus " + std::to_string(spec.cpus) + ": the largest Fly machine has " + std::to_string(max_cpus) + " CPUs");
  nlohmann::json guest = {{"cpu_kind", options.cpu_kind},
                          {"cpus", cpus},
                          {"memory_mb", guest_memory_mb(spec.memory_bytes, cpus, options.cpu_kind)}};
  if (spec.gpu.count > 0) {
    guest["gpus"] = spec.gpu.count;
    guest["gpu_kind"] = options.gpu_kind;
  }
  config["guest"] = guest;
  // Workloads are stopped and removed by their owner; Fly never restarts or destroys them on
  // its own, so a finished one-shot keeps its exit code until remove().
  config["restart"] = {{"policy", "no"}};
  config["auto_destroy"] = false;
  config["stop_config"] = {{"signal", options.stop_signal}};

  if (!spec.ports.empty()) {
    auto services = nlohmann::json::array();
    // Declared so the machine's config records what may be reached; no public ports, and the
    // Fly proxy neither starts nor stops the machine.
    for (const auto& port : spec.ports)
      services.push_back({{"protocol", port.protocol},
                          {"internal_port", port.container_port},
                          {"autostart", false},
                          {"autostop", "off"}});
    config["services"] = services;
  }

  if (spec.mounts.size() > 1) refuse("a Fly machine can mount one volume; the spec has " + std::to_string(spec.mounts.size()));
  for (const auto& mount : spec.mounts) {
    if (mount.source.starts_with("/"))
      refuse("bind mount of the host path " + mount.source + " at " + mount.target +
             ": a Fly machine runs on Fly's hosts, not this one, and can mount only a Fly volume; give the "
             "volume's id (vol_...) as the source");
    if (mount.read_only)
      refuse("volume " + mount.source + " at " + mount.target +
             " is asked for read-only, but Fly mounts volumes read-write; set read_only=false to accept that");
    config["mounts"] = nlohmann::json::array({{{"volume", mount.source}, {"path", mount.target}}});
  }

  nlohmann::json request = {{"name", machine_name(spec.name)}, {"config", config}};
  if (!options.region.empty()) request["region"] = options.region;
  return request;
}

bool managed(const nlohmann::json& machine) {
  const auto& metadata = member(member(machine, "config"), "metadata");
  return text_of(metadata, std::string(orchestrator::managed_label).c_str()) == "true";
}

std::optional<ExitInfo> last_exit(const nlohmann::json& machine) {
  const auto& events = member(machine, "events");
  if (!events.is_array()) return std::nullopt;
  const nlohmann::json* newest = nullptr;
  std::int64_t newest_time = 0;
  // By timestamp, not by position: the order of the list is not part of the contract.
  for (const auto& event : events) {
    if (!exit_payload(event).is_object()) continue;
    const auto& time = member(event, "timestamp");
    std::int64_t at = time.is_number_integer() ? time.get<std::int64_t>() : 0;
    if (newest == nullptr || at > newest_time) newest = &event, newest_time = at;
  }
  if (newest == nullptr) return std::nullopt;
  const auto& payload = exit_payload(*newest);
  ExitInfo info;
  const auto& code = member(payload, "exit_code");
  const auto& signal = member(payload, "signal");
  if (code.is_number_integer())
    info.code = code.get<int>();
  else if (signal.is_number_integer() && signal.get<int>() > 0)
    info.code = 128 + signal.get<int>();
  const auto& oom = member(payload, "oom_killed");
  info.oom_killed = oom.is_boolean() && oom.get<bool>();
  info.exited_at = text_of(payload, "exited_at");
  if (info.exited_at.empty() || info.exited_at.starts_with("0001-")) info.exited_at = rfc3339_from_ms(newest_time);
  return info;
}

WorkloadState state_of(std::string_view fly_state) {
  if (fly_state == "created" || fly_state == "starting" || fly_state == "replacing") return WorkloadState::pending;
  if (fly_state == "started" || fly_state == "stopping" || fly_state == "suspending") return WorkloadState::running;
  if (fly_state == "stopped" || fly_state == "suspended" || fly_state == "failed" || fly_state == "destroying" ||
      fly_state == "destroyed")
    return WorkloadState::exited;
  return WorkloadState::unknown;
}

WorkloadStatus status_of(const nlohmann::json& machine) {
  WorkloadStatus status;
  status.id = text_of(machine, "id");
  status.name = text_of(machine, "name");
  const auto& config = member(machine, "config");
  status.image = text_of(config, "image");
  auto fly_state = text_of(machine, "state");
  status.state = state_of(fly_state);
  const auto& metadata = member(config, "metadata");
  if (metadata.is_object())
    for (const auto& [key, value] : metadata.items())
      if (!key.starts_with("fly_") && value.is_string()) status.labels[key] = value.get<std::string>();
  status.created_at = text_of(machine, "created_at");

  const auto& events = member(machine, "events");
  std::int64_t started = -1;
  if (events.is_array())
    for (const auto& event : events)
      if (text_of(event, "type") == "start" && member(event, "timestamp").is_number_integer())
        started = std::max(started, member(event, "timestamp").get<std::int64_t>());
  if (started >= 0) status.started_at = rfc3339_from_ms(started);

  if (status.state == WorkloadState::exited) {
    if (auto exit = last_exit(machine)) {
      status.exit_code = exit->code;
      status.finished_at = exit->exited_at;
      if (exit->oom_killed) status.message = "killed: out of memory";
    }
    if (fly_state == "failed" && status.message.empty())
      status.message = "Fly reports the machine failed (see `fly machine status " + status.id + "`)";
  }
  const auto& guest = member(config, "guest");
  const auto& memory = member(guest, "memory_mb");
  if (memory.is_number_integer()) status.memory_bytes = memory.get<std::int64_t>() * mib;
  const auto& cpus = member(guest, "cpus");
  if (cpus.is_number()) status.cpus = cpus.get<double>();
  return status;
}

}  // namespace synthorg::orchestrator_fly
