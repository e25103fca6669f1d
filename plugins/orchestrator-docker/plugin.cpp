// orchestrator-docker: workloads as containers on a Docker engine, through its API on the unix
// socket (or TCP). Readiness follows the engine: down with the reason while it cannot be
// reached, up again as soon as it answers.
#include <cstdlib>

#include "docker_orchestrator.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::orchestrator_docker {
namespace {

class DockerPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "orchestrator-docker",
            .version = "0.1.0",
            .description = "The Orchestrator on a Docker engine (API 1.41 and newer): hardened containers, "
                           "ports published on loopback, images pulled when missing",
            .provides = {std::string(Orchestrator::service_id), std::string(HealthCheck::service_id)},
            .needs = {},
            .config = ConfigMap{}
                          .string("host", "",
                                  "The engine: unix:///var/run/docker.sock, tcp://host:2375 or https://host:2376. "
                                  "Empty: DOCKER_HOST, else unix:///var/run/docker.sock")
                          .string("publish_address", "127.0.0.1",
                                  "Host address container ports are published on; keep loopback unless something "
                                  "else must reach workloads directly")
                          .enumeration("endpoint_mode", {"published", "container_ip"}, "published",
                                       "How the kernel reaches a workload's port: through the port published on the "
                                       "host, or at the container's own address (when the kernel runs in a container "
                                       "on the same Docker network)")
                          .boolean("pull_missing", true, "Pull an image the engine does not have before creating")
                          .duration("request_timeout", "30s", "Longest an Engine API call may take")
                          .range(1000, 600'000)
                          .duration("pull_timeout", "10m", "Longest an image pull may take")
                          .range(1000, 86'400'000)};
  }
  explicit DockerPlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    DockerOptions options;
    options.host = config.at("host").get<std::string>();
    if (options.host.empty()) {
      const char* from_env = std::getenv("DOCKER_HOST");
      options.host = from_env && *from_env ? from_env : "unix:///var/run/docker.sock";
    }
    options.mapping.publish_address = config.at("publish_address").get<std::string>();
    options.container_ip_endpoints = config.at("endpoint_mode").get<std::string>() == "container_ip";
    options.pull_missing = config.at("pull_missing").get<bool>();
    options.request_timeout = std::chrono::milliseconds(config.at("request_timeout").get<std::int64_t>());
    options.pull_timeout = std::chrono::milliseconds(config.at("pull_timeout").get<std::int64_t>());
    // Fails now, naming the setting, if the address cannot be used at all.
    DockerEngine probe(options.host, options.request_timeout);
    options_ = std::move(options);
  }

  void start() override {
    auto orchestrator = std::make_shared<DockerOrchestrator>(options_, context_.log());
    auto closable = std::make_shared<orchestrator::ClosableOrchestrator>(orchestrator);
    auto provided = context_.registry().provide<Orchestrator>(closable);
    auto health = context_.registry().provide<HealthCheck>(orchestrator::health_check(orchestrator));
    orchestrator_registration_ = std::move(provided);
    health_registration_ = std::move(health);
    closable_ = std::move(closable);
    // Not reaching the engine now is not fatal: readiness reports it until the engine answers.
    auto status = orchestrator->health();
    if (status.up)
      context_.log().info("Docker engine reachable", {{"host", status.info.value("host", "")},
                                                      {"engine_version", status.info.value("engine_version", "")}});
    else
      context_.log().warn("Docker engine not reachable yet", {{"reason", status.detail}});
  }

  void stop() override {
    health_registration_.reset();
    orchestrator_registration_.reset();
    if (closable_) closable_->close();  // a lease still held now gets `unavailable`
    closable_.reset();
  }

 private:
  PluginContext& context_;
  DockerOptions options_;
  std::shared_ptr<orchestrator::ClosableOrchestrator> closable_;
  Registration orchestrator_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::orchestrator_docker

SYNTHORG_PLUGIN(synthorg::orchestrator_docker::DockerPlugin)
