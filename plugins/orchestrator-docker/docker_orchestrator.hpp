// The Orchestrator on a Docker engine: one container per workload.
#pragma once

#include <chrono>
#include <string>

#include "container_config.hpp"
#include "docker_engine.hpp"
#include "synthorg/log.hpp"

namespace synthorg::orchestrator_docker {

struct DockerOptions {
  std::string host;  // unix:///var/run/docker.sock, tcp://..., http(s)://...
  MappingOptions mapping;
  bool container_ip_endpoints = false;  // reach workloads by their address on the container network
  bool pull_missing = true;
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds pull_timeout{600000};
};

class DockerOrchestrator final : public Orchestrator {
 public:
  DockerOrchestrator(DockerOptions options, const log::Logger& log);

  std::string backend() const override { return "docker"; }
  WorkloadStatus spawn(const WorkloadSpec& spec) override;
  WorkloadStatus inspect(const std::string& id) override;
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override;
  void stop(const std::string& id, std::chrono::seconds grace) override;
  void remove(const std::string& id) override;
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override;
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override;
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override;
  OrchestratorHealth health() override;

 private:
  // GET /containers/{id}/json of a managed container; not_found otherwise.
  nlohmann::json inspect_raw(const std::string& id);
  std::string create(const WorkloadSpec& spec, const nlohmann::json& body);
  void pull(const std::string& image);

  DockerOptions options_;
  const log::Logger& log_;
  DockerEngine engine_;
};

}  // namespace synthorg::orchestrator_docker
