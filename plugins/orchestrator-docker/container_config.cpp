#include "container_config.hpp"

#include <cmath>

namespace synthorg::orchestrator_docker {
namespace {

std::string port_key(const PortRequest& port) { return std::to_string(port.container_port) + "/" + port.protocol; }

// Docker reports "0001-01-01T00:00:00Z" for times that never happened.
std::string docker_time(const nlohmann::json& value) {
  if (!value.is_string()) return {};
  auto text = value.get<std::string>();
  return text.rfind("0001-01-01", 0) == 0 ? std::string() : text;
}

}  // namespace

nlohmann::json create_body(const WorkloadSpec& spec, const MappingOptions& options) {
  nlohmann::json env = nlohmann::json::array();
  for (const auto& [key, value] : spec.env) env.push_back(key + "=" + value);
  nlohmann::json exposed = nlohmann::json::object();
  nlohmann::json bindings = nlohmann::json::object();
  for (const auto& port : spec.ports) {
    exposed[port_key(port)] = nlohmann::json::object();
    // HostPort "" lets the engine pick a free port; endpoint() reads it back.
    bindings[port_key(port)] = nlohmann::json::array({{{"HostIp", options.publish_address}, {"HostPort", ""}}});
  }

  nlohmann::json host = {
      {"ReadonlyRootfs", spec.read_only_root},
      // Workloads are stopped and reaped by their owner; the engine never restarts them.
      {"RestartPolicy", {{"Name", "no"}}},
      {"PortBindings", bindings},
  };
  if (spec.memory_bytes > 0) {
    host["Memory"] = spec.memory_bytes;
    host["MemorySwap"] = spec.memory_bytes;  // no swap beyond the limit
  }
  if (spec.cpus > 0) host["NanoCpus"] = static_cast<std::int64_t>(std::llround(spec.cpus * 1e9));
  if (spec.pids_limit > 0) host["PidsLimit"] = spec.pids_limit;
  if (spec.drop_all_capabilities) host["CapDrop"] = {"ALL"};
  if (spec.no_new_privileges) host["SecurityOpt"] = {"no-new-privileges:true"};
  if (!spec.tmpfs.empty()) {
    nlohmann::json tmpfs = nlohmann::json::object();
    for (const auto& mount : spec.tmpfs) tmpfs[mount.target] = mount.options;
    host["Tmpfs"] = tmpfs;
  }
  if (!spec.mounts.empty()) {
    nlohmann::json mounts = nlohmann::json::array();
    for (const auto& mount : spec.mounts) {
      // An absolute source is a host path; anything else names a volume.
      bool bind = !mount.source.empty() && mount.source.front() == '/';
      mounts.push_back({{"Type", bind ? "bind" : "volume"},
                        {"Source", mount.source},
                        {"Target", mount.target},
                        {"ReadOnly", mount.read_only}});
    }
    host["Mounts"] = mounts;
  }
  if (!spec.network.empty()) host["NetworkMode"] = spec.network;
  if (spec.gpu.count != 0) {
    host["DeviceRequests"] = nlohmann::json::array(
        {{{"Driver", spec.gpu.driver}, {"Count", spec.gpu.count}, {"Capabilities", {{"gpu"}}}}});
  }

  nlohmann::json body = {
      {"Image", spec.image},
      {"Env", env},
      {"Labels", orchestrator::managed_labels(spec)},
      {"ExposedPorts", exposed},
      {"HostConfig", host},
      {"AttachStdin", false},
      {"AttachStdout", false},
      {"AttachStderr", false},
      {"Tty", false},  // logs stay multiplexed, so stdout and stderr can be told apart
      {"OpenStdin", false},
  };
  if (!spec.command.empty()) body["Cmd"] = spec.command;
  if (!spec.user.empty()) body["User"] = spec.user;
  return body;
}

bool is_managed(const nlohmann::json& labels) {
  if (!labels.is_object()) return false;
  auto found = labels.find(std::string(orchestrator::managed_label));
  return found != labels.end() && found->is_string() && *found == "true";
}

WorkloadStatus status_from_inspect(const nlohmann::json& inspect) {
  const auto& config = inspect.value("Config", nlohmann::json::object());
  const auto& labels = config.value("Labels", nlohmann::json::object());
  auto id = inspect.value("Id", std::string());
  if (!is_managed(labels))
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "container " + id.substr(0, 12) +
                                " is not managed by SynthOrg (it has no synthorg.managed=true label); refusing to touch it");
  WorkloadStatus status;
  status.id = id;
  status.name = inspect.value("Name", std::string());
  if (!status.name.empty() && status.name.front() == '/') status.name.erase(0, 1);
  status.image = config.value("Image", std::string());
  for (const auto& [key, value] : labels.items())
    if (value.is_string()) status.labels[key] = value.get<std::string>();
  status.created_at = docker_time(inspect.value("Created", nlohmann::json()));

  const auto& state = inspect.value("State", nlohmann::json::object());
  auto text = state.value("Status", std::string());
  if (text == "running" || text == "paused" || text == "restarting")
    status.state = WorkloadState::running;
  else if (text == "created")
    status.state = WorkloadState::pending;
  else if (text == "exited" || text == "dead" || text == "removing")
    status.state = WorkloadState::exited;
  if (status.state == WorkloadState::exited) status.exit_code = state.value("ExitCode", 0);
  status.started_at = docker_time(state.value("StartedAt", nlohmann::json()));
  status.finished_at = docker_time(state.value("FinishedAt", nlohmann::json()));
  status.message = state.value("Error", std::string());
  if (state.value("OOMKilled", false)) status.message = "killed: out of memory (the memory limit was reached)";

  const auto& host = inspect.value("HostConfig", nlohmann::json::object());
  status.memory_bytes = host.value("Memory", std::int64_t{0});
  status.cpus = static_cast<double>(host.value("NanoCpus", std::int64_t{0})) / 1e9;
  auto pids = host.value("PidsLimit", nlohmann::json());
  status.pids_limit = pids.is_number_integer() ? pids.get<std::int64_t>() : 0;
  if (status.pids_limit < 0) status.pids_limit = 0;
  return status;
}

}  // namespace synthorg::orchestrator_docker
