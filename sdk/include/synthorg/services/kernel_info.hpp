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
};

}  // namespace synthorg
