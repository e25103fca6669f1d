// workloads: each signed-in user's own sandboxed container, started on first use through the
// selected Orchestrator, recorded in the Store, reaped when idle, and reconciled at start so a
// restart (or a SIGKILL) loses nothing. Provides the Workloads service and /api/v1/workloads.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "manager.hpp"
#include "rate_limit.hpp"
#include "routes.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/metrics.hpp"
#include "synthorg/services/settings.hpp"

namespace synthorg::workloads {
namespace {

using nlohmann::json;

SettingDefinition integer_setting(std::string key, std::int64_t value, std::string description) {
  SettingDefinition definition;
  definition.space = "workloads";
  definition.key = std::move(key);
  definition.type = SettingType::integer;
  definition.default_value = value;
  definition.minimum = 1;
  definition.maximum = 1'000'000;
  definition.description = std::move(description);
  return definition;
}

// Runs the reaper every reap_interval on the kernel's io_context; the reaping itself goes to the
// blocking pool, one round at a time.
class Reaper : public std::enable_shared_from_this<Reaper> {
 public:
  Reaper(Executor& executor, std::shared_ptr<Manager> manager, std::chrono::milliseconds interval, log::Logger log)
      : executor_(executor), manager_(std::move(manager)), interval_(interval), timer_(executor.io_context()),
        log_(std::move(log)) {}
  void start() { arm(); }
  void stop() {
    stopped_ = true;
    executor_.post([self = shared_from_this()] { self->timer_.cancel(); });
  }

 private:
  void arm() {
    timer_.expires_after(interval_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      if (error || self->stopped_) return;
      if (!self->running_.exchange(true)) {
        bool queued = self->executor_.try_post_blocking([self] {
          try {
            if (!self->stopped_ && !self->manager_->reconciled()) self->manager_->reconcile();
            if (!self->stopped_) self->manager_->reap();
          } catch (const std::exception& failure) {
            self->log_.warn("the idle reaper failed; trying again next round", {{"error", failure.what()}});
          }
          self->running_ = false;
        });
        if (!queued) self->running_ = false;
      }
      self->arm();
    });
  }

  Executor& executor_;
  std::shared_ptr<Manager> manager_;
  std::chrono::milliseconds interval_;
  boost::asio::steady_timer timer_;
  log::Logger log_;
  std::atomic<bool> stopped_{false}, running_{false};
};

// The counters /health/detailed shows, as Prometheus families on /metrics, read at each scrape.
Token export_counters(Metrics& metrics, std::shared_ptr<Manager> manager) {
  auto active = metrics.gauge("synthorg_workloads_active", "Workloads starting or running on this kernel");
  auto spawned = metrics.counter("synthorg_workloads_spawned_total", "Workload containers started by this process");
  auto stopped = metrics.counter("synthorg_workloads_stopped_total",
                                 "Workload containers stopped by this process (idle, user, shutdown, failed)");
  auto seen = std::make_shared<WorkloadCounters>();
  std::weak_ptr<Manager> weak = manager;
  return metrics.add_collector([weak, active, spawned, stopped, seen] {
    auto manager = weak.lock();
    if (!manager) return;
    auto now = manager->counters();
    active->set(static_cast<double>(now.active));
    spawned->add(static_cast<double>(now.total_spawned - seen->total_spawned));
    stopped->add(static_cast<double>(now.total_stopped - seen->total_stopped));
    *seen = now;
  });
}

class WorkloadsPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {
        .name = "workloads",
        .version = "0.1.0",
        .description = "A sandboxed container per signed-in user, started on demand, reaped when idle, reconciled "
                       "at start",
        .provides = {std::string(Workloads::service_id)},
        .needs = {{"synthorg.Orchestrator/1", true},
                  {std::string(Metrics::service_id), false},
                  {"synthorg.Store/1", true},
                  {"synthorg.HttpRouter/1", true},
                  {"synthorg.Authenticator/1", true},
                  {"synthorg.Settings/1", true},
                  {"synthorg.Executor/1", true}},
        .config =
            ConfigMap{}
                .string("image", "", "The image every user's workload runs (e.g. a SQL engine or notebook)")
                .required()
                .string_list("command", {}, "The command to run; empty keeps the image's own")
                .integer("port", 0, "The port the workload serves HTTP on inside the container (the proxy routes); 0: none")
                .range(0, 65535)
                .integer("grpc_port", 0,
                         "The port the workload serves gRPC on inside the container (the Flight SQL gateway's calls); "
                         "0: none")
                .range(0, 65535)
                .string_map("env", "Environment variables given to every workload")
                .string_list("pass_env", {"DATABASE_URL"},
                             "Variables copied from the kernel's environment, when set there, into every workload "
                             "(PondPilot's DATABASE_URL: the databases users query); env wins. Never SYNTHORG_* or "
                             "JWT_SECRET")
                .duration("idle_timeout", "5m",
                          "A workload unused this long is stopped (CONTAINER_IDLE_TIMEOUT, in milliseconds, wins)")
                .range(1000, 30LL * 86'400'000)
                .string("memory_limit", "512m", "Memory limit per workload: 512m, 1g, bytes; 0 for none")
                .number("cpu_limit", 0.5, "CPUs per workload (0.5 is half a core); 0 for none")
                .range(0, 1024)
                .integer("pids_limit", 256, "Processes per workload; 0 for none")
                .range(0, 4'194'304)
                .integer("max_per_host", 100, "Workloads running at once on this kernel; more get 503 max_per_host")
                .range(1, 100'000)
                .string("network", "", "The orchestrator network to attach workloads to; empty: its default")
                .duration("reap_interval", "1m", "How often the idle reaper looks")
                .range(100, 3'600'000)
                .duration("failure_cooldown", "30s",
                          "How long a failed spawn is answered as is before the next attempt (no retry storm)")
                .range(0, 86'400'000)
                .duration("ready_timeout", "30s",
                          "How long a new workload may take to answer its first HTTP request on `port` (or, with "
                          "grpc_port alone, to accept a connection there) before it counts as failed (reason not_ready)")
                .range(100, 3'600'000)
                .duration("stop_grace", "5s", "How long a workload may take to stop before it is killed")
                .range(0, 300'000)
                .boolean("read_only_root", true, "Mount the workload's root filesystem read-only")
                .boolean("drop_capabilities", true, "Drop every Linux capability")
                .boolean("no_new_privileges", true, "Forbid gaining privileges (setuid binaries)")
                .string("user", "65534:65534", "uid[:gid] the workload runs as; empty keeps the image's")
                .string("tmp_options", "rw,noexec,nosuid,nodev,size=64m", "Options of the tmpfs mounted at /tmp")
                .boolean("stop_on_shutdown", false,
                         "Stop every workload when the kernel stops (reason shutdown); by default they keep "
                         "running and the next start adopts them")
                .string("instance", "default",
                        "Names this kernel's workloads (label synthorg.instance): kernels sharing one engine use "
                        "different values so reconciliation leaves the others' alone")
                .pattern("^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")};
  }
  explicit WorkloadsPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    Options options;
    options.image = config.at("image").get<std::string>();
    if (options.image.empty()) throw std::invalid_argument("image: give the image every workload runs");
    options.command = config.at("command").get<std::vector<std::string>>();
    options.port = static_cast<std::uint16_t>(config.at("port").get<std::int64_t>());
    options.grpc_port = static_cast<std::uint16_t>(config.at("grpc_port").get<std::int64_t>());
    if (config.contains("env") && config.at("env").is_object())
      options.env = config.at("env").get<std::map<std::string, std::string>>();
    for (const auto& name : config.at("pass_env").get<std::vector<std::string>>()) {
      if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name.front())) || name.front() == '_') ||
          !std::ranges::all_of(name, [](unsigned char c) { return std::isalnum(c) || c == '_'; }))
        throw std::invalid_argument("pass_env: '" + name + "' is not a variable name (fix: letters, digits and '_')");
      // The kernel's own secrets and settings are never handed to what users run.
      if (name.starts_with("SYNTHORG_") || name == "JWT_SECRET")
        throw std::invalid_argument("pass_env: '" + name + "' is the kernel's own; it is never passed to users' "
                                    "workloads (fix: remove it; give a workload what it needs under env)");
      if (const char* value = std::getenv(name.c_str()); value && *value) options.env.try_emplace(name, value);
    }
    options.idle_timeout = std::chrono::milliseconds(config.at("idle_timeout").get<std::int64_t>());
    if (const char* legacy = std::getenv("CONTAINER_IDLE_TIMEOUT"); legacy && *legacy) {
      std::size_t used = 0;
      long long ms = 0;
      try {
        ms = std::stoll(legacy, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || legacy[used] != '\0' || ms < 1000)
        throw std::invalid_argument(fmt::format(
            "CONTAINER_IDLE_TIMEOUT={}: must be whole milliseconds, at least 1000 (or unset it and use idle_timeout)",
            legacy));
      options.idle_timeout = std::chrono::milliseconds(ms);
    }
    auto memory = config.at("memory_limit").get<std::string>();
    try {
      options.memory_bytes = memory == "0" ? 0 : orchestrator::parse_memory(memory);
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(fmt::format("memory_limit: {} (fix: 512m, 1g or a number of bytes)", error.what()));
    }
    options.cpus = config.at("cpu_limit").get<double>();
    options.pids_limit = config.at("pids_limit").get<std::int64_t>();
    options.max_per_host = config.at("max_per_host").get<std::int64_t>();
    options.network = config.at("network").get<std::string>();
    options.reap_interval = std::chrono::milliseconds(config.at("reap_interval").get<std::int64_t>());
    options.failure_cooldown = std::chrono::milliseconds(config.at("failure_cooldown").get<std::int64_t>());
    options.ready_timeout = std::chrono::milliseconds(config.at("ready_timeout").get<std::int64_t>());
    options.stop_grace = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::milliseconds(config.at("stop_grace").get<std::int64_t>()));
    options.read_only_root = config.at("read_only_root").get<bool>();
    options.drop_all_capabilities = config.at("drop_capabilities").get<bool>();
    options.no_new_privileges = config.at("no_new_privileges").get<bool>();
    options.user = config.at("user").get<std::string>();
    options.tmpfs_options = config.at("tmp_options").get<std::string>();
    options.stop_on_shutdown = config.at("stop_on_shutdown").get<bool>();
    options.instance = config.at("instance").get<std::string>();
    options_ = std::move(options);
  }

  void start() override {
    auto store = context_.registry().get<Store>();
    auto orchestrator = context_.registry().get<Orchestrator>();
    auto router = context_.registry().get<HttpRouter>();
    auto settings = context_.registry().get<Settings>();
    if (!store || !orchestrator || !router || !settings)
      throw std::runtime_error("the Store, Orchestrator, HttpRouter and Settings services are required");
    std::vector<Token> definitions;
    definitions.push_back(settings->define(
        integer_setting("requests_per_minute", 100, "Workload API requests a user may make per minute (refill rate)")));
    definitions.push_back(
        settings->define(integer_setting("burst_size", 200, "Workload API requests a user may make in one burst")));

    // start() runs on the kernel's thread: blocking on the Store and the orchestrator is fine here.
    auto manager = std::make_shared<Manager>(options_, store, orchestrator, context_.bus(), log::Logger("workloads"));
    manager->ensure_collection();
    try {
      manager->reconcile();
    } catch (const OrchestratorError& error) {
      // Like orchestrator-docker, an engine that is down now does not keep the kernel down.
      context_.log().warn("could not reconcile workloads now; the reaper retries every round",
                          {{"reason", to_string(error.code())}, {"error", error.what()}});
    }
    auto& executor = context_.executor();
    // One token bucket per user for the HTTP routes and the gateway's calls alike.
    auto limiter = std::make_shared<RateLimiter>();
    manager->set_rate_limit(limiter, settings);
    auto routes = mount_routes(*router, std::make_shared<RouteContext>(RouteContext{
                                            executor, manager, settings, limiter, log::Logger("workloads")}));
    auto registration = context_.registry().provide<Workloads>(manager);
    auto reaper = std::make_shared<Reaper>(executor, manager, options_.reap_interval, log::Logger("workloads"));
    reaper->start();

    definitions_ = std::move(definitions);
    manager_ = std::move(manager);
    routes_ = std::move(routes);
    registration_ = std::move(registration);
    reaper_ = std::move(reaper);
    if (auto metrics = context_.registry().get<Metrics>()) collector_ = export_counters(*metrics, manager_);
    context_.log().info("workloads ready",
                        {{"image", options_.image},
                         {"orchestrator", orchestrator->backend()},
                         {"idle_timeout_ms", static_cast<std::int64_t>(options_.idle_timeout.count())},
                         {"max_per_host", options_.max_per_host},
                         {"active", manager_->counters().active}});
  }

  void stop() override {
    collector_.reset();
    if (reaper_) reaper_->stop();
    reaper_.reset();
    routes_.clear();
    registration_.reset();
    if (manager_ && options_.stop_on_shutdown) manager_->stop_all("shutdown");
    manager_.reset();
    definitions_.clear();
  }

 private:
  PluginContext& context_;
  Options options_;
  std::vector<Token> definitions_;
  std::vector<Token> routes_;
  Registration registration_;
  Token collector_;
  std::shared_ptr<Manager> manager_;
  std::shared_ptr<Reaper> reaper_;
};

}  // namespace
}  // namespace synthorg::workloads

SYNTHORG_PLUGIN(synthorg::workloads::WorkloadsPlugin)
