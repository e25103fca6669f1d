// What a plugin author includes: the Plugin base class, the PluginContext it is given, and
// SYNTHORG_PLUGIN(Class), which exports the tier-0 C descriptor and wraps every lifecycle
// call so that no exception crosses the C boundary.
//
//     class Hello final : public synthorg::Plugin {
//      public:
//       static synthorg::PluginManifest manifest();
//       explicit Hello(synthorg::PluginContext& context);
//       void configure(const nlohmann::json& config) override;
//       void start() override;
//       void stop() override;
//     };
//     SYNTHORG_PLUGIN(Hello)
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <boost/dll/alias.hpp>
#include <nlohmann/json.hpp>

#include "synthorg/abi.h"
#include "synthorg/bus.hpp"
#include "synthorg/config_map.hpp"
#include "synthorg/log.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/toolchain.hpp"

namespace synthorg {

struct Dependency {
  std::string service;  // e.g. "synthorg.Store/1"
  bool required = true;
};

struct PluginManifest {
  std::string name;  // ^[a-z][a-z0-9-]*$
  std::string version;
  std::string description;
  std::vector<std::string> provides;
  std::vector<Dependency> needs;
  ConfigMap config;
};

class PluginContext;

// The registry as a plugin sees it: registrations and trackers belong to the plugin.
class ScopedRegistry {
 public:
  ScopedRegistry(ServiceRegistry& registry, PluginContext& context) : registry_(registry), context_(context) {}

  template <class I>
  Registration provide(std::shared_ptr<I> service, ServiceProperties properties = {});
  template <class I>
  std::shared_ptr<I> get() const { return registry_.get<I>(); }
  template <class I>
  std::vector<std::shared_ptr<I>> all() const { return registry_.all<I>(); }
  template <class I>
  Tracker track(std::function<void(ServiceEvent, const std::shared_ptr<I>&)> listener);
  ServiceRegistry& shared() const noexcept { return registry_; }

 private:
  ServiceRegistry& registry_;
  PluginContext& context_;
};

// The bus as a plugin sees it: subscriptions belong to the plugin, events name it as source.
class ScopedBus {
 public:
  ScopedBus(EventBus& bus, PluginContext& context) : bus_(bus), context_(context) {}

  Subscription subscribe(std::string pattern, EventHandler handler, SubscribeOptions options = {});
  void publish(std::string topic, nlohmann::json payload, std::string trace_id = {});
  template <class E>
    requires requires { E::topic; }
  void publish(const E& event, std::string trace_id = {}) {
    publish(std::string(E::topic), nlohmann::json(event), std::move(trace_id));
  }
  EventBus& shared() const noexcept { return bus_; }

 private:
  EventBus& bus_;
  PluginContext& context_;
};

// Everything the host gives one plugin. Created by the host; a plugin keeps a reference.
class PluginContext {
 public:
  PluginContext(std::string name, ServiceRegistry& registry, EventBus& bus);
  PluginContext(const PluginContext&) = delete;
  PluginContext& operator=(const PluginContext&) = delete;

  const std::string& name() const noexcept { return owner_->name; }
  const OwnerRef& owner() const noexcept { return owner_; }
  ScopedRegistry& registry() noexcept { return registry_; }
  ScopedBus& bus() noexcept { return bus_; }
  const log::Logger& log() const noexcept { return log_; }
  // The kernel's Executor; throws std::logic_error if the host registered none.
  Executor& executor() const;

  // Host side: drop what the plugin left registered or subscribed; returns how many.
  std::size_t sweep();
  std::size_t live_registrations() const;
  std::size_t live_subscriptions() const;

  // Conformance kit: make the n-th registration or subscription from now on throw (n >= 1),
  // to prove a plugin whose start fails part-way leaves nothing behind. 0 disarms.
  void inject_fault_at(int n) noexcept { fault_countdown_ = n; }
  int mutations() const noexcept { return mutations_; }
  void before_mutation(std::string_view what);  // counts, and throws when the fault is due

 private:
  OwnerRef owner_;
  ScopedRegistry registry_;
  ScopedBus bus_;
  log::Logger log_;
  std::atomic<int> fault_countdown_{0};
  std::atomic<int> mutations_{0};
};

template <class I>
Registration ScopedRegistry::provide(std::shared_ptr<I> service, ServiceProperties properties) {
  context_.before_mutation(I::service_id);
  return registry_.provide<I>(std::move(service), std::move(properties), context_.owner());
}

template <class I>
Tracker ScopedRegistry::track(std::function<void(ServiceEvent, const std::shared_ptr<I>&)> listener) {
  context_.before_mutation(I::service_id);
  return registry_.track<I>(std::move(listener), context_.owner());
}

// A plugin: constructed with its context, configured once, then started and stopped, possibly
// more than once. stop() must release everything start() registered or subscribed.
class Plugin {
 public:
  virtual ~Plugin() = default;
  // `config` was checked against the manifest's config map and has every default filled in.
  virtual void configure(const nlohmann::json& config) { (void)config; }
  virtual void start() = 0;
  virtual void stop() = 0;
};

namespace detail {

// One created plugin as the C thunks see it.
struct PluginInstance {
  std::unique_ptr<Plugin> plugin;
  ConfigMap config_map;
  std::string last_error;
};

// The lifecycle thunks, implemented in the SDK: each turns an exception into SYNTHORG_ERROR
// plus last_error, so no exception ever crosses the C boundary.
void* create_instance(void* host, std::unique_ptr<Plugin> (*make)(PluginContext&),
                      const char* config_map_json) noexcept;
int32_t configure_instance(void* instance, const char* config_json) noexcept;
int32_t start_instance(void* instance) noexcept;
int32_t stop_instance(void* instance) noexcept;
void destroy_instance(void* instance) noexcept;
const char* instance_error(void* instance) noexcept;

// The descriptor and the storage its pointers point into. Inline on purpose: the struct size,
// ABI version and toolchain signature must be the plugin's own, not the SDK library's.
struct DescriptorStorage {
  DescriptorStorage(PluginManifest plugin_manifest, const char* toolchain, void* (*create)(void*))
      : manifest(std::move(plugin_manifest)), config_map_json(manifest.config.to_json().dump()) {
    for (const auto& need : manifest.needs)
      dependencies.push_back({need.service.c_str(), need.required ? 1 : 0});
    for (const auto& service : manifest.provides) provides.push_back(service.c_str());
    descriptor.struct_size = sizeof(synthorg_plugin_descriptor);
    descriptor.abi_major = SYNTHORG_ABI_MAJOR;
    descriptor.abi_minor = SYNTHORG_ABI_MINOR;
    descriptor.toolchain = toolchain;
    descriptor.name = manifest.name.c_str();
    descriptor.version = manifest.version.c_str();
    descriptor.description = manifest.description.c_str();
    descriptor.dependencies = dependencies.data();
    descriptor.dependency_count = static_cast<uint32_t>(dependencies.size());
    descriptor.provides = provides.data();
    descriptor.provides_count = static_cast<uint32_t>(provides.size());
    descriptor.config_map_json = config_map_json.c_str();
    descriptor.create = create;
    descriptor.configure = &configure_instance;
    descriptor.start = &start_instance;
    descriptor.stop = &stop_instance;
    descriptor.destroy = &destroy_instance;
    descriptor.last_error = &instance_error;
  }
  DescriptorStorage(const DescriptorStorage&) = delete;
  DescriptorStorage& operator=(const DescriptorStorage&) = delete;

  PluginManifest manifest;
  std::string config_map_json;
  std::vector<synthorg_dependency> dependencies;
  std::vector<const char*> provides;
  synthorg_plugin_descriptor descriptor{};
};

template <class P>
struct Entry {
  static std::unique_ptr<Plugin> make(PluginContext& context) { return std::make_unique<P>(context); }
  static const DescriptorStorage& storage() {
    static const DescriptorStorage built(P::manifest(), SYNTHORG_TOOLCHAIN_SIGNATURE, &create);
    return built;
  }
  static void* create(void* host) noexcept {
    return create_instance(host, &make, storage().config_map_json.c_str());
  }
  static const synthorg_plugin_descriptor* describe() noexcept {
    try {
      return &storage().descriptor;
    } catch (...) {
      return nullptr;  // the host refuses the file: its manifest could not be built
    }
  }
};

}  // namespace detail
}  // namespace synthorg

// Exports the plugin's descriptor under the Boost.DLL alias SYNTHORG_PLUGIN_ENTRY.
// The toolchain signature also goes into its own ELF section, readable without loading the file.
#define SYNTHORG_PLUGIN(Class)                                                 \
  namespace {                                                                  \
  [[gnu::used, gnu::section(SYNTHORG_TOOLCHAIN_SECTION)]] const char           \
      synthorg_toolchain_note[] = SYNTHORG_TOOLCHAIN_SIGNATURE;                \
  const synthorg_plugin_descriptor* synthorg_plugin_entry() noexcept {         \
    return ::synthorg::detail::Entry<Class>::describe();                       \
  }                                                                            \
  }                                                                            \
  BOOST_DLL_ALIAS(synthorg_plugin_entry, synthorg_plugin_v1)
