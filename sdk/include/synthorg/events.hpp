// Typed payloads of the events the kernel publishes. Each has its topic and to_json/from_json,
// so a subscriber reads `event.payload.get<synthorg::events::PluginStarted>()`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace synthorg::events {

struct PluginLoaded {
  static constexpr std::string_view topic = "plugin.loaded";
  std::string plugin;
  std::string version;
  std::string file;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PluginLoaded, plugin, version, file)

struct PluginStarted {
  static constexpr std::string_view topic = "plugin.started";
  std::string plugin;
  std::string version;
  double start_ms = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PluginStarted, plugin, version, start_ms)

struct PluginStopped {
  static constexpr std::string_view topic = "plugin.stopped";
  std::string plugin;
  std::uint64_t leftovers_swept = 0;  // registrations/subscriptions the plugin failed to release
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PluginStopped, plugin, leftovers_swept)

struct PluginFailed {
  static constexpr std::string_view topic = "plugin.failed";
  std::string plugin;
  std::string phase;  // load, configure, start, stop
  std::string error;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PluginFailed, plugin, phase, error)

struct ServiceRegistered {
  static constexpr std::string_view topic = "service.registered";
  std::string service;
  std::string plugin;
  std::uint64_t registration_id = 0;
  int ranking = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ServiceRegistered, service, plugin, registration_id, ranking)

struct ServiceUnregistered {
  static constexpr std::string_view topic = "service.unregistered";
  std::string service;
  std::string plugin;
  std::uint64_t registration_id = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ServiceUnregistered, service, plugin, registration_id)

}  // namespace synthorg::events
