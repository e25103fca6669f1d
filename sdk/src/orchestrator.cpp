// What every Orchestrator provider agrees on: spec validation, label rules, memory sizes.
#include "synthorg/services/orchestrator.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <set>

namespace synthorg {

std::string_view to_string(OrchestratorErrc code) noexcept {
  switch (code) {
    case OrchestratorErrc::not_found: return "not_found";
    case OrchestratorErrc::image_missing: return "image_missing";
    case OrchestratorErrc::capacity: return "capacity";
    case OrchestratorErrc::unavailable: return "unavailable";
    case OrchestratorErrc::invalid_spec: return "invalid_spec";
    case OrchestratorErrc::conflict: return "conflict";
    case OrchestratorErrc::failed: return "failed";
  }
  return "failed";
}

std::string_view to_string(WorkloadState state) noexcept {
  switch (state) {
    case WorkloadState::pending: return "pending";
    case WorkloadState::running: return "running";
    case WorkloadState::exited: return "exited";
    case WorkloadState::unknown: return "unknown";
  }
  return "unknown";
}

namespace orchestrator {
namespace {

bool alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// [A-Za-z0-9._-]{1,63}, starting and ending alphanumeric.
bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back())) return false;
  for (char c : name)
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

// A DNS subdomain: lowercase labels of [a-z0-9-] joined by dots, at most 253 characters.
bool valid_dns_subdomain(std::string_view name) noexcept {
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    auto dot = name.find('.', start);
    auto part = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty() || part.size() > 63 || part.front() == '-' || part.back() == '-') return false;
    for (char c : part)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

[[noreturn]] void invalid(const std::string& message) {
  throw OrchestratorError(OrchestratorErrc::invalid_spec, "invalid workload spec: " + message);
}

bool absolute_clean_path(std::string_view path) noexcept {
  if (path.empty() || path.front() != '/') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  // No "." or ".." segments: what the workload sees must be what the spec says.
  std::size_t start = 1;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    auto part = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part == "." || part == "..") return false;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return true;
}

}  // namespace

bool valid_label_key(std::string_view key) noexcept {
  auto slash = key.find('/');
  if (slash == std::string_view::npos) return valid_label_name(key);
  return valid_dns_subdomain(key.substr(0, slash)) && valid_label_name(key.substr(slash + 1));
}

bool valid_label_value(std::string_view value) noexcept {
  return value.empty() || valid_label_name(value);
}

std::int64_t parse_memory(std::string_view text) {
  if (text.empty()) throw std::invalid_argument("a memory size is empty; write it like 512m or 1g");
  std::int64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || number < 0)
    throw std::invalid_argument("'" + std::string(text) + "' is not a memory size; write it like 512m, 1g or 1048576");
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  if (!unit.empty() && (unit.back() == 'b' || unit.back() == 'B')) unit.remove_suffix(1);
  if (unit.size() == 2 && (unit.back() == 'i')) unit.remove_suffix(1);  // "Mi", "Gi" as in Kubernetes
  std::int64_t factor = 1;
  if (unit.empty()) {
    factor = 1;
  } else if (unit.size() == 1) {
    switch (unit.front()) {
      case 'k': case 'K': factor = 1LL << 10; break;
      case 'm': case 'M': factor = 1LL << 20; break;
      case 'g': case 'G': factor = 1LL << 30; break;
      case 't': case 'T': factor = 1LL << 40; break;
      default: factor = 0;
    }
  } else {
    factor = 0;
  }
  if (factor == 0)
    throw std::invalid_argument("'" + std::string(text) + "' has an unknown unit; use k, m, g or t (powers of 1024)");
  if (number > std::numeric_limits<std::int64_t>::max() / factor)
    throw std::invalid_argument("'" + std::string(text) + "' is too large");
  return number * factor;
}

std::map<std::string, std::string> managed_labels(const WorkloadSpec& spec) {
  auto labels = spec.labels;
  labels[std::string(managed_label)] = "true";
  return labels;
}

void check_spec(const WorkloadSpec& spec) {
  if (spec.image.empty()) invalid("image is empty; name the image to run, e.g. \"busybox:latest\"");
  if (spec.image.find_first_of(" \t\r\n") != std::string::npos || spec.image.find('\0') != std::string::npos)
    invalid("image '" + spec.image + "' contains whitespace or control characters");
  if (!spec.name.empty() && !valid_label_name(spec.name))
    invalid("name '" + spec.name + "' must be 1-63 of [A-Za-z0-9._-], starting and ending alphanumeric");
  for (const auto& argument : spec.command)
    if (argument.find('\0') != std::string::npos) invalid("command contains a NUL character");
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos)
      invalid("env name '" + key + "' is empty or contains '=' or NUL");
    if (value.find('\0') != std::string::npos) invalid("env " + key + " contains a NUL character");
  }
  for (const auto& [key, value] : spec.labels) {
    if (!valid_label_key(key))
      invalid("label key '" + key +
              "' is not valid: use [prefix/]name, name 1-63 of [A-Za-z0-9._-] starting and ending alphanumeric");
    if (!valid_label_value(value))
      invalid("label " + key + "='" + value +
              "' is not valid: values are up to 63 of [A-Za-z0-9._-], starting and ending alphanumeric");
    if (key == managed_label && value != "true") invalid("label synthorg.managed is reserved");
  }
  if (spec.memory_bytes < 0) invalid("memory_bytes is negative; use 0 for no limit");
  if (spec.cpus < 0 || !std::isfinite(spec.cpus)) invalid("cpus must be a finite number >= 0; use 0 for no limit");
  if (spec.pids_limit < 0) invalid("pids_limit is negative; use 0 for no limit");
  if (spec.gpu.count < -1) invalid("gpu.count must be -1 (all), 0 (none) or a positive count");

  std::set<std::string> targets;
  for (const auto& mount : spec.tmpfs) {
    if (!absolute_clean_path(mount.target))
      invalid("tmpfs target '" + mount.target + "' must be an absolute path without . or .. segments");
    if (!targets.insert(mount.target).second) invalid("two mounts share the target " + mount.target);
  }
  for (const auto& mount : spec.mounts) {
    if (mount.source.empty()) invalid("mount source is empty for target '" + mount.target + "'");
    if (!absolute_clean_path(mount.target))
      invalid("mount target '" + mount.target + "' must be an absolute path without . or .. segments");
    if (!targets.insert(mount.target).second) invalid("two mounts share the target " + mount.target);
  }
  std::set<std::pair<std::uint16_t, std::string>> ports;
  for (const auto& port : spec.ports) {
    if (port.container_port == 0) invalid("port 0 is not a container port; use 1-65535");
    if (port.protocol != "tcp" && port.protocol != "udp")
      invalid("port " + std::to_string(port.container_port) + " has protocol '" + port.protocol + "'; use tcp or udp");
    if (!ports.insert({port.container_port, port.protocol}).second)
      invalid("port " + std::to_string(port.container_port) + "/" + port.protocol + " is requested twice");
  }
}

nlohmann::json to_json(const WorkloadStatus& status) {
  nlohmann::json out = {
      {"id", status.id},
      {"name", status.name},
      {"image", status.image},
      {"state", to_string(status.state)},
      {"exit_code", status.exit_code ? nlohmann::json(*status.exit_code) : nlohmann::json(nullptr)},
      {"labels", status.labels},
      {"created_at", status.created_at},
      {"started_at", status.started_at},
      {"finished_at", status.finished_at},
      {"memory_bytes", status.memory_bytes},
      {"cpus", status.cpus},
      {"pids_limit", status.pids_limit},
  };
  if (!status.message.empty()) out["message"] = status.message;
  return out;
}


Orchestrator& ClosableOrchestrator::open() {
  if (closed_.load())
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "the " + backend_->backend() + " orchestrator plugin has stopped; retry once it runs again");
  return *backend_;
}

OrchestratorHealth ClosableOrchestrator::health() {
  if (closed_.load()) return {false, "the " + backend_->backend() + " orchestrator plugin has stopped", {}};
  return backend_->health();
}

namespace {
class BackendHealth final : public HealthCheck {
 public:
  BackendHealth(std::shared_ptr<Orchestrator> backend, bool critical)
      : backend_(std::move(backend)), name_("orchestrator." + backend_->backend()), critical_(critical) {}
  std::string name() const override { return name_; }
  bool critical() const override { return critical_; }
  HealthReport check() override {
    try {
      auto health = backend_->health();
      return {health.up, health.detail, health.info};
    } catch (const std::exception& error) {
      return {false, error.what(), nlohmann::json::object()};
    }
  }

 private:
  std::shared_ptr<Orchestrator> backend_;
  std::string name_;
  bool critical_;
};
}  // namespace

std::shared_ptr<HealthCheck> health_check(std::shared_ptr<Orchestrator> backend, bool critical) {
  return std::make_shared<BackendHealth>(std::move(backend), critical);
}

}  // namespace orchestrator
}  // namespace synthorg
