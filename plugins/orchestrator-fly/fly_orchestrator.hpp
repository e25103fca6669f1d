// The Orchestrator on Fly.io: one Fly Machine per workload, in one app, through the Machines
// API. Workload ids are machine ids.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "fly_api.hpp"
#include "machine_mapping.hpp"
#include "synthorg/log.hpp"

namespace synthorg::orchestrator_fly {

struct FlyOptions {
  ApiOptions api;
  MappingOptions mapping;
  std::chrono::milliseconds start_timeout{300000};  // create until started (image pulls included)
  std::int64_t page_size = 100;                     // machines per list page
};

class FlyOrchestrator final : public Orchestrator {
 public:
  FlyOrchestrator(FlyOptions options, const log::Logger& log);

  std::string backend() const override { return "fly"; }
  WorkloadStatus spawn(const WorkloadSpec& spec) override;
  WorkloadStatus inspect(const std::string& id) override;
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override;
  void stop(const std::string& id, std::chrono::seconds grace) override;
  void remove(const std::string& id) override;
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override;
  // The Machines API has no log endpoint: Fly ships machine output to its log service (`fly
  // logs`, or NATS log shipping), not through this API. Throws failed saying so.
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override;
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override;
  OrchestratorHealth health() override;

 private:
  // GET /machines/{id}: nothing when there is no such machine; not_found when it is not managed.
  std::optional<nlohmann::json> find(const std::string& id);
  // The same for a managed machine that must exist (and not be destroyed unless
  // `destroyed_ok`); not_found otherwise.
  nlohmann::json machine(const std::string& id, bool destroyed_ok = false);
  // One GET /wait (at most 60 s, as flaps allows) for one of `states` (a query: state=a&state=b);
  // false when it timed out or the wait could not apply. Callers read the state again either way.
  bool wait_for(const std::string& id, std::string_view states, std::chrono::steady_clock::time_point deadline);
  std::string path_of(const std::string& id) const;

  FlyOptions options_;
  const log::Logger& log_;
  FlyApi api_;
};

}  // namespace synthorg::orchestrator_fly
