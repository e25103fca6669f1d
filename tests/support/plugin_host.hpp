// A minimal host for tests that drive one plugin through its real file, as the kernel would:
// an executor, a registry and a bus, and plugin instances stopped in reverse on destruction.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/registry.hpp"

namespace synthorg::testing {

// Plugin files are loaded once per process and never unloaded, as the kernel does.
inline const host::PluginFile& plugin_file(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<host::PluginFile>> files;
  std::lock_guard lock(mutex);
  auto& slot = files[path];
  if (!slot) slot = std::make_unique<host::PluginFile>(host::load_plugin_file(path));
  return *slot;
}

class PluginHost {
 public:
  PluginHost()
      : executor_(std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{1, 4, 256})),
        bus_([executor = executor_.get()](std::function<void()> task) { executor->post(std::move(task)); }),
        executor_registration_(registry_.provide<Executor>(executor_)) {}
  ~PluginHost() {
    for (auto it = instances_.rbegin(); it != instances_.rend(); ++it) {
      try {
        if ((*it)->started()) (*it)->stop();
      } catch (...) {
      }
    }
    instances_.clear();
    bus_.shutdown();
    executor_->stop();
  }
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  // Configured, not started; throws host::PluginFailed with the plugin's message.
  host::PluginInstance& configure(const std::string& path, const nlohmann::json& config) {
    const auto& file = plugin_file(path);
    auto context = std::make_shared<PluginContext>(file.manifest.name, registry_, bus_);
    instances_.push_back(std::make_unique<host::PluginInstance>(file, context));
    instances_.back()->configure(config);
    return *instances_.back();
  }
  host::PluginInstance& start(const std::string& path, const nlohmann::json& config) {
    auto& instance = configure(path, config);
    instance.start();
    return instance;
  }
  // The service the started plugins provide; throws when none does.
  template <class I>
  std::shared_ptr<I> get() const {
    auto service = registry_.get<I>();
    if (!service) throw std::logic_error("no plugin registered " + std::string(I::service_id));
    return service;
  }

  ServiceRegistry& registry() noexcept { return registry_; }
  EventBus& bus() noexcept { return bus_; }

 private:
  std::shared_ptr<host::ThreadPoolExecutor> executor_;
  ServiceRegistry registry_;
  EventBus bus_;
  Registration executor_registration_;
  std::vector<std::unique_ptr<host::PluginInstance>> instances_;
};

}  // namespace synthorg::testing
