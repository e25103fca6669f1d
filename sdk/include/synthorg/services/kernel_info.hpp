// KernelInfo: what the kernel loaded, for introspection routes and the dashboard.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace synthorg {

class KernelInfo {
 public:
  static constexpr std::string_view service_id = "synthorg.KernelInfo/1";
  virtual ~KernelInfo() = default;

  // [{name, version, description, state, provides, needs, note}] in start order.
  virtual nlohmann::json plugins() const = 0;
  // True from the end of a successful start until stop begins: readiness waits for it, so no
  // request meets a route that a later plugin has not mounted yet.
  virtual bool serving() const = 0;
};

}  // namespace synthorg
