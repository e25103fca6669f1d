#include "pod_mapping.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "synthorg/crypto.hpp"

namespace synthorg::orchestrator_kubernetes {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& message) {
  throw OrchestratorError(OrchestratorErrc::invalid_spec, "invalid workload spec for Kubernetes: " + message);
}

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  return true;
}

std::int64_t parse_id(std::string_view text, const std::string& user) {
  std::int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!all_digits(text) || error != std::errc() || end != text.data() + text.size() || value > 2147483647)
    invalid("user '" + user + "': Kubernetes runs containers by numeric id; write uid[:gid], e.g. 65534:65534");
  return value;
}

// "rw,noexec,nosuid,nodev,size=64m" → size in bytes (0: none given) and read-only flag.
void tmpfs_options(const TmpfsMount& mount, std::int64_t& size, bool& read_only) {
  size = 0;
  read_only = false;
  std::string_view rest = mount.options;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    auto option = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (option == "ro") read_only = true;
    if (option.rfind("size=", 0) == 0) {
      auto value = option.substr(5);
      if (!value.empty() && value.back() == '%')
        invalid("tmpfs " + mount.target + ": size=" + std::string(value) +
                " is a share of memory, which Kubernetes cannot express; give a size such as 64m");
      try {
        size = orchestrator::parse_memory(value);
      } catch (const std::invalid_argument& error) {
        invalid("tmpfs " + mount.target + ": size: " + error.what());
      }
    }
  }
}

std::string gpu_resource(const GpuRequest& gpu) {
  if (gpu.driver.empty() || gpu.driver == "nvidia") return "nvidia.com/gpu";
  if (gpu.driver == "amd") return "amd.com/gpu";
  if (gpu.driver.find('/') != std::string::npos) return gpu.driver;  // an extended resource name as is
  invalid("gpu.driver '" + gpu.driver + "' has no Kubernetes resource name; use nvidia, amd, or the device "
          "plugin's resource name (vendor.com/gpu)");
}

const json* find_container(const json& list) {
  if (!list.is_array() || list.empty()) return nullptr;
  for (const auto& item : list)
    if (item.value("name", "") == container_name) return &item;
  return &list.front();
}

const json* main_container_status(const json& pod) {
  auto status = pod.find("status");
  if (status == pod.end() || !status->is_object()) return nullptr;
  auto statuses = status->find("containerStatuses");
  if (statuses == status->end()) return nullptr;
  return find_container(*statuses);
}

std::string text_of(const json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string reason_and_message(const json& object) {
  auto reason = text_of(object, "reason");
  auto message = text_of(object, "message");
  if (reason.empty()) return message;
  if (message.empty()) return reason;
  return reason + ": " + message;
}

}  // namespace

std::string sanitise_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    bool ok = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9');
    if (ok) {
      out.push_back(lower);
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
    if (out.size() >= 57) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? std::string("workload") : out;
}

std::string pod_name_for(std::string_view spec_name) {
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  auto random = crypto::random_bytes(5);
  std::string suffix;
  for (unsigned char byte : random) suffix.push_back(alphabet[byte % 36]);
  return sanitise_name(spec_name) + "-" + suffix;
}

std::string cpu_quantity(double cpus) {
  auto millicores = static_cast<std::int64_t>(std::ceil(cpus * 1000.0 - 1e-9));
  if (millicores < 1) millicores = 1;
  return std::to_string(millicores) + "m";
}

double parse_quantity(std::string_view text) {
  auto bad = [&]() -> double {
    throw std::invalid_argument("'" + std::string(text) + "' is not a Kubernetes quantity");
  };
  if (text.empty()) return bad();
  // The number: [+-]digits[.digits]
  std::size_t i = 0;
  if (text[i] == '+' || text[i] == '-') ++i;
  std::size_t digits_start = i;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == digits_start) return bad();
  double number = 0;
  try {
    number = std::stod(std::string(text.substr(0, i)));
  } catch (const std::exception&) {
    return bad();
  }
  auto suffix = text.substr(i);
  double factor = 1;
  if (suffix.empty()) {
    factor = 1;
  } else if (suffix == "Ki") {
    factor = 1024.0;
  } else if (suffix == "Mi") {
    factor = 1024.0 * 1024;
  } else if (suffix == "Gi") {
    factor = 1024.0 * 1024 * 1024;
  } else if (suffix == "Ti") {
    factor = std::pow(1024.0, 4);
  } else if (suffix == "Pi") {
    factor = std::pow(1024.0, 5);
  } else if (suffix == "Ei") {
    factor = std::pow(1024.0, 6);
  } else if (suffix == "n") {
    factor = 1e-9;
  } else if (suffix == "u") {
    factor = 1e-6;
  } else if (suffix == "m") {
    factor = 1e-3;
  } else if (suffix == "k") {
    factor = 1e3;
  } else if (suffix == "M") {
    factor = 1e6;
  } else if (suffix == "G") {
    factor = 1e9;
  } else if (suffix == "T") {
    factor = 1e12;
  } else if (suffix == "P") {
    factor = 1e15;
  } else if (suffix == "E") {
    factor = 1e18;
  } else if (suffix.front() == 'e' || suffix.front() == 'E') {
    int exponent = 0;
    auto exp_text = suffix.substr(1);
    if (!exp_text.empty() && exp_text.front() == '+') exp_text.remove_prefix(1);
    auto [end, error] = std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exponent);
    if (error != std::errc() || end != exp_text.data() + exp_text.size()) return bad();
    factor = std::pow(10.0, exponent);
  } else {
    return bad();
  }
  return number * factor;
}

json build_pod(const WorkloadSpec& spec, const std::string& pod_name, const PodOptions& options) {
  json container = {{"name", container_name}, {"image", spec.image}, {"imagePullPolicy", options.image_pull_policy}};
  // `args` replaces the image's CMD and keeps its ENTRYPOINT: what `docker run image cmd...` does.
  if (!spec.command.empty()) container["args"] = spec.command;
  if (!spec.env.empty()) {
    json env = json::array();
    for (const auto& [name, value] : spec.env) env.push_back({{"name", name}, {"value", value}});
    container["env"] = std::move(env);
  }
  if (!spec.ports.empty()) {
    json ports = json::array();
    for (const auto& port : spec.ports)
      ports.push_back({{"containerPort", port.container_port}, {"protocol", port.protocol == "udp" ? "UDP" : "TCP"}});
    container["ports"] = std::move(ports);
  }

  // Requests equal to limits: the scheduler reserves what the workload may use (Guaranteed QoS).
  json limits = json::object();
  if (spec.memory_bytes > 0) limits["memory"] = std::to_string(spec.memory_bytes);
  if (spec.cpus > 0) limits["cpu"] = cpu_quantity(spec.cpus);
  if (spec.gpu.count == -1)
    invalid("gpu.count -1 (every GPU of the host) has no meaning on Kubernetes; request a number of GPUs");
  if (spec.gpu.count > 0) limits[gpu_resource(spec.gpu)] = std::to_string(spec.gpu.count);
  if (!limits.empty()) container["resources"] = {{"limits", limits}, {"requests", limits}};

  json security = {{"readOnlyRootFilesystem", spec.read_only_root},
                   {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (spec.no_new_privileges) security["allowPrivilegeEscalation"] = false;
  if (spec.drop_all_capabilities) security["capabilities"] = {{"drop", json::array({"ALL"})}};
  if (!spec.user.empty()) {
    auto colon = spec.user.find(':');
    auto uid = parse_id(std::string_view(spec.user).substr(0, colon), spec.user);
    security["runAsUser"] = uid;
    if (colon != std::string::npos) security["runAsGroup"] = parse_id(std::string_view(spec.user).substr(colon + 1), spec.user);
    if (uid != 0) security["runAsNonRoot"] = true;
  }
  container["securityContext"] = std::move(security);

  json volumes = json::array();
  json mounts = json::array();
  for (std::size_t i = 0; i < spec.tmpfs.size(); ++i) {
    const auto& tmpfs = spec.tmpfs[i];
    std::int64_t size = 0;
    bool read_only = false;
    tmpfs_options(tmpfs, size, read_only);
    json empty_dir = {{"medium", "Memory"}};
    if (size > 0) empty_dir["sizeLimit"] = std::to_string(size);
    auto name = "tmpfs-" + std::to_string(i);
    volumes.push_back({{"name", name}, {"emptyDir", empty_dir}});
    json mount = {{"name", name}, {"mountPath", tmpfs.target}};
    if (read_only) mount["readOnly"] = true;
    mounts.push_back(std::move(mount));
  }
  for (std::size_t i = 0; i < spec.mounts.size(); ++i) {
    const auto& bind = spec.mounts[i];
    auto name = "mount-" + std::to_string(i);
    // An absolute source is a path on the node; anything else names a PersistentVolumeClaim.
    if (!bind.source.empty() && bind.source.front() == '/') {
      volumes.push_back({{"name", name}, {"hostPath", {{"path", bind.source}}}});
    } else {
      json claim = {{"claimName", bind.source}};
      if (bind.read_only) claim["readOnly"] = true;
      volumes.push_back({{"name", name}, {"persistentVolumeClaim", claim}});
    }
    mounts.push_back({{"name", name}, {"mountPath", bind.target}, {"readOnly", bind.read_only}});
  }
  if (!mounts.empty()) container["volumeMounts"] = std::move(mounts);

  json pod_spec = {
      {"containers", json::array({container})},
      // Never: every exit is seen, with its code, exactly once (see docs/orchestrators.md).
      {"restartPolicy", "Never"},
      // A user's workload gets no API credentials and no service environment variables.
      {"automountServiceAccountToken", false},
      {"enableServiceLinks", false},
  };
  if (!volumes.empty()) pod_spec["volumes"] = std::move(volumes);
  if (spec.network == "host") {
    pod_spec["hostNetwork"] = true;
  } else if (spec.network == "none") {
    invalid("network 'none': a Kubernetes pod always joins the cluster's pod network; isolate it with a "
            "NetworkPolicy selecting its labels instead");
  }

  json labels = json::object();
  for (const auto& [key, value] : orchestrator::managed_labels(spec)) labels[key] = value;
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", pod_name}, {"labels", labels}}},
          {"spec", std::move(pod_spec)}};
}

bool is_managed(const json& pod) {
  auto metadata = pod.find("metadata");
  if (metadata == pod.end()) return false;
  auto labels = metadata->find("labels");
  if (labels == metadata->end() || !labels->is_object()) return false;
  auto managed = labels->find(std::string(orchestrator::managed_label));
  return managed != labels->end() && managed->is_string() && managed->get<std::string>() == "true";
}

WorkloadStatus to_status(const json& pod) {
  WorkloadStatus status;
  const json empty = json::object();
  const auto& metadata = pod.contains("metadata") ? pod["metadata"] : empty;
  const auto& spec = pod.contains("spec") ? pod["spec"] : empty;
  const auto& pod_status = pod.contains("status") && pod["status"].is_object() ? pod["status"] : empty;
  status.id = text_of(metadata, "name");
  status.name = status.id;
  status.created_at = text_of(metadata, "creationTimestamp");
  if (auto labels = metadata.find("labels"); labels != metadata.end() && labels->is_object())
    for (const auto& [key, value] : labels->items())
      if (value.is_string()) status.labels[key] = value.get<std::string>();

  if (auto containers = spec.find("containers"); containers != spec.end())
    if (const json* container = find_container(*containers)) {
      status.image = text_of(*container, "image");
      if (auto resources = container->find("resources"); resources != container->end())
        if (auto limits = resources->find("limits"); limits != resources->end() && limits->is_object()) {
          try {
            if (auto memory = limits->find("memory"); memory != limits->end() && memory->is_string())
              status.memory_bytes = static_cast<std::int64_t>(std::llround(parse_quantity(memory->get<std::string>())));
            if (auto cpu = limits->find("cpu"); cpu != limits->end() && cpu->is_string())
              status.cpus = parse_quantity(cpu->get<std::string>());
          } catch (const std::invalid_argument&) {
            // A quantity we cannot read is reported as "cannot say" (0), never as an error.
          }
        }
    }
  // Kubernetes has no per-pod pids limit (it is the kubelet's --pod-max-pids): 0, "cannot say".
  status.pids_limit = 0;

  auto phase = text_of(pod_status, "phase");
  const json* container_status = main_container_status(pod);
  const json* state = container_status && container_status->contains("state") ? &(*container_status)["state"] : nullptr;
  if (state && state->contains("terminated")) {
    const auto& terminated = (*state)["terminated"];
    status.state = WorkloadState::exited;
    if (auto code = terminated.find("exitCode"); code != terminated.end() && code->is_number_integer())
      status.exit_code = code->get<int>();
    status.started_at = text_of(terminated, "startedAt");
    status.finished_at = text_of(terminated, "finishedAt");
    auto reason = text_of(terminated, "reason");
    if (!reason.empty() && reason != "Completed") status.message = reason_and_message(terminated);
  } else if (state && state->contains("running")) {
    status.state = WorkloadState::running;
    status.started_at = text_of((*state)["running"], "startedAt");
  } else if (state && state->contains("waiting")) {
    status.state = WorkloadState::pending;
    status.message = reason_and_message((*state)["waiting"]);
  } else if (phase == "Pending") {
    status.state = WorkloadState::pending;
  } else if (phase == "Running") {
    status.state = WorkloadState::running;
  }
  // The phase is final even where the container never reported (evicted, deadline exceeded).
  if (phase == "Succeeded" || phase == "Failed") {
    status.state = WorkloadState::exited;
    if (auto why = reason_and_message(pod_status); !why.empty())
      status.message = status.message.empty() ? why : status.message + "; " + why;
  }
  if (status.state == WorkloadState::pending && status.message.empty()) {
    std::string why;
    if (unschedulable(pod, &why)) status.message = "Unschedulable: " + why;
  }
  return status;
}

bool unschedulable(const json& pod, std::string* message) {
  auto status = pod.find("status");
  if (status == pod.end() || !status->is_object()) return false;
  auto conditions = status->find("conditions");
  if (conditions == status->end() || !conditions->is_array()) return false;
  for (const auto& condition : *conditions) {
    if (text_of(condition, "type") == "PodScheduled" && text_of(condition, "status") == "False" &&
        text_of(condition, "reason") == "Unschedulable") {
      if (message) *message = text_of(condition, "message");
      return true;
    }
  }
  return false;
}

std::optional<StartFailure> start_failure(const json& pod) {
  const json* container_status = main_container_status(pod);
  if (!container_status || !container_status->contains("state")) return std::nullopt;
  const auto& state = (*container_status)["state"];
  if (!state.contains("waiting")) return std::nullopt;
  const auto& waiting = state["waiting"];
  auto reason = text_of(waiting, "reason");
  auto image = text_of(*container_status, "image");
  if (reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "ErrImageNeverPull")
    return StartFailure{OrchestratorErrc::image_missing,
                        "the image cannot be pulled (" + reason_and_message(waiting) +
                            "); check its name and tag, and that the cluster may pull from its registry "
                            "(imagePullSecrets)"};
  if (reason == "InvalidImageName")
    return StartFailure{OrchestratorErrc::invalid_spec, "the image name is not valid: " + reason_and_message(waiting)};
  if (reason == "CreateContainerConfigError")
    return StartFailure{OrchestratorErrc::invalid_spec, "the container cannot be configured: " + reason_and_message(waiting)};
  if (reason == "CreateContainerError" || reason == "RunContainerError")
    return StartFailure{OrchestratorErrc::failed, "the container cannot be started: " + reason_and_message(waiting)};
  return std::nullopt;
}

bool declares_port(const json& pod, std::uint16_t port) {
  auto spec = pod.find("spec");
  if (spec == pod.end()) return false;
  auto containers = spec->find("containers");
  if (containers == spec->end()) return false;
  const json* container = find_container(*containers);
  if (!container) return false;
  auto ports = container->find("ports");
  if (ports == container->end() || !ports->is_array()) return false;
  for (const auto& declared : *ports)
    if (declared.value("containerPort", 0) == port) return true;
  return false;
}

}  // namespace synthorg::orchestrator_kubernetes
