#include "kernel.hpp"

#include <algorithm>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "backup.hpp"
#include "backup_scheduler.hpp"
#include "synthorg/events.hpp"
#include "synthorg/host/traced_services.hpp"
#include "synthorg/services/kernel_info.hpp"
#include "synthorg/services/listener.hpp"
#include "synthorg/log.hpp"

namespace synthorg::kernel {
namespace {

using Clock = std::chrono::steady_clock;

double millis_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string join(const std::vector<std::string>& items, std::string_view separator = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

const log::Logger& logger() {
  static const log::Logger instance("kernel");
  return instance;
}

}  // namespace

std::string_view state_name(PluginState state) noexcept {
  switch (state) {
    case PluginState::discovered: return "discovered";
    case PluginState::excluded: return "excluded";
    case PluginState::configured: return "configured";
    case PluginState::started: return "started";
    case PluginState::stopped: return "stopped";
    case PluginState::failed: return "failed";
  }
  return "unknown";
}

std::string slot_of(std::string_view service_id) {
  auto name = service_id.substr(0, service_id.find('/'));
  if (auto dot = name.rfind('.'); dot != std::string_view::npos) name = name.substr(dot + 1);
  std::string slot;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') {
      if (i > 0) slot += '_';
      slot += static_cast<char>(c - 'A' + 'a');
    } else {
      slot += c;
    }
  }
  return slot;
}

struct Kernel::Loaded {
  host::PluginFile file;
  PluginState state = PluginState::discovered;
  std::string note;
  bool optional = false;
  std::shared_ptr<PluginContext> context;
  std::unique_ptr<host::PluginInstance> instance;
  bool abandoned = false;  // its start() or stop() overran its limit and may still be running
  std::chrono::milliseconds start_timeout{0};  // plugins.<name>.start_timeout; 0: the kernel's

  const std::string& name() const { return file.manifest.name; }
  bool provides(std::string_view service) const {
    const auto& all = file.manifest.provides;
    return std::find(all.begin(), all.end(), service) != all.end();
  }
  bool provides_slot(std::string_view slot) const {
    return std::any_of(file.manifest.provides.begin(), file.manifest.provides.end(),
                       [&](const std::string& s) { return slot_of(s) == slot; });
  }
};

// What the introspection API shows: the plugins prepare() chose, in start order.
class Kernel::Info final : public KernelInfo {
 public:
  explicit Info(const Kernel& kernel) : kernel_(kernel) {}
  nlohmann::json plugins() const override {
    nlohmann::json out = nlohmann::json::array();
    for (const auto* plugin : kernel_.order_) {
      const auto& m = plugin->file.manifest;
      nlohmann::json needs = nlohmann::json::array();
      for (const auto& need : m.needs) needs.push_back({{"service", need.service}, {"required", need.required}});
      out.push_back({{"name", m.name}, {"version", m.version}, {"description", m.description},
                     {"state", state_name(plugin->state)}, {"provides", m.provides}, {"needs", needs},
                     {"note", plugin->note}});
    }
    return out;
  }
  bool serving() const override { return kernel_.serving_.load(); }

 private:
  const Kernel& kernel_;
};

Kernel::Kernel(CompanyConfig config)
    : config_(std::move(config)),
      executor_(std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{
          config_.kernel.threads, config_.kernel.blocking_threads, config_.kernel.blocking_queue})),
      bus_([executor = executor_.get()](std::function<void()> task) { executor->post(std::move(task)); }) {
  service_mirror_ = registry_.watch_all([this](ServiceEvent event, const ServiceInfo& info) {
    if (event == ServiceEvent::arrived) {
      bus_.publish(events::ServiceRegistered{info.service_id, info.owner, info.registration_id, info.ranking});
    } else {
      bus_.publish(events::ServiceUnregistered{info.service_id, info.owner, info.registration_id});
    }
  });
  executor_registration_ = registry_.provide<Executor>(executor_);

  settings_ = std::make_shared<SettingsService>(config_.settings, bus_);
  settings_registration_ = registry_.provide<Settings>(settings_);
  info_registration_ = registry_.provide<KernelInfo>(std::make_shared<Info>(*this));
  for (auto& definition : kernel_setting_definitions()) kernel_settings_.push_back(settings_->define(definition));
  // The telemetry plugin registers a Tracer only while tracing is on, and starts before the
  // plugins that look up a Store or an Orchestrator (they need HttpRouter, which needs Metrics),
  // so their lookups find the decorators; with tracing off nothing is decorated or wrapped.
  tracer_tracker_ = registry_.track<Tracer>([this](ServiceEvent event, const std::shared_ptr<Tracer>& tracer) {
    if (event == ServiceEvent::departed) {
      bus_.trace_deliveries(nullptr);
      store_decoration_.reset();
      orchestrator_decoration_.reset();
      return;
    }
    store_decoration_ = registry_.decorate<Store>(
        [tracer](std::shared_ptr<Store> store) { return host::traced_store(std::move(store), tracer); });
    orchestrator_decoration_ = registry_.decorate<Orchestrator>([tracer](std::shared_ptr<Orchestrator> orchestrator) {
      return host::traced_orchestrator(std::move(orchestrator), tracer);
    });
    bus_.trace_deliveries(tracer);
  });
  // Stored settings come from whichever Store starts; until then the lower sources apply.
  store_tracker_ = registry_.track<Store>([this](ServiceEvent event, const std::shared_ptr<Store>& store) {
    if (event == ServiceEvent::departed) {
      settings_->detach_store();
      return;
    }
    try {
      settings_->attach_store(store);
    } catch (const std::exception& e) {
      logger().error("Stored settings could not be read; the lower sources apply until they can",
                     {{"error", e.what()}});
    }
  });
}

Kernel::~Kernel() {
  stop();
  tracer_tracker_.reset();
  bus_.trace_deliveries(nullptr);
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    if ((*it)->abandoned) {
      (void)(*it)->instance.release();  // its stop() may still be running: never destroy under it
    } else {
      (*it)->instance.reset();
    }
  }
  service_mirror_.reset();
  executor_registration_.reset();
  bus_.shutdown();
  executor_->stop();
}

Kernel::Loaded* Kernel::find(std::string_view name) {
  for (auto& plugin : discovered_)
    if (plugin->name() == name) return plugin.get();
  return nullptr;
}

void Kernel::discover() {
  for (std::size_t i = 0; i < config_.kernel.plugin_dirs.size(); ++i) {
    const auto& dir = config_.kernel.plugin_dirs[i];
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      throw KernelError(config_.document.where("kernel.plugin_dirs[" + std::to_string(i) + "]") +
                        ": kernel.plugin_dirs: plugin directory \"" + dir.string() + "\" " +
                        (std::filesystem::exists(dir, ec) ? "is not a directory" : "does not exist") +
                        " (fix: create it, or correct kernel.plugin_dirs in the configuration)");
    }
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.path().extension() == ".so" && !entry.is_directory()) files.push_back(entry.path());
    if (ec) throw KernelError("cannot list plugin directory \"" + dir.string() + "\": " + ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      try {
        auto file = host::load_plugin_file(path);
        if (auto* earlier = find(file.manifest.name)) {
          throw host::PluginRefused(file.path.string() + ": duplicate plugin name '" + file.manifest.name +
                                    "', already loaded from " + earlier->file.path.string() +
                                    " (fix: remove one of the two files)");
        }
        auto loaded = std::make_unique<Loaded>();
        loaded->file = std::move(file);
        bus_.publish(events::PluginLoaded{loaded->name(), loaded->file.manifest.version, loaded->file.path.string()});
        discovered_.push_back(std::move(loaded));
      } catch (const host::PluginRefused& e) {
        refusals_.push_back({path, e.what()});
        logger().warn("Plugin file refused", {{"file", path.string()}, {"reason", e.what()}});
      }
    }
  }
}

void Kernel::prepare() {
  std::vector<ConfigIssue> issues;
  std::vector<std::string> problems;  // not tied to a config position
  std::set<std::string> wanted;
  std::map<std::string, std::string> excluded;  // plugin -> why

  std::vector<std::string> discovered_names;
  for (auto& plugin : discovered_) discovered_names.push_back(plugin->name());
  auto not_found = [&](const std::string& name) {
    std::string message = "no plugin named '" + name + "' was found";
    std::string fix;
    if (auto near = did_you_mean(name, discovered_names); !near.empty()) fix = "did you mean \"" + near + "\"?";
    else {
      std::vector<std::string> dirs;
      for (auto& dir : config_.kernel.plugin_dirs) dirs.push_back(dir.string());
      fix = "install its file in one of the plugin directories (" + join(dirs) + ")";
    }
    if (!refusals_.empty()) fix += "; " + std::to_string(refusals_.size()) + " plugin file(s) were refused, see the log above";
    return std::make_pair(message, fix);
  };

  for (const auto& [slot, chosen] : config_.select) {
    auto* plugin = find(chosen);
    if (!plugin) {
      auto [message, fix] = not_found(chosen);
      issues.push_back({"select." + slot, message, fix});
      continue;
    }
    if (!plugin->provides_slot(slot)) {
      issues.push_back({"select." + slot, "plugin '" + chosen + "' provides no '" + slot + "' service (it provides: " +
                                              (plugin->file.manifest.provides.empty() ? "nothing" : join(plugin->file.manifest.provides)) + ")",
                        "choose a plugin that provides a " + slot + " service"});
      continue;
    }
    wanted.insert(chosen);
    for (auto& other : discovered_)
      if (other.get() != plugin && other->provides_slot(slot))
        excluded[other->name()] = "select." + slot + " chooses " + chosen;
  }
  for (const auto& [name, entry] : config_.plugins) {
    if (!entry.enabled) continue;
    if (auto it = excluded.find(name); it != excluded.end()) {
      logger().warn("Plugin enabled but not loaded", {{"plugin", name}, {"reason", it->second}});
      continue;
    }
    if (!find(name)) {
      auto [message, fix] = not_found(name);
      if (entry.optional) {
        logger().warn("Optional plugin not found", {{"plugin", name}, {"fix", fix}});
      } else {
        issues.push_back({"plugins." + name, message, fix});
      }
      continue;
    }
    wanted.insert(name);
  }
  if (!issues.empty()) throw config_.error(issues);
  if (!only_service_.empty()) {
    std::erase_if(wanted, [&](const std::string& name) { return !find(name)->provides(only_service_); });
    if (wanted.empty())
      throw KernelError("no enabled or selected plugin provides " + only_service_ +
                        " (fix: enable store-sqlite or store-postgres in company.yaml, or set SYNTHORG_DATABASE_URL)");
  }

  auto is_optional = [&](const std::string& name) {
    auto it = config_.plugins.find(name);
    return it != config_.plugins.end() && it->second.optional;
  };
  auto drop = [&](const std::string& name, const std::string& reason) {
    wanted.erase(name);
    excluded[name] = reason;
    logger().warn("Optional plugin left out", {{"plugin", name}, {"reason", reason}});
  };

  // Pull in providers of required services until nothing changes.
  for (bool changed = true; changed;) {
    changed = false;
    problems.clear();
    for (const auto& name : std::vector<std::string>(wanted.begin(), wanted.end())) {
      auto* plugin = find(name);
      for (const auto& need : plugin->file.manifest.needs) {
        if (!need.required || registry_.has(need.service)) continue;
        if (std::any_of(wanted.begin(), wanted.end(), [&](const std::string& w) { return find(w)->provides(need.service); }))
          continue;
        std::vector<std::string> candidates;
        for (auto& other : discovered_)
          if (other->provides(need.service) && !excluded.count(other->name())) candidates.push_back(other->name());
        std::sort(candidates.begin(), candidates.end());
        if (candidates.size() == 1) {
          logger().info("Loading a plugin another needs", {{"plugin", candidates[0]}, {"needed_by", name}, {"service", need.service}});
          wanted.insert(candidates[0]);
          changed = true;
        } else if (candidates.size() > 1) {
          problems.push_back("plugin '" + name + "' needs " + need.service + ", which several plugins provide (" +
                             join(candidates) + ") (fix: choose one in company.yaml with select: {" +
                             slot_of(need.service) + ": " + candidates[0] + "})");
        } else if (is_optional(name)) {
          drop(name, "needs " + need.service + ", which no plugin provides");
          changed = true;
        } else {
          problems.push_back("plugin '" + name + "' (" + plugin->file.path.string() + ") needs service " + need.service +
                             ", which no loadable plugin provides (fix: install and enable a plugin that provides it" +
                             (refusals_.empty() ? "" : "; " + std::to_string(refusals_.size()) + " plugin file(s) were refused, see above") + ")");
        }
        if (changed) break;
      }
      if (changed) break;
    }
  }
  if (!problems.empty()) throw KernelError(join(problems, "\n"));

  // Order by dependencies: depth-first, names sorted so that the order is reproducible.
  for (bool restart = true; restart;) {
    restart = false;
    order_.clear();
    std::map<std::string, int> color;  // 0 white, 1 on the stack, 2 done
    std::vector<std::pair<std::string, std::string>> stack;  // (plugin, service it needs from the next)
    std::function<bool(const std::string&)> visit = [&](const std::string& name) -> bool {
      color[name] = 1;
      auto* plugin = find(name);
      for (const auto& need : plugin->file.manifest.needs) {
        for (const auto& provider : wanted) {
          if (provider == name || !find(provider)->provides(need.service)) continue;
          stack.push_back({name, need.service});
          if (color[provider] == 1) {
            std::string chain;
            bool in_cycle = false;
            std::string optional_member;
            for (const auto& [who, service] : stack) {
              in_cycle |= who == provider;
              if (!in_cycle) continue;
              if (is_optional(who)) optional_member = who;
              chain += chain.empty() ? "'" + who + "' needs " + service
                                     : " from '" + who + "', which needs " + service;
            }
            chain += " from '" + provider + "'";
            if (!optional_member.empty()) {
              drop(optional_member, "dependency cycle: " + chain);
              return false;
            }
            throw KernelError("dependency cycle: " + chain + " (fix: disable one of these plugins, or break the cycle by making one of the needs optional)");
          }
          if (color[provider] == 0 && !visit(provider)) return false;
          stack.pop_back();
        }
      }
      color[name] = 2;
      order_.push_back(find(name));
      return true;
    };
    for (const auto& name : wanted) {
      if (color[name] == 0 && !visit(name)) {
        restart = true;
        break;
      }
    }
  }

  for (auto& plugin : discovered_) {
    if (auto it = excluded.find(plugin->name()); it != excluded.end()) {
      plugin->state = PluginState::excluded;
      plugin->note = it->second;
    } else if (!wanted.count(plugin->name())) {
      plugin->note = "not enabled";
    }
  }

  // Check every configuration first, so that one run reports every mistake.
  std::map<Loaded*, nlohmann::json> given_config;
  for (auto* plugin : order_) {
    plugin->optional = is_optional(plugin->name());
    auto entry = config_.plugins.find(plugin->name());
    if (entry != config_.plugins.end()) plugin->start_timeout = entry->second.start_timeout;
    nlohmann::json given = entry != config_.plugins.end() ? entry->second.config : nlohmann::json::object();
    std::vector<ConfigIssue> plugin_issues;
    plugin->file.manifest.config.apply(given, "plugins." + plugin->name() + ".config", plugin_issues);
    given_config[plugin] = given;
    if (!plugin_issues.empty() && plugin->optional) {
      plugin->state = PluginState::failed;
      plugin->note = config_.error(plugin_issues).what();
      logger().warn("Optional plugin left out", {{"plugin", plugin->name()}, {"reason", plugin->note}});
    }
    if (!plugin->optional) issues.insert(issues.end(), plugin_issues.begin(), plugin_issues.end());
  }
  if (!issues.empty()) throw config_.error(issues);

  for (auto* plugin : std::vector<Loaded*>(order_)) {
    if (plugin->state == PluginState::failed) {
      drop_optional(*plugin, "configure", plugin->note);
      continue;
    }
    try {
      plugin->context = std::make_shared<PluginContext>(plugin->name(), registry_, bus_);
      plugin->instance = std::make_unique<host::PluginInstance>(plugin->file, plugin->context);
      plugin->instance->configure(given_config[plugin]);
      plugin->state = PluginState::configured;
    } catch (const host::PluginFailed& e) {
      bus_.publish(events::PluginFailed{plugin->name(), "configure", e.what()});
      if (!plugin->optional) throw KernelError(e.what());
      drop_optional(*plugin, "configure", e.what());
    }
  }
}

void Kernel::drop_optional(Loaded& plugin, std::string_view phase, const std::string& reason) {
  plugin.state = PluginState::failed;
  plugin.note = reason;
  logger().warn("Optional plugin left out", {{"plugin", plugin.name()}, {"phase", phase}, {"reason", reason}});
  std::erase(order_, &plugin);
  // Whoever required a service only this plugin would have provided must go too, or fail.
  for (auto* other : std::vector<Loaded*>(order_)) {
    if (other->state == PluginState::started) continue;
    for (const auto& need : other->file.manifest.needs) {
      if (!need.required || !plugin.provides(need.service) || registry_.has(need.service)) continue;
      if (std::any_of(order_.begin(), order_.end(), [&](Loaded* p) { return p->provides(need.service); })) continue;
      std::string why = "needs " + need.service + ", which only the left-out plugin '" + plugin.name() + "' provides";
      if (!other->optional) throw KernelError("plugin '" + other->name() + "' " + why + " (" + reason + ")");
      drop_optional(*other, phase, why);
      break;
    }
  }
}

bool Kernel::start(const std::atomic<bool>* stop_requested) {
  for (auto* plugin : std::vector<Loaded*>(order_)) {
    if (plugin->state != PluginState::configured) continue;
    if (stop_requested && stop_requested->load()) {
      logger().info("Shutdown requested during start-up; stopping what started", {{"next_plugin", plugin->name()}});
      stop();  // what already started goes down in reverse
      return false;
    }
    std::string failure;
    for (const auto& need : plugin->file.manifest.needs) {
      if (need.required && !registry_.has(need.service)) {
        failure = "plugin '" + plugin->name() + "': start refused: required service " + need.service +
                  " is not registered (its provider started without registering it)";
        break;
      }
    }
    auto started_at = Clock::now();
    bool overran = false;
    if (failure.empty()) {
      // On a thread of its own, so a start() that hangs is refused after its limit instead of
      // holding the whole server; it is left running (abandoned), as a stop() that overruns is.
      auto limit = plugin->start_timeout.count() > 0 ? plugin->start_timeout : config_.kernel.start_timeout;
      auto outcome = std::make_shared<std::promise<std::string>>();
      auto finished = outcome->get_future();
      std::thread starter([instance = plugin->instance.get(), outcome] {
        try {
          instance->start();
          outcome->set_value({});
        } catch (const std::exception& e) {
          outcome->set_value(e.what());
        }
      });
      if (finished.wait_for(limit) == std::future_status::timeout) {
        starter.detach();
        plugin->abandoned = true;
        overran = true;
        failure = fmt::format("plugin '{}': start() did not return within {} ms (kernel.start_timeout, or "
                              "plugins.{}.start_timeout); refused",
                              plugin->name(), limit.count(), plugin->name());
      } else {
        starter.join();
        failure = finished.get();
      }
    }
    if (!failure.empty()) {
      bus_.publish(events::PluginFailed{plugin->name(), "start", failure});
      logger().error("Plugin failed to start", {{"plugin", plugin->name()}, {"error", failure}});
      // An overrun start() may still register services later: never carry on beside it.
      if (plugin->optional && !overran) {
        drop_optional(*plugin, "start", failure);
        continue;
      }
      plugin->state = PluginState::failed;
      plugin->note = failure;
      stop();
      throw KernelError(failure);
    }
    plugin->state = PluginState::started;
    double took = millis_since(started_at);
    logger().info("Plugin started", {{"plugin", plugin->name()}, {"version", plugin->file.manifest.version}, {"ms", took}});
    bus_.publish(events::PluginStarted{plugin->name(), plugin->file.manifest.version, took});
    for (const auto& service : plugin->file.manifest.provides)
      if (!registry_.has(service))
        logger().warn("Plugin declared a service it did not register", {{"plugin", plugin->name()}, {"service", service}});
  }
  if (stop_requested && stop_requested->load()) {
    logger().info("Shutdown requested during start-up; stopping what started");
    stop();
    return false;
  }
  for (const auto& name : settings_->undefined_config_settings())
    logger().warn("company.yaml sets a setting that no running plugin defines (a typo, or its plugin is off)",
                  {{"setting", name}});
  if (only_service_.empty() && registry_.has(Store::service_id))
    backup_scheduler_ = std::make_unique<BackupScheduler>(settings_, registry_, bus_);
  serving_ = true;
  return true;
}

// Phase one of a stop: every Listener stops taking work and lets what is in flight finish, all at
// once, within the shutdown budget. Plugins are stopped only after it, so nothing a request in
// flight depends on goes away under it.
void Kernel::drain_listeners(Clock::time_point deadline) {
  auto listeners = registry_.all<Listener>();
  if (listeners.empty()) return;
  auto began = Clock::now();
  auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - began);
  std::vector<std::pair<std::string, std::future<void>>> drains;
  for (auto& listener : listeners)
    drains.emplace_back(listener->name(), std::async(std::launch::async, [listener, grace] { listener->drain(grace); }));
  std::vector<std::string> late;
  for (auto& [name, drained] : drains) {
    if (drained.wait_until(deadline + std::chrono::seconds(1)) == std::future_status::ready) {
      try {
        drained.get();
      } catch (const std::exception& error) {
        logger().warn("Listener failed to drain", {{"listener", name}, {"error", error.what()}});
      }
    } else {
      late.push_back(name);
    }
  }
  auto ms = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
  if (late.empty())
    logger().info("Listeners drained", {{"listeners", drains.size()}, {"ms", ms}});
  else
    logger().warn("Listeners still draining past kernel.shutdown_timeout; stopping plugins anyway",
                  {{"late", join(late)}, {"ms", ms}});
  // A drain still running keeps its listener alive through its future, so it is let finish
  // before this returns: std::future from std::async joins in its destructor.
}

bool Kernel::stop() {
  serving_ = false;
  backup_scheduler_.reset();  // a backup in progress finishes first: the Store is still there
  const auto deadline = Clock::now() + config_.kernel.shutdown_timeout;
  bool clean = true;
  drain_listeners(deadline);
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    Loaded& plugin = **it;
    if (plugin.state != PluginState::started) continue;
    // Each plugin gets what is left of the budget, and never less than a moment.
    auto budget = std::max<Clock::duration>(deadline - Clock::now(), std::chrono::milliseconds(100));
    auto outcome = std::make_shared<std::promise<std::string>>();
    auto finished = outcome->get_future();
    std::thread stopper([instance = plugin.instance.get(), outcome] {
      try {
        instance->stop();
        outcome->set_value({});
      } catch (const std::exception& e) {
        outcome->set_value(e.what());
      }
    });
    std::string error;
    if (finished.wait_for(budget) == std::future_status::timeout) {
      stopper.detach();
      plugin.abandoned = true;
      clean = false;
      error = "plugin '" + plugin.name() + "' did not stop within " +
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(budget).count()) +
              "ms (kernel.shutdown_timeout); abandoned";
    } else {
      stopper.join();
      error = finished.get();
    }
    if (!error.empty()) {
      logger().error("Plugin failed to stop cleanly", {{"plugin", plugin.name()}, {"error", error}});
      bus_.publish(events::PluginFailed{plugin.name(), "stop", error});
    }
    auto leftovers = plugin.context->sweep();
    if (leftovers)
      logger().warn("Plugin left registrations or subscriptions after stop; swept",
                    {{"plugin", plugin.name()}, {"count", leftovers}});
    plugin.state = PluginState::stopped;
    logger().info("Plugin stopped", {{"plugin", plugin.name()}});
    bus_.publish(events::PluginStopped{plugin.name(), leftovers});
  }
  return clean;
}

std::vector<PluginSummary> Kernel::plugins() const {
  std::vector<PluginSummary> out;
  for (const auto& plugin : discovered_) out.push_back({plugin->file, plugin->state, plugin->note});
  return out;
}

std::vector<std::string> Kernel::start_order() const {
  std::vector<std::string> out;
  for (auto* plugin : order_) out.push_back(plugin->name());
  return out;
}

}  // namespace synthorg::kernel
