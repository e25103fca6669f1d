// WorkloadSpec → the body of POST /containers/create, and /containers/{id}/json → WorkloadStatus.
// Pure functions: unit-tested without an engine.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_docker {

struct MappingOptions {
  std::string publish_address = "127.0.0.1";  // where container ports are published on the host
};

// Expects a spec that passed orchestrator::check_spec.
nlohmann::json create_body(const WorkloadSpec& spec, const MappingOptions& options);

// Throws not_found when the container does not carry synthorg.managed=true.
WorkloadStatus status_from_inspect(const nlohmann::json& inspect);
bool is_managed(const nlohmann::json& labels);

}  // namespace synthorg::orchestrator_docker
