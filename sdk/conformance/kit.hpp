// The conformance kit's shared pieces: what to test, and a small host that gives a plugin what
// the kernel would (Executor, registry, bus, and provider plugins for its required services).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/registry.hpp"

namespace synthorg::conformance {

struct Options {
  std::vector<std::filesystem::path> plugins;  // files under test
  nlohmann::json config = nlohmann::json::object();
  std::vector<std::filesystem::path> providers;  // loaded and started first (--with)
  // The image the orchestrator kit's workloads run (--kit-image); empty: $SYNTHORG_KIT_IMAGE,
  // else synthorg-test/busybox:latest.
  std::string kit_image;
  // How long one lifecycle call (start, stop) may take: the kernel's kernel.start_timeout default.
  std::chrono::milliseconds call_timeout{60'000};
  // Set in a process the runner starts after another one crashed: the orchestrator kit first
  // removes the workloads the crashed test left (runner_main.cpp, crash isolation).
  bool after_crash = false;
};
// Set by the runner before GoogleTest registers the parameterised suites.
Options& options();

// Crash isolation. The runner runs the kits in a child process and, when a plugin kills it,
// reports the test and the call in flight and runs the remaining tests in a new one. These are
// the pieces the kits and the runner share.
// The orchestrator kit's run label, shared by every process of one run.
inline constexpr std::string_view run_environment = "SYNTHORG_KIT_RUN";
// within_limit's exit code: a call overran its limit and still runs, so the whole kit stops.
inline constexpr int abandoned_exit_code = 3;
// Registers OrchestratorKit.CleanUpAfterACrash, which only starts the plugin and removes what a
// crashed last test left behind.
void register_crash_cleanup();

// Runs one lifecycle call of plugin `plugin` (start(), stop()) within options().call_timeout, its
// exception coming out as it is. A call that overruns is reported, naming the call and the limit,
// and the kit ends there with abandoned_exit_code: the call still runs and holds the plugin, which
// nothing may free under it (the kernel refuses such a plugin the same way).
void within_limit(std::string_view call, std::string_view plugin, const std::function<void()>& body);

// Plugin files are loaded once per process and never unloaded, like the kernel does.
const host::PluginFile& load(const std::filesystem::path& path);

class KitHost {
 public:
  KitHost();
  ~KitHost();
  // Loads, configures and starts each --with provider (with its defaults).
  void start_providers();
  std::shared_ptr<PluginContext> context_for(const host::PluginFile& file);
  ServiceRegistry& registry() noexcept { return registry_; }
  EventBus& bus() noexcept { return bus_; }
  // Required services of `file` that nothing here provides.
  std::vector<std::string> unmet_needs(const host::PluginFile& file) const;

 private:
  std::shared_ptr<host::ThreadPoolExecutor> executor_;
  ServiceRegistry registry_;
  EventBus bus_;
  Registration executor_registration_;
  std::vector<std::unique_ptr<host::PluginInstance>> providers_;
};

}  // namespace synthorg::conformance
