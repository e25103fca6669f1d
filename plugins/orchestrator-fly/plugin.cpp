// orchestrator-fly: workloads as Fly Machines in one Fly app, through the Machines API. The
// token comes from FLY_API_TOKEN only (never from company.yaml, never logged). Readiness
// follows the API: down with the reason (and what to do) while it refuses or cannot be
// reached.
#include <cstdlib>
#include <stdexcept>

#include "fly_orchestrator.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::orchestrator_fly {
namespace {

// An empty variable counts as unset: compose and .env files often write `NAME=`.
const char* environment(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

class FlyPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "orchestrator-fly",
            .version = "0.1.0",
            .description = "The Orchestrator on Fly.io: one Fly Machine per workload in one app, through the "
                           "Machines API; labels kept as machine metadata, endpoints on the private network",
            .provides = {std::string(Orchestrator::service_id), std::string(HealthCheck::service_id)},
            .needs = {},
            .config = ConfigMap{}
                          .string("api_url", std::string(default_api_url),
                                  "The Machines API; FLY_FLAPS_BASE_URL, when set, wins (as in fly-go). Inside "
                                  "Fly's private network http://_api.internal:4280 also works")
                          .string("app", "",
                                  "The Fly app the machines belong to (create it first: fly apps create NAME). "
                                  "Empty: FLY_APP_NAME")
                          .string("ca_file", "",
                                  "PEM CA bundle to trust for api_url instead of the system's (a private proxy, "
                                  "or tests)")
                          .string("region", "", "Region for new machines, e.g. ams or iad; empty lets Fly choose")
                          .enumeration("cpu_kind", {"shared", "performance"}, "shared",
                                       "Guest CPU kind; performance CPUs need at least 2048 MiB each")
                          .string("gpu_kind", "",
                                  "Fly GPU kind (a10, l40s, a100-pcie-40gb...) for specs that ask for GPUs; "
                                  "empty refuses such specs")
                          .duration("request_timeout", "30s", "Longest one Machines API call may take")
                          .range(1000, 600'000)
                          .duration("start_timeout", "5m",
                                    "How long spawn waits for a new machine to start (image pull included) "
                                    "before removing it and failing")
                          .range(1000, 3'600'000)
                          .integer("page_size", 100, "Machines per page when listing (the API allows 1-1000)")
                          .range(1, 1000)};
  }
  explicit FlyPlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    FlyOptions options;
    const char* token = environment("FLY_API_TOKEN");
    if (!token)
      throw std::invalid_argument(
          "FLY_API_TOKEN is not set: orchestrator-fly needs a Fly API token with access to the app; create one "
          "with `fly tokens create deploy -a <app>` and pass it in the FLY_API_TOKEN environment variable");
    options.api.token = token;
    options.api.app = config.at("app").get<std::string>();
    if (options.api.app.empty())
      if (const char* app = environment("FLY_APP_NAME")) options.api.app = app;
    if (options.api.app.empty())
      throw std::invalid_argument("no Fly app: set plugins.orchestrator-fly.config.app (or FLY_APP_NAME) to the "
                                  "app the machines belong to");
    const char* base_url = environment("FLY_FLAPS_BASE_URL");
    options.api.base_url = base_url ? base_url : config.at("api_url").get<std::string>();
    options.api.ca_file = config.at("ca_file").get<std::string>();
    options.api.request_timeout = std::chrono::milliseconds(config.at("request_timeout").get<std::int64_t>());
    options.mapping.region = config.at("region").get<std::string>();
    options.mapping.cpu_kind = config.at("cpu_kind").get<std::string>();
    options.mapping.gpu_kind = config.at("gpu_kind").get<std::string>();
    options.start_timeout = std::chrono::milliseconds(config.at("start_timeout").get<std::int64_t>());
    options.page_size = config.at("page_size").get<std::int64_t>();
    // Fails now, naming the setting, if the URL or CA cannot be used at all.
    FlyApi probe(options.api);
    options_ = std::move(options);
    configured_ = true;
  }

  void start() override {
    if (!configured_) throw std::logic_error("orchestrator-fly was started before it was configured");
    auto orchestrator = std::make_shared<FlyOrchestrator>(options_, context_.log());
    auto closable = std::make_shared<orchestrator::ClosableOrchestrator>(orchestrator);
    auto provided = context_.registry().provide<Orchestrator>(closable);
    auto health = context_.registry().provide<HealthCheck>(orchestrator::health_check(orchestrator));
    orchestrator_registration_ = std::move(provided);
    health_registration_ = std::move(health);
    closable_ = std::move(closable);
    // Not reaching the API now is not fatal: readiness reports it until Fly answers.
    auto status = orchestrator->health();
    if (status.up)
      context_.log().info("Fly Machines API reachable", {{"api_url", status.info.value("api_url", "")},
                                                         {"app", options_.api.app}});
    else
      context_.log().warn("Fly Machines API not usable yet", {{"app", options_.api.app}, {"reason", status.detail}});
  }

  void stop() override {
    health_registration_.reset();
    orchestrator_registration_.reset();
    if (closable_) closable_->close();  // a lease still held now gets `unavailable`
    closable_.reset();
  }

 private:
  PluginContext& context_;
  FlyOptions options_;
  std::shared_ptr<orchestrator::ClosableOrchestrator> closable_;
  bool configured_ = false;
  Registration orchestrator_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::orchestrator_fly

SYNTHORG_PLUGIN(synthorg::orchestrator_fly::FlyPlugin)
