// WorkloadSpec → Pod, and Pod → WorkloadStatus. Pure functions: no I/O, so the mapping can be
// read (and checked) on its own. docs/orchestrators.md has the same table for operators.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_kubernetes {

inline constexpr const char* container_name = "main";

struct PodOptions {
  std::string image_pull_policy = "IfNotPresent";
};

// A DNS-1123 label from a workload name: lowercase, [a-z0-9-], at most 57 characters, so that
// "-" and a 5-character random suffix still fit in 63. "workload" when nothing is left.
std::string sanitise_name(std::string_view name);
std::string pod_name_for(std::string_view spec_name);  // sanitised + "-" + random suffix

// The Pod to create. Throws invalid_spec for what Kubernetes cannot express (a user name
// instead of a uid, "all GPUs", network "none", tmpfs sizes it cannot read).
nlohmann::json build_pod(const WorkloadSpec& spec, const std::string& pod_name, const PodOptions& options);

// Quantities as the API server writes them back ("512Mi", "1G", "500m", "0.5", "1e3").
// Throws std::invalid_argument on anything else.
double parse_quantity(std::string_view text);
std::string cpu_quantity(double cpus);  // millicores, rounded up: 0.5 → "500m"

bool is_managed(const nlohmann::json& pod);
WorkloadStatus to_status(const nlohmann::json& pod);

// Why a pending pod will not start, when that is final enough for spawn to give up:
// image_missing (ErrImagePull, ImagePullBackOff...), invalid_spec (InvalidImageName,
// CreateContainerConfigError), capacity (Unschedulable). nullopt while it may still start.
struct StartFailure {
  OrchestratorErrc code;
  std::string message;
};
std::optional<StartFailure> start_failure(const nlohmann::json& pod);
bool unschedulable(const nlohmann::json& pod, std::string* message = nullptr);

// The container's declared ports (spec.containers[0].ports[].containerPort).
bool declares_port(const nlohmann::json& pod, std::uint16_t port);

}  // namespace synthorg::orchestrator_kubernetes
