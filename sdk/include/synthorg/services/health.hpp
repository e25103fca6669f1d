// HealthCheck: any plugin may provide several; http-api aggregates them into /readyz
// (503 while any `critical` check is down) and /health/detailed.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace synthorg {

struct HealthReport {
  bool up = false;
  std::string detail;  // why it is down, and what to do; never a secret
  nlohmann::json data = nlohmann::json::object();
};

class HealthCheck {
 public:
  static constexpr std::string_view service_id = "synthorg.HealthCheck/1";
  virtual ~HealthCheck() = default;

  virtual std::string name() const = 0;   // "store", "orchestrator.docker"...
  virtual bool critical() const { return true; }  // readiness depends on it
  // Must answer within about a second and never throw; called from the blocking pool.
  virtual HealthReport check() = 0;
};

}  // namespace synthorg
