// The kernel: discovers plugin files, decides which to load, orders them by their declared
// dependencies, configures and starts them, and stops them in reverse within a deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "company_config.hpp"
#include "settings_service.hpp"
#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/registry.hpp"

namespace synthorg::kernel {

// Why the kernel cannot come up (or go down) cleanly; what() is meant for the operator.
class BackupScheduler;

class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Refusal {
  std::filesystem::path file;
  std::string reason;  // one line, naming the file
};

enum class PluginState { discovered, excluded, configured, started, stopped, failed };
std::string_view state_name(PluginState state) noexcept;

struct PluginSummary {
  host::PluginFile file;
  PluginState state = PluginState::discovered;
  std::string note;  // why excluded or failed
};

// The single-provider slot a service belongs to: "synthorg.Store/1" -> "store".
std::string slot_of(std::string_view service_id);

class Kernel {
 public:
  explicit Kernel(CompanyConfig config);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Loads and checks every plugin file in the configured directories. Throws KernelError for
  // a directory that does not exist; a bad file becomes a Refusal.
  void discover();
  // Chooses what to load (enabled, selected, depended on), orders it, checks each plugin's
  // configuration against its config map, creates and configures it. Throws KernelError.
  void prepare();
  // Before prepare(): load only the plugins that provide `service_id` (and what they need),
  // for commands such as `synthorg backup` that must not start the whole server.
  void restrict_to(std::string service_id) { only_service_ = std::move(service_id); }
  // Starts in dependency order. If `stop_requested` becomes true, or a required plugin fails,
  // the started ones are stopped in reverse; the first case returns false, the second throws.
  bool start(const std::atomic<bool>* stop_requested = nullptr);
  // Drains every Listener first (all at once: no new work, what is in flight finishes), then
  // stops in reverse order, each plugin within what is left of kernel.shutdown_timeout.
  // Returns false when a plugin did not stop in time (its thread is abandoned).
  bool stop();

  const std::vector<Refusal>& refusals() const noexcept { return refusals_; }
  std::vector<PluginSummary> plugins() const;
  std::vector<std::string> start_order() const;
  const CompanyConfig& config() const noexcept { return config_; }
  ServiceRegistry& registry() noexcept { return registry_; }
  EventBus& bus() noexcept { return bus_; }
  host::ThreadPoolExecutor& executor() noexcept { return *executor_; }
  SettingsService& settings() noexcept { return *settings_; }

 private:
  void drain_listeners(std::chrono::steady_clock::time_point deadline);
  struct Loaded;
  class Info;
  // Leaves out an optional plugin, and whatever then lacks a required service (throwing
  // KernelError when that is a plugin that is not optional).
  void drop_optional(Loaded& plugin, std::string_view phase, const std::string& reason);
  Loaded* find(std::string_view name);

  CompanyConfig config_;
  std::shared_ptr<host::ThreadPoolExecutor> executor_;
  ServiceRegistry registry_;
  EventBus bus_;
  Registration executor_registration_;
  Tracker service_mirror_;
  std::shared_ptr<SettingsService> settings_;
  Registration settings_registration_;
  Registration info_registration_;
  std::vector<Token> kernel_settings_;  // the kernel's own definitions (backup.*)
  Tracker store_tracker_;
  // While a Tracer runs: Store and Orchestrator lookups get tracing decorators, and bus
  // deliveries get spans (traced_services.hpp, EventBus::trace_deliveries).
  Registration store_decoration_, orchestrator_decoration_;
  Tracker tracer_tracker_;
  std::vector<Refusal> refusals_;
  std::vector<std::unique_ptr<Loaded>> discovered_;
  std::vector<Loaded*> order_;  // what prepare() chose, in start order
  std::string only_service_;
  std::atomic<bool> serving_{false};
  // While serving with a Store: backups on the backup.interval schedule.
  std::unique_ptr<BackupScheduler> backup_scheduler_;
};

}  // namespace synthorg::kernel
