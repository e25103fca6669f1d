// The Orchestrator on Kubernetes: one Pod per workload, in one namespace, through the API server.
//
// Kubernetes cannot stop a pod and keep it: a stopped pod is a deleted pod. So stop() deletes
// the pod with the grace asked for, follows it until the API server has removed it, and keeps
// its final state (exit code, times, labels, the last log lines) as a tombstone in this
// process, which inspect, list, wait and logs report as exited until remove() drops it. A
// workload that ends by itself (restartPolicy Never) stays a Succeeded/Failed pod in the API
// until remove(). docs/orchestrators.md explains the mapping for operators.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api_client.hpp"
#include "pod_mapping.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_kubernetes {

struct OrchestratorOptions {
  PodOptions pod;
  std::chrono::milliseconds spawn_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds unschedulable_timeout{0};
  // How long past the grace a deletion may take before stop()/remove() report the node as slow.
  std::chrono::milliseconds deletion_margin{std::chrono::seconds(30)};
  // Each of the health check's two requests: together they stay near the second HealthCheck allows.
  std::chrono::milliseconds health_timeout{std::chrono::milliseconds(750)};
  std::size_t max_tombstones = 512;
  std::size_t tombstone_log_lines = 1000;
};

class KubernetesOrchestrator final : public Orchestrator {
 public:
  KubernetesOrchestrator(std::shared_ptr<ApiClient> api, OrchestratorOptions options, log::Logger log);

  std::string backend() const override { return "kubernetes"; }
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
  using Clock = std::chrono::steady_clock;
  enum class Follow { done, deleted, timed_out, cancelled };
  struct Tombstone {
    WorkloadStatus status;
    std::vector<std::string> log_lines;
  };

  // The pod, which must carry synthorg.managed=true; not_found otherwise (404 included).
  nlohmann::json get_managed(const std::string& id);
  std::optional<nlohmann::json> find_pod(const std::string& id);
  // Watches the pod from `last`'s resourceVersion until `done(pod)`, its deletion, the deadline
  // or `stop`. `last` is updated to the newest state seen (the deleted object, on deletion).
  Follow follow(const std::string& name, nlohmann::json& last, Clock::time_point deadline,
                const std::function<bool(const nlohmann::json&)>& done, std::stop_token stop = {});
  // DELETE with a grace (at least 1 s: Kubernetes' 0 removes the object while the container
  // may still run) and the uid as a precondition; false when it was gone already.
  bool delete_pod(const std::string& name, std::int64_t grace_seconds, const std::string& uid);
  void cleanup_after_failed_spawn(const std::string& name) noexcept;
  std::vector<std::string> read_log_lines(const std::string& name, std::size_t tail);

  std::optional<Tombstone> tombstone(const std::string& id);
  void bury(Tombstone tombstone);
  bool exhume(const std::string& id);

  std::shared_ptr<ApiClient> api_;
  OrchestratorOptions options_;
  log::Logger log_;

  std::mutex tombstones_mutex_;
  std::map<std::string, Tombstone> tombstones_;
  std::deque<std::string> tombstone_order_;
};

}  // namespace synthorg::orchestrator_kubernetes
