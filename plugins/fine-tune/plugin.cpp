// fine-tune: resumable multi-stage fine-tuning runs. Each stage (generating_data,
// mining_negatives, training, evaluating, deploying) is one hardened one-shot container started
// through the selected Orchestrator; its progress comes from its log stream, its state lives in
// the Store, and a restarted kernel re-attaches to the stage still running. Admin API under
// /api/v1/fine-tune; events fine_tune.progress, fine_tune.stage, fine_tune.finished.
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <stdexcept>

#include <fmt/format.h>

#include "manager.hpp"
#include "routes.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;

// A volume's name as Docker takes it ([a-zA-Z0-9][a-zA-Z0-9_.-]+): mounted by name, not as a path.
bool volume_name(const std::string& text) {
  static const std::regex pattern("[A-Za-z0-9][A-Za-z0-9_.-]+");
  return std::regex_match(text, pattern);
}

std::chrono::milliseconds ms(const json& config, const char* key) {
  return std::chrono::milliseconds(config.at(key).get<std::int64_t>());
}

class FineTunePlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {
        .name = "fine-tune",
        .version = "0.1.0",
        .description = "Resumable multi-stage fine-tuning runs, each stage a one-shot hardened container",
        .provides = {std::string(FineTune::service_id)},
        .needs = {{"synthorg.Orchestrator/1", true},
                  {"synthorg.Store/1", true},
                  {"synthorg.HttpRouter/1", true},
                  {"synthorg.Authenticator/1", true},
                  {"synthorg.Executor/1", true}},
        .config =
            ConfigMap{}
                .enumeration("variant", {"cpu", "gpu"}, "cpu",
                             "Which stage image runs: gpu asks the orchestrator for GPUs (SYNTHORG_FINE_TUNE_IMAGE, "
                             "when set, names the image instead)")
                .string("gpu_image", "ghcr.io/synthorg/fine-tune-gpu:latest", "The stage image of the gpu variant")
                .string("cpu_image", "ghcr.io/synthorg/fine-tune-cpu:latest", "The stage image of the cpu variant")
                .string_list("command", {}, "The command every stage runs; empty keeps the image's own")
                .string_map("env", "Environment variables given to every stage (never logged)")
                .string("data_dir", "",
                        "The run's data and outputs, mounted in every stage: an absolute host directory or a "
                        "volume name (synthorg-data); SYNTHORG_ARTIFACT_DIR, when set, wins; empty: none")
                .string("data_target", "/data", "Where the data directory appears inside the stage")
                .string_list("read_only_stages", {"evaluating"}, "Stages that only read the data directory: "
                                                                 "mounted read-only for them")
                .duration("stage_timeout", "2h", "A stage running longer is stopped and its run fails (timeout)")
                .range(1000, 30LL * 86'400'000)
                .duration("stop_grace", "10s", "How long a stopped stage may take to exit before it is killed")
                .range(0, 300'000)
                .integer("health_port", 15002,
                         "The port of the stage's GET /healthz, given to the stage as SYNTHORG_FINE_TUNE_HEALTH_PORT; "
                         "that variable, when set here, wins")
                .range(1, 65535)
                .duration("health_interval", "10s", "How often a running stage's health port is probed")
                .range(100, 3'600'000)
                .integer("health_failures", 3, "Failed probes in a row before a stage is reported unresponsive")
                .range(1, 1000)
                .duration("preflight_timeout", "1m", "How long the preflight stage may run")
                .range(1000, 3'600'000)
                .integer("max_active_runs", 1, "Runs active at once; one more answers 409 too_many_active_runs")
                .range(1, 100)
                .string("memory_limit", "8g", "Memory limit per stage: 512m, 8g, bytes; 0 for none")
                .number("cpu_limit", 0, "CPUs per stage; 0 for no limit")
                .range(0, 1024)
                .integer("pids_limit", 1024, "Processes per stage")
                .range(1, 4'194'304)
                .integer("gpu_count", -1, "GPUs per stage of the gpu variant; -1: all the host has")
                .range(-1, 64)
                .string("user", "65534:65534", "uid[:gid] the stages run as; never root")
                .string("tmp_options", "rw,noexec,nosuid,nodev,size=1g", "Options of the tmpfs mounted at /tmp")
                .string("network", "", "The orchestrator network to attach stages to; empty: its default")
                .string("instance", "default",
                        "Names this kernel's stage containers (label synthorg.instance): kernels sharing one "
                        "engine use different values")
                .pattern("^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")};
  }
  explicit FineTunePlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    Options options;
    options.variant = config.at("variant").get<std::string>();
    options.image = config.at(options.variant == "gpu" ? "gpu_image" : "cpu_image").get<std::string>();
    if (const char* image = std::getenv("SYNTHORG_FINE_TUNE_IMAGE"); image && *image) options.image = image;
    if (options.image.empty())
      throw std::invalid_argument(options.variant + "_image: give the stage image (or set SYNTHORG_FINE_TUNE_IMAGE)");
    options.command = config.at("command").get<std::vector<std::string>>();
    if (config.contains("env") && config.at("env").is_object())
      options.env = config.at("env").get<std::map<std::string, std::string>>();
    options.data_dir = config.at("data_dir").get<std::string>();
    std::string data_dir_origin = "data_dir";
    if (const char* artifacts = std::getenv("SYNTHORG_ARTIFACT_DIR"); artifacts && *artifacts) {
      options.data_dir = artifacts;
      data_dir_origin = "SYNTHORG_ARTIFACT_DIR";
    }
    if (!options.data_dir.empty() && options.data_dir.front() != '/' && !volume_name(options.data_dir))
      throw std::invalid_argument(fmt::format(
          "{}: '{}' is neither an absolute host path nor a volume name (fix: /srv/synthorg/artifacts, or a volume "
          "such as synthorg-data: letters, digits, '_', '.', '-')",
          data_dir_origin, options.data_dir));
    options.data_target = config.at("data_target").get<std::string>();
    if (options.data_target.empty() || options.data_target.front() != '/' || options.data_target == "/tmp")
      throw std::invalid_argument("data_target: '" + options.data_target + "' must be an absolute path other than /tmp");
    options.read_only_stages = config.at("read_only_stages").get<std::vector<std::string>>();
    for (const auto& stage : options.read_only_stages)
      if (std::find(stage_names.begin(), stage_names.end(), stage) == stage_names.end())
        throw std::invalid_argument(fmt::format("read_only_stages: '{}' is not a stage (the stages: {})", stage,
                                                fmt::join(stage_names, ", ")));
    options.stage_timeout = ms(config, "stage_timeout");
    options.stop_grace = std::chrono::duration_cast<std::chrono::seconds>(ms(config, "stop_grace"));
    options.health_port = static_cast<std::uint16_t>(config.at("health_port").get<std::int64_t>());
    if (const char* port = std::getenv("SYNTHORG_FINE_TUNE_HEALTH_PORT"); port && *port) {
      int value = 0;
      auto [end, error] = std::from_chars(port, port + std::strlen(port), value);
      if (error != std::errc() || *end != '\0' || value < 1 || value > 65535)
        throw std::invalid_argument(fmt::format(
            "SYNTHORG_FINE_TUNE_HEALTH_PORT: '{}' is not a port (fix: a number from 1 to 65535, 15002 by default)",
            port));
      options.health_port = static_cast<std::uint16_t>(value);
    }
    options.health_interval = ms(config, "health_interval");
    options.health_failures = config.at("health_failures").get<std::int64_t>();
    options.preflight_timeout = ms(config, "preflight_timeout");
    options.max_active_runs = config.at("max_active_runs").get<std::int64_t>();
    auto memory = config.at("memory_limit").get<std::string>();
    try {
      options.memory_bytes = memory == "0" ? 0 : orchestrator::parse_memory(memory);
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(fmt::format("memory_limit: {} (fix: 8g, 512m or a number of bytes)", error.what()));
    }
    options.cpus = config.at("cpu_limit").get<double>();
    options.pids_limit = config.at("pids_limit").get<std::int64_t>();
    options.gpu_count = static_cast<int>(config.at("gpu_count").get<std::int64_t>());
    if (options.gpu_count == 0) throw std::invalid_argument("gpu_count: 0 asks for no GPU; give -1 (all) or a count");
    options.user = config.at("user").get<std::string>();
    auto uid = options.user.substr(0, options.user.find(':'));
    if (uid.empty() || uid == "0" || uid == "root")
      throw std::invalid_argument("user: '" + options.user + "': stages never run as root; give uid[:gid] such as "
                                  "65534:65534");
    options.tmpfs_options = config.at("tmp_options").get<std::string>();
    options.network = config.at("network").get<std::string>();
    options.instance = config.at("instance").get<std::string>();
    options_ = std::move(options);
  }

  void start() override {
    auto orchestrator = context_.registry().get<Orchestrator>();
    if (!orchestrator)
      throw std::runtime_error("fine-tune runs every stage through an Orchestrator and none is running: select one "
                               "in company.yaml (select: {orchestrator: auto}) or disable fine-tune");
    auto store = context_.registry().get<Store>();
    auto router = context_.registry().get<HttpRouter>();
    if (!store || !router) throw std::runtime_error("the Store and HttpRouter services are required");

    // start() runs on the kernel's thread: blocking on the Store and the orchestrator is fine here.
    auto manager = std::make_shared<Manager>(options_, store, orchestrator, context_.bus(), log::Logger("fine-tune"));
    manager->ensure_collection();
    try {
      manager->reconcile();
    } catch (const OrchestratorError& error) {
      // An engine down now does not keep the kernel down: the next API call reconciles.
      context_.log().warn("could not reconcile fine-tune runs now; the next API call tries again",
                          {{"reason", to_string(error.code())}, {"error", error.what()}});
    }
    auto routes = mount_routes(*router, std::make_shared<RouteContext>(RouteContext{
                                            context_.executor(), manager, log::Logger("fine-tune")}));
    auto registration = context_.registry().provide<FineTune>(manager);
    manager_ = std::move(manager);
    routes_ = std::move(routes);
    registration_ = std::move(registration);
    context_.log().info("fine-tune ready", {{"image", options_.image},
                                            {"variant", options_.variant},
                                            {"orchestrator", orchestrator->backend()},
                                            {"max_active_runs", options_.max_active_runs},
                                            {"active", manager_->counters().active}});
  }

  void stop() override {
    routes_.clear();
    registration_.reset();
    // Stages keep running: the next start re-attaches to them.
    if (manager_) manager_->detach_all();
    manager_.reset();
  }

 private:
  PluginContext& context_;
  Options options_;
  std::vector<Token> routes_;
  Registration registration_;
  std::shared_ptr<Manager> manager_;
};

}  // namespace
}  // namespace synthorg::fine_tune

SYNTHORG_PLUGIN(synthorg::fine_tune::FineTunePlugin)
