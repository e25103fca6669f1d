// orchestrator-kubernetes: workloads as Pods, through the Kubernetes API server. Runs in a pod
// with a service account (packaging/k8s/ grants exactly what it needs), or from anywhere with a
// kubeconfig. docs/orchestrators.md describes the configuration, the RBAC and the mapping.
#include <memory>
#include <stdexcept>

#include "api_client.hpp"
#include "cluster_config.hpp"
#include "kubernetes_orchestrator.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::orchestrator_kubernetes {
namespace {

class KubernetesPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {
        .name = "orchestrator-kubernetes",
        .version = "0.1.0",
        .description = "The Orchestrator on Kubernetes: one Pod per workload in one namespace, through the API server "
                       "with a service account token (in-cluster) or a kubeconfig",
        .provides = {std::string(Orchestrator::service_id), std::string(HealthCheck::service_id)},
        .needs = {},
        .config =
            ConfigMap{}
                .string("kubeconfig", "",
                        "Path of a kubeconfig file to use instead of the pod's service account (its current-context, "
                        "or `context`). Users must authenticate with a bearer token (token or tokenFile)")
                .string("context", "", "The kubeconfig context to use instead of its current-context")
                .string("server", "",
                        "The API server's HTTPS URL (https://host:6443), instead of in-cluster or kubeconfig; "
                        "use with token_file and ca_file")
                .string("ca_file", "",
                        "PEM file of the CA that signed the API server's certificate; wins over the kubeconfig's and "
                        "the service account's ca.crt (empty: theirs, else the system's trust store)")
                .string("token_file", "",
                        "File holding the bearer token; re-read every minute and after a 401, as projected tokens "
                        "rotate. Wins over the kubeconfig's user and the service account's token")
                .string("namespace", "",
                        "Namespace of the workloads' pods (empty: POD_NAMESPACE, then the service account's "
                        "namespace file, or the kubeconfig context's, else \"default\")")
                .pattern("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$")
                .string("serviceaccount_dir", default_serviceaccount_dir,
                        "Directory holding the pod's service account token, ca.crt and namespace (in-cluster)")
                .enumeration("image_pull_policy", {"IfNotPresent", "Always", "Never"}, "IfNotPresent",
                             "imagePullPolicy of the workloads' containers")
                .duration("spawn_timeout", "5m",
                          "How long spawn waits for a pod to run (scheduling and image pull) before giving up and "
                          "deleting it")
                .range(1000, 86'400'000)
                .duration("unschedulable_timeout", "0s",
                          "How long a pod may stay Unschedulable before spawn fails with `capacity` (raise it when a "
                          "cluster autoscaler adds nodes)")
                .range(0, 86'400'000)
                .duration("request_timeout", "30s", "Longest a single API request may take (watches and logs excepted)")
                .range(1000, 600'000)};
  }
  explicit KubernetesPlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    cluster_ = resolve_cluster_config(config);
    options_ = {};
    options_.pod.image_pull_policy = config.at("image_pull_policy").get<std::string>();
    options_.spawn_timeout = std::chrono::milliseconds(config.at("spawn_timeout").get<std::int64_t>());
    options_.unschedulable_timeout = std::chrono::milliseconds(config.at("unschedulable_timeout").get<std::int64_t>());
    request_timeout_ = std::chrono::milliseconds(config.at("request_timeout").get<std::int64_t>());
    // Builds the TLS context now, so that a CA that cannot be used fails here, saying so.
    try {
      ApiClient probe(cluster_, context_.log(), request_timeout_);
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument("the Kubernetes API server from " + cluster_.source +
                                  " cannot be used: " + error.what());
    }
    configured_ = true;
  }

  void start() override {
    if (!configured_) throw std::logic_error("orchestrator-kubernetes was started before it was configured");
    auto api = std::make_shared<ApiClient>(cluster_, context_.log(), request_timeout_);
    auto orchestrator = std::make_shared<KubernetesOrchestrator>(api, options_, context_.log());
    auto closable = std::make_shared<orchestrator::ClosableOrchestrator>(orchestrator);
    auto orchestrator_registration = context_.registry().provide<Orchestrator>(
        closable, ServiceProperties{0, {{"backend", "kubernetes"}}});
    auto health_registration = context_.registry().provide<HealthCheck>(orchestrator::health_check(orchestrator));
    orchestrator_registration_ = std::move(orchestrator_registration);
    health_registration_ = std::move(health_registration);
    closable_ = std::move(closable);
    context_.log().info("Kubernetes orchestrator ready", {{"server", api->describe()},
                                                          {"namespace", api->namespace_name()},
                                                          {"config", cluster_.source},
                                                          {"token_file", cluster_.token_file}});
  }

  void stop() override {
    health_registration_.reset();
    orchestrator_registration_.reset();
    if (closable_) closable_->close();  // a lease still held now gets `unavailable`
    closable_.reset();
  }

 private:
  PluginContext& context_;
  ClusterConfig cluster_;
  std::shared_ptr<orchestrator::ClosableOrchestrator> closable_;
  OrchestratorOptions options_;
  std::chrono::milliseconds request_timeout_{30000};
  bool configured_ = false;
  Registration orchestrator_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::orchestrator_kubernetes

SYNTHORG_PLUGIN(synthorg::orchestrator_kubernetes::KubernetesPlugin)
