// orchestrator-kubernetes: the Pod mapping on its own, the configuration (in-cluster,
// kubeconfig, explicit keys) and its errors, then the plugin, loaded from its file as the
// kernel loads it, against the Kubernetes contract server (tests/contract/kubernetes_server.py),
// which checks every request against ../shared/contracts/kubernetes-core-v1-openapi.json and
// runs each pod's container here. On bad input above all: refused tokens, RBAC, quota,
// conflicts, invalid pods, rotated tokens, pods that are not ours, images that do not exist,
// pods no node can take. What every orchestrator must do is the conformance kit's job
// (conformance.orchestrator-kubernetes runs it).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <Poco/Pipe.h>
#include <Poco/PipeStream.h>
#include <Poco/Process.h>

#include "orchestrator_testing.hpp"
#include "plugin_host.hpp"
#include "pod_mapping.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "test_support.hpp"

namespace synthorg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using synthorg::testing::ContractServer;
using synthorg::testing::ContractServerTest;
using synthorg::testing::orchestrator_error_of;
using synthorg::testing::PluginHost;
using synthorg::testing::TempDir;

const std::string plugin_path = std::string(SYNTHORG_PLUGIN_BUILD_DIR) + "/orchestrator-kubernetes.so";
const std::string server_script = std::string(SYNTHORG_SOURCE_DIR) + "/tests/contract/kubernetes_server.py";
const std::string contracts_dir = SYNTHORG_CONTRACTS_DIR;
const std::string contract = contracts_dir + "/kubernetes-core-v1-openapi.json";
constexpr const char* first_token = "k8s-test-token-SECRET-0123456789";
constexpr const char* test_namespace = "synthorg-test";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What configure() said, or "" when it accepted the configuration.
std::string configure_error(const json& config) {
  PluginHost host;
  try {
    host.configure(plugin_path, config);
  } catch (const std::exception& error) {
    return error.what();
  }
  return {};
}

using synthorg::testing::ScopedEnv;

std::string base64(std::string_view bytes) {
  auto url = crypto::base64url_encode(bytes, true);
  for (auto& c : url) c = c == '-' ? '+' : c == '_' ? '/' : c;
  return url;
}

// --- The mapping, without a server ---------------------------------------------------------------

TEST(KubernetesMapping, SpecBecomesAHardenedPod) {
  WorkloadSpec spec;
  spec.name = "My_Job.1";
  spec.image = "registry.example/app:1";
  spec.command = {"serve", "--port", "8080"};
  spec.env = {{"B", "2"}, {"A", "1"}};
  spec.labels = {{"synthorg.user", "u1"}};
  spec.memory_bytes = 64LL << 20;
  spec.cpus = 0.5;
  spec.pids_limit = 64;
  spec.user = "65534:65533";
  spec.tmpfs = {{"/tmp", "rw,noexec,nosuid,nodev,size=16m"}, {"/cache", "ro"}};
  spec.mounts = {{"/srv/data", "/data", true}, {"user-home", "/home/u", false}};
  spec.ports = {{8080, "tcp"}, {5353, "udp"}};
  spec.gpu = {2, ""};
  auto pod = orchestrator_kubernetes::build_pod(spec, "my-job-1-abcde", {"Always"});
  EXPECT_EQ(pod["metadata"]["name"], "my-job-1-abcde");
  EXPECT_EQ(pod["metadata"]["labels"], json({{"synthorg.user", "u1"}, {"synthorg.managed", "true"}}));
  const auto& pod_spec = pod["spec"];
  EXPECT_EQ(pod_spec["restartPolicy"], "Never");
  EXPECT_EQ(pod_spec["automountServiceAccountToken"], false);
  EXPECT_EQ(pod_spec["enableServiceLinks"], false);
  EXPECT_FALSE(pod_spec.contains("hostNetwork"));
  const auto& container = pod_spec["containers"][0];
  EXPECT_EQ(container["name"], "main");
  EXPECT_EQ(container["image"], "registry.example/app:1");
  EXPECT_EQ(container["imagePullPolicy"], "Always");
  EXPECT_EQ(container["args"], json({"serve", "--port", "8080"})) << "the image's ENTRYPOINT stays, as with docker run";
  EXPECT_FALSE(container.contains("command"));
  EXPECT_EQ(container["env"], json({{{"name", "A"}, {"value", "1"}}, {{"name", "B"}, {"value", "2"}}}));
  EXPECT_EQ(container["ports"], json({{{"containerPort", 8080}, {"protocol", "TCP"}},
                                      {{"containerPort", 5353}, {"protocol", "UDP"}}}));
  json limits = {{"memory", "67108864"}, {"cpu", "500m"}, {"nvidia.com/gpu", "2"}};
  EXPECT_EQ(container["resources"], json({{"limits", limits}, {"requests", limits}}));
  EXPECT_EQ(container["securityContext"], json({{"readOnlyRootFilesystem", true},
                                                {"seccompProfile", {{"type", "RuntimeDefault"}}},
                                                {"allowPrivilegeEscalation", false},
                                                {"capabilities", {{"drop", {"ALL"}}}},
                                                {"runAsUser", 65534},
                                                {"runAsGroup", 65533},
                                                {"runAsNonRoot", true}}));
  EXPECT_EQ(pod_spec["volumes"],
            json({{{"name", "tmpfs-0"}, {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", "16777216"}}}},
                  {{"name", "tmpfs-1"}, {"emptyDir", {{"medium", "Memory"}}}},
                  {{"name", "mount-0"}, {"hostPath", {{"path", "/srv/data"}}}},
                  {{"name", "mount-1"}, {"persistentVolumeClaim", {{"claimName", "user-home"}}}}}));
  EXPECT_EQ(container["volumeMounts"], json({{{"name", "tmpfs-0"}, {"mountPath", "/tmp"}},
                                             {{"name", "tmpfs-1"}, {"mountPath", "/cache"}, {"readOnly", true}},
                                             {{"name", "mount-0"}, {"mountPath", "/data"}, {"readOnly", true}},
                                             {{"name", "mount-1"}, {"mountPath", "/home/u"}, {"readOnly", false}}}));

  // Hardening off, root, host network: said explicitly, never left to defaults.
  WorkloadSpec loose;
  loose.image = "x";
  loose.read_only_root = false;
  loose.drop_all_capabilities = false;
  loose.no_new_privileges = false;
  loose.user = "0";
  loose.network = "host";
  auto loose_pod = orchestrator_kubernetes::build_pod(loose, "x-1", {});
  EXPECT_EQ(loose_pod["spec"]["containers"][0]["securityContext"],
            json({{"readOnlyRootFilesystem", false}, {"seccompProfile", {{"type", "RuntimeDefault"}}}, {"runAsUser", 0}}));
  EXPECT_EQ(loose_pod["spec"]["hostNetwork"], true);
  EXPECT_FALSE(loose_pod["spec"]["containers"][0].contains("resources"));
  EXPECT_FALSE(loose_pod["spec"]["containers"][0].contains("args")) << "no command: the image's default";
}

TEST(KubernetesMapping, NamesAreDns1123WithARandomSuffix) {
  using orchestrator_kubernetes::pod_name_for;
  using orchestrator_kubernetes::sanitise_name;
  EXPECT_EQ(sanitise_name("My_Job.1"), "my-job-1");
  EXPECT_EQ(sanitise_name("--A__b--"), "a-b");
  EXPECT_EQ(sanitise_name(""), "workload");
  EXPECT_EQ(sanitise_name("___"), "workload");
  EXPECT_EQ(sanitise_name(std::string(100, 'a')).size(), 57u);
  auto a = pod_name_for("Job"), b = pod_name_for("Job");
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.starts_with("job-") && a.size() == 9) << a;
  EXPECT_LE(pod_name_for(std::string(63, 'x')).size(), 63u) << "a pod name is also its hostname: 63 at most";
}

TEST(KubernetesMapping, WhatAPodCannotExpressIsInvalidSpec) {
  auto refused = [](const std::function<void(WorkloadSpec&)>& change, std::string_view expected) {
    WorkloadSpec spec;
    spec.image = "x";
    change(spec);
    auto error = orchestrator_error_of([&] { orchestrator_kubernetes::build_pod(spec, "x-1", {}); });
    EXPECT_EQ(error.code(), OrchestratorErrc::invalid_spec) << error.what();
    EXPECT_TRUE(contains(error.what(), expected)) << "expected \"" << expected << "\" in: " << error.what();
  };
  refused([](auto& s) { s.user = "nobody"; }, "numeric");
  refused([](auto& s) { s.user = "1000:staff"; }, "uid[:gid]");
  refused([](auto& s) { s.gpu = {-1, ""}; }, "number of GPUs");
  refused([](auto& s) { s.gpu = {1, "voodoo"}; }, "resource name");
  refused([](auto& s) { s.network = "none"; }, "NetworkPolicy");
  refused([](auto& s) { s.tmpfs = {{"/tmp", "size=50%"}}; }, "size such as 64m");
  refused([](auto& s) { s.tmpfs = {{"/tmp", "size=lots"}}; }, "tmpfs /tmp");
}

TEST(KubernetesMapping, StatusesQuantitiesAndStartFailures) {
  using orchestrator_kubernetes::parse_quantity;
  EXPECT_EQ(parse_quantity("512Mi"), 512.0 * 1024 * 1024);
  EXPECT_EQ(parse_quantity("1G"), 1e9);
  EXPECT_EQ(parse_quantity("67108864"), 67108864.0);
  EXPECT_DOUBLE_EQ(parse_quantity("500m"), 0.5);
  EXPECT_DOUBLE_EQ(parse_quantity("1.5"), 1.5);
  EXPECT_DOUBLE_EQ(parse_quantity("1e3"), 1000.0);
  EXPECT_DOUBLE_EQ(parse_quantity("100u"), 1e-4);
  EXPECT_THROW(parse_quantity("lots"), std::invalid_argument);
  EXPECT_THROW(parse_quantity("1Zi"), std::invalid_argument);
  EXPECT_EQ(orchestrator_kubernetes::cpu_quantity(0.5), "500m");
  EXPECT_EQ(orchestrator_kubernetes::cpu_quantity(2), "2000m");
  EXPECT_EQ(orchestrator_kubernetes::cpu_quantity(0.0001), "1m") << "never below a millicore";

  json pod = {{"metadata", {{"name", "p-1"}, {"creationTimestamp", "2024-01-02T03:04:05Z"},
                            {"labels", {{"synthorg.managed", "true"}, {"a", "b"}}}}},
              {"spec", {{"containers", {{{"name", "main"}, {"image", "img"},
                                         {"resources", {{"limits", {{"memory", "64Mi"}, {"cpu", "250m"}}}}}}}}}},
              {"status", {{"phase", "Failed"},
                          {"containerStatuses",
                           {{{"name", "main"},
                             {"state", {{"terminated", {{"exitCode", 137}, {"reason", "OOMKilled"},
                                                        {"startedAt", "2024-01-02T03:04:06Z"},
                                                        {"finishedAt", "2024-01-02T03:05:00Z"}}}}}}}}}}};
  auto status = orchestrator_kubernetes::to_status(pod);
  EXPECT_EQ(status.id, "p-1");
  EXPECT_EQ(status.image, "img");
  EXPECT_EQ(status.state, WorkloadState::exited);
  EXPECT_EQ(status.exit_code, 137);
  EXPECT_EQ(status.message, "OOMKilled");
  EXPECT_EQ(status.created_at, "2024-01-02T03:04:05Z");
  EXPECT_EQ(status.started_at, "2024-01-02T03:04:06Z");
  EXPECT_EQ(status.finished_at, "2024-01-02T03:05:00Z");
  EXPECT_EQ(status.memory_bytes, 64LL << 20);
  EXPECT_DOUBLE_EQ(status.cpus, 0.25);
  EXPECT_EQ(status.pids_limit, 0) << "Kubernetes has no per-pod pids limit: \"cannot say\"";
  EXPECT_EQ(status.labels.at("a"), "b");
  EXPECT_TRUE(orchestrator_kubernetes::is_managed(pod));

  // Evicted: the phase is final although the container never said so.
  json evicted = {{"metadata", {{"name", "p-2"}}},
                  {"status", {{"phase", "Failed"}, {"reason", "Evicted"}, {"message", "The node was low on memory."}}}};
  auto evicted_status = orchestrator_kubernetes::to_status(evicted);
  EXPECT_EQ(evicted_status.state, WorkloadState::exited);
  EXPECT_FALSE(evicted_status.exit_code.has_value());
  EXPECT_EQ(evicted_status.message, "Evicted: The node was low on memory.");
  EXPECT_FALSE(orchestrator_kubernetes::is_managed(evicted));

  auto waiting = [](const std::string& reason) {
    return json{{"metadata", {{"name", "p-3"}}},
                {"status", {{"phase", "Pending"},
                            {"containerStatuses", {{{"name", "main"}, {"image", "missing/x"},
                                                    {"state", {{"waiting", {{"reason", reason}, {"message", "why"}}}}}}}}}}};
  };
  for (const char* reason : {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"}) {
    auto failure = orchestrator_kubernetes::start_failure(waiting(reason));
    ASSERT_TRUE(failure) << reason;
    EXPECT_EQ(failure->code, OrchestratorErrc::image_missing) << reason;
    EXPECT_TRUE(contains(failure->message, reason)) << failure->message;
  }
  EXPECT_EQ(orchestrator_kubernetes::start_failure(waiting("InvalidImageName"))->code, OrchestratorErrc::invalid_spec);
  EXPECT_FALSE(orchestrator_kubernetes::start_failure(waiting("ContainerCreating"))) << "still starting";
  EXPECT_EQ(orchestrator_kubernetes::to_status(waiting("ContainerCreating")).state, WorkloadState::pending);

  json unschedulable = {{"metadata", {{"name", "p-4"}}},
                        {"status", {{"phase", "Pending"},
                                    {"conditions", {{{"type", "PodScheduled"}, {"status", "False"},
                                                     {"reason", "Unschedulable"}, {"message", "0/3 nodes are available"}}}}}}};
  std::string why;
  EXPECT_TRUE(orchestrator_kubernetes::unschedulable(unschedulable, &why));
  EXPECT_EQ(why, "0/3 nodes are available");
  EXPECT_EQ(orchestrator_kubernetes::to_status(unschedulable).message, "Unschedulable: 0/3 nodes are available");
}

// --- Configuration, without a server -------------------------------------------------------------

// PEM-shaped text, not a usable certificate: enough for the checks that come before the TLS
// context is built, which is all these configuration errors reach.
const char* pem_shaped_text =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfTCCASOgAwIBAgIUYl5mWqvPA8hHvi1AEDxbzfP9y1swCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJdGVzdC1yb290MB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw\n"
    "MDAwMFowFDESMBAGA1UEAwwJdGVzdC1yb290MFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
    "AQcDQgAEJ3nfVX1b5Y3Jb3WqPpa8iCrx3kQ2U9WfG8i0R4CJ0qS3r8H9b0m1uN0X\n"
    "m6nVbI9dF5lJ8m2Lw2Gm3J1r6s0x1qNTMFEwHQYDVR0OBBYEFH7Xk1p0vG4n3d6Q\n"
    "-----END CERTIFICATE-----\n";

class KubeconfigFile {
 public:
  KubeconfigFile(const std::string& cluster, const std::string& user, const std::string& extra = {}) {
    path_ = dir_.write("kubeconfig", "apiVersion: v1\nkind: Config\ncurrent-context: work\n"
                                     "contexts:\n"
                                     "- name: work\n  context: {cluster: c1, user: u1, namespace: team-a}\n"
                                     "- name: other\n  context: {cluster: c1, user: u1}\n"
                                     "clusters:\n- name: c1\n  cluster:\n" + cluster +
                                         "users:\n- name: u1\n  user:\n" + user + extra);
  }
  const fs::path& path() const { return path_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  fs::path path_;
};

TEST(KubernetesConfig, KubeconfigErrorsSayWhatToFix) {
  auto ca_data = "    certificate-authority-data: " + base64(pem_shaped_text) + "\n";
  const std::string server = "    server: https://127.0.0.1:6443\n";
  const std::string token_user = "    token: kubeconfig-SECRET-token\n";

  auto missing = configure_error({{"kubeconfig", "/nonexistent/kubeconfig"}});
  EXPECT_TRUE(contains(missing, "/nonexistent/kubeconfig") && contains(missing, "does not exist") &&
              contains(missing, "plugins.orchestrator-kubernetes.config.kubeconfig"))
      << missing;

  KubeconfigFile good(server + ca_data, token_user);
  auto unknown_context = configure_error({{"kubeconfig", good.path().string()}, {"context", "prod"}});
  EXPECT_TRUE(contains(unknown_context, "no context 'prod'") && contains(unknown_context, "work, other") &&
              contains(unknown_context, "config.context"))
      << unknown_context;

  KubeconfigFile no_current(server + ca_data, token_user);
  fs::path without = no_current.dir() / "no-current";
  {
    auto text = read_file(no_current.path());
    text.replace(text.find("current-context: work\n"), 22, "");
    std::ofstream(without) << text;
  }
  auto no_context = configure_error({{"kubeconfig", without.string()}});
  EXPECT_TRUE(contains(no_context, "no current-context") && contains(no_context, "config.context") &&
              contains(no_context, "work, other"))
      << no_context;

  KubeconfigFile not_base64(server + "    certificate-authority-data: '%%% not base64 %%%'\n", token_user);
  auto bad_data = configure_error({{"kubeconfig", not_base64.path().string()}});
  EXPECT_TRUE(contains(bad_data, "certificate-authority-data") && contains(bad_data, "not base64")) << bad_data;

  KubeconfigFile not_pem(server + "    certificate-authority-data: " + base64("hello, not a certificate") + "\n",
                         token_user);
  auto bad_pem = configure_error({{"kubeconfig", not_pem.path().string()}});
  EXPECT_TRUE(contains(bad_pem, "does not decode to a PEM certificate")) << bad_pem;

  KubeconfigFile missing_ca(server + "    certificate-authority: ca/missing.crt\n", token_user);
  auto bad_file = configure_error({{"kubeconfig", missing_ca.path().string()}});
  EXPECT_TRUE(contains(bad_file, (missing_ca.dir() / "ca/missing.crt").string()) && contains(bad_file, "cannot be read"))
      << "a relative CA path is relative to the kubeconfig: " << bad_file;

  KubeconfigFile plain_http("    server: http://127.0.0.1:8080\n", token_user);
  auto http_error = configure_error({{"kubeconfig", plain_http.path().string()}});
  EXPECT_TRUE(contains(http_error, "HTTPS only")) << http_error;

  KubeconfigFile client_cert(server + ca_data, "    client-certificate-data: AAAA\n    client-key-data: AAAA\n");
  auto cert_error = configure_error({{"kubeconfig", client_cert.path().string()}});
  EXPECT_TRUE(contains(cert_error, "client certificate") && contains(cert_error, "bearer token")) << cert_error;

  KubeconfigFile exec_user(server + ca_data, "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}\n");
  auto exec_error = configure_error({{"kubeconfig", exec_user.path().string()}});
  EXPECT_TRUE(contains(exec_error, "exec credential plugin")) << exec_error;

  TempDir dir;
  auto broken = dir.write("kubeconfig", "clusters: [unclosed\n");
  auto yaml_error = configure_error({{"kubeconfig", broken.string()}});
  EXPECT_TRUE(contains(yaml_error, "not valid YAML") && contains(yaml_error, "line")) << yaml_error;

  for (const auto& message : {missing, unknown_context, no_context, bad_data, bad_pem, bad_file, cert_error})
    EXPECT_FALSE(contains(message, "SECRET")) << "a token leaked into: " << message;
}

TEST(KubernetesConfig, ExplicitKeysAreCheckedByName) {
  auto both = configure_error({{"server", "https://a:6443"}, {"kubeconfig", "/x"}});
  EXPECT_TRUE(contains(both, "config.server") && contains(both, "config.kubeconfig") && contains(both, "keep one"))
      << both;
  auto http = configure_error({{"server", "http://a:6443"}});
  EXPECT_TRUE(contains(http, "config.server") && contains(http, "https://")) << http;
  auto no_token = configure_error({{"server", "https://a:6443"}, {"token_file", "/nonexistent/token"}});
  EXPECT_TRUE(contains(no_token, "config.token_file") && contains(no_token, "/nonexistent/token")) << no_token;
  auto no_ca = configure_error({{"server", "https://a:6443"}, {"ca_file", "/nonexistent/ca.crt"}});
  EXPECT_TRUE(contains(no_ca, "config.ca_file") && contains(no_ca, "cannot be read")) << no_ca;
  auto context_alone = configure_error({{"server", "https://a:6443"}, {"context", "x"}});
  EXPECT_TRUE(contains(context_alone, "config.context") && contains(context_alone, "kubeconfig")) << context_alone;
  auto bad_namespace = configure_error({{"server", "https://a:6443"}, {"namespace", "Not_A_Namespace"}});
  EXPECT_TRUE(contains(bad_namespace, "namespace")) << bad_namespace;
  EXPECT_EQ(configure_error({{"server", "https://a:6443"}}), "") << "no token is allowed (the server may say 401)";
}

TEST(KubernetesConfig, InClusterNeedsItsEnvironmentAndToken) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", nullptr);
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  TempDir sa;
  auto outside = configure_error({{"serviceaccount_dir", sa.path().string()}});
  EXPECT_TRUE(contains(outside, "KUBERNETES_SERVICE_HOST") && contains(outside, "config.kubeconfig")) << outside;

  ScopedEnv host_set("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  auto no_token = configure_error({{"serviceaccount_dir", sa.path().string()}});
  EXPECT_TRUE(contains(no_token, (sa.path() / "token").string()) && contains(no_token, "automountServiceAccountToken") &&
              contains(no_token, "config.serviceaccount_dir"))
      << no_token;
  sa.write("token", "sa-token\n");
  EXPECT_EQ(configure_error({{"serviceaccount_dir", sa.path().string()}}), "")
      << "ca.crt and namespace are optional, as in client-go";
}

// --- Against the contract server -----------------------------------------------------------------

// kubernetes_server.py on an ephemeral port with its own CA, stopped with the object.
class KubernetesServer : public ContractServer {
 public:
  KubernetesServer()
      : ContractServer(server_script, {"--token", first_token, "--contracts", contracts_dir},
                       "the Kubernetes contract server") {}

  int port() const { return info().at("port"); }
  std::string token_file() const { return info().at("token_file"); }
  json config(json extra = json::object()) const {
    json config = {{"server", url()}, {"ca_file", ca_file()}, {"token_file", token_file()}, {"namespace", test_namespace}};
    config.update(extra);
    return config;
  }
  void accept_only(const std::string& token) { hook("POST", "/__contract/token", {{"token", token}}); }
};

class KubernetesTest : public ContractServerTest<KubernetesServer> {
 protected:
  KubernetesTest() : ContractServerTest(contract, "Kubernetes") {}

  std::shared_ptr<Orchestrator> start(const json& config) { return start_plugin(plugin_path, config); }
  std::shared_ptr<Orchestrator> start() { return start(server_->config()); }

  std::string logs_of(const std::string& id) {
    std::string text;
    orchestrator_->logs(id, {0, false, {}}, [&](LogStream, std::string_view line) {
      text += std::string(line) + "\n";
      return true;
    });
    return text;
  }

};

TEST_F(KubernetesTest, ThePodSentIsTheSpecAndItRuns) {
  auto orchestrator = start();
  TempDir data;
  data.write("hello.txt", "from the host\n");
  ::chmod(data.path().c_str(), 0755);
  ::chmod((data / "hello.txt").c_str(), 0644);
  auto request = spec("cat /data/hello.txt; id -u; touch /data/x 2>/dev/null || echo data-read-only; "
                      "touch /root-file 2>/dev/null || echo root-read-only; echo \"$GREETING\"; "
                      "exec /bin/busybox httpd -f -p \"$SYNTHORG_LISTEN_HOST:8080\" -h /tmp");
  request.name = "Web_1";
  request.env = {{"GREETING", "hi there"}};
  request.memory_bytes = 64LL << 20;
  request.cpus = 0.25;
  request.ports = {{8080, "tcp"}};
  request.mounts = {{data.path().string(), "/data", true}};
  auto status = orchestrator->spawn(request);
  EXPECT_EQ(status.state, WorkloadState::running);
  EXPECT_TRUE(status.id.starts_with("web-1-")) << status.id;
  EXPECT_EQ(status.memory_bytes, 64LL << 20);
  EXPECT_DOUBLE_EQ(status.cpus, 0.25);

  auto posts = requests("POST", "/api/v1/namespaces/synthorg-test/pods");
  ASSERT_EQ(posts.size(), 1u);
  const auto& body = posts[0]["body"];
  EXPECT_EQ(body["metadata"]["labels"]["synthorg.managed"], "true");
  EXPECT_EQ(body["spec"]["containers"][0]["securityContext"]["runAsUser"], 65534);
  EXPECT_EQ(body["spec"]["containers"][0]["resources"]["requests"]["cpu"], "250m");

  std::string text;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    text = logs_of(status.id);
    if (contains(text, "hi there")) break;
    std::this_thread::sleep_for(100ms);
  }
  if (::geteuid() == 0) {  // the contract server's kubelet isolates containers only as root
    EXPECT_TRUE(contains(text, "from the host")) << text;
    EXPECT_TRUE(contains(text, "65534\n")) << text;
    EXPECT_TRUE(contains(text, "data-read-only")) << text;
    EXPECT_TRUE(contains(text, "root-read-only")) << text;
  }
  EXPECT_TRUE(contains(text, "hi there")) << text;

  auto endpoint = orchestrator->endpoint(status.id, 8080);
  EXPECT_TRUE(endpoint.host.starts_with("127.0.")) << endpoint.host;
  EXPECT_EQ(endpoint.port, 8080);
  auto not_requested = orchestrator_error_of([&] { orchestrator->endpoint(status.id, 9090); });
  EXPECT_EQ(not_requested.code(), OrchestratorErrc::invalid_spec) << not_requested.what();

  // Every request carried the token; no request's recorded form holds it.
  EXPECT_FALSE(contains(server_->requests().dump(), first_token));
  auto health = host_.get<HealthCheck>()->check();
  EXPECT_TRUE(health.up) << health.detail;
  EXPECT_EQ(health.data["namespace"], test_namespace);
  EXPECT_EQ(health.data["log_streams"], "combined");
  EXPECT_EQ(host_.get<HealthCheck>()->name(), "orchestrator.kubernetes");
}

TEST_F(KubernetesTest, UnauthorizedNamesTheTokenFileNeverTheToken) {
  TempDir dir;
  auto wrong = dir.write("token", "wrong-SECRET-token\n");
  auto orchestrator = start(server_->config({{"token_file", wrong.string()}}));
  auto error = orchestrator_error_of([&] { orchestrator->list({}); });
  EXPECT_EQ(error.code(), OrchestratorErrc::unavailable) << error.what();
  EXPECT_TRUE(contains(error.what(), "refused the bearer token") && contains(error.what(), "401") &&
              contains(error.what(), wrong.string()))
      << error.what();
  EXPECT_FALSE(contains(error.what(), "SECRET")) << "the token leaked: " << error.what();
  auto health = host_.get<HealthCheck>()->check();
  EXPECT_FALSE(health.up);
  EXPECT_TRUE(contains(health.detail, "refused the bearer token")) << health.detail;
  EXPECT_FALSE(contains(health.detail + health.data.dump(), "SECRET")) << health.detail << health.data.dump();
  auto spawn_error = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(spawn_error.code(), OrchestratorErrc::unavailable) << spawn_error.what();
}

TEST_F(KubernetesTest, ForbiddenNamesRbacAndTheServersWords) {
  auto orchestrator = start();
  const std::string message = "pods is forbidden: User \"system:serviceaccount:synthorg:synthorg\" cannot list "
                              "resource \"pods\" in API group \"\" in the namespace \"synthorg-test\"";
  server_->fail_next({{"status", 403}, {"reason", "Forbidden"}, {"message", message}, {"match", "/pods"}});
  auto error = orchestrator_error_of([&] { orchestrator->list({}); });
  EXPECT_EQ(error.code(), OrchestratorErrc::unavailable) << error.what();
  EXPECT_TRUE(contains(error.what(), message)) << "the server's words are kept: " << error.what();
  EXPECT_TRUE(contains(error.what(), "RBAC") && contains(error.what(), "packaging/k8s/role.yaml")) << error.what();

  // Health checks the permission, not only that the server answers.
  server_->fail_next({{"status", 403}, {"reason", "Forbidden"}, {"message", message}, {"match", "/pods"}});
  auto health = host_.get<HealthCheck>()->check();
  EXPECT_FALSE(health.up);
  EXPECT_TRUE(contains(health.detail, "RBAC") && contains(health.detail, message)) << health.detail;
  EXPECT_TRUE(host_.get<HealthCheck>()->check().up) << "and it recovers when the server allows it again";
}

TEST_F(KubernetesTest, QuotaIsCapacity) {
  auto orchestrator = start();
  const std::string message = "pods \"x\" is forbidden: exceeded quota: compute, requested: limits.memory=64Mi, "
                              "used: limits.memory=1Gi, limited: limits.memory=1Gi";
  server_->fail_next({{"status", 403}, {"reason", "Forbidden"}, {"message", message}, {"method", "POST"}});
  auto error = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(error.code(), OrchestratorErrc::capacity) << error.what();
  EXPECT_TRUE(contains(error.what(), "exceeded quota: compute")) << error.what();
}

TEST_F(KubernetesTest, ConflictAndInvalidCarryTheServersMessage) {
  auto orchestrator = start();
  server_->fail_next({{"status", 409}, {"reason", "AlreadyExists"}, {"message", "pods \"web-abcde\" already exists"},
                      {"method", "POST"}});
  auto conflict = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(conflict.code(), OrchestratorErrc::conflict) << conflict.what();
  EXPECT_TRUE(contains(conflict.what(), "pods \"web-abcde\" already exists")) << conflict.what();

  const std::string invalid = "Pod \"web-abcde\" is invalid: spec.containers[0].securityContext.runAsUser: Invalid "
                              "value: -1: must be between 0 and 2147483647, inclusive";
  server_->fail_next({{"status", 422}, {"reason", "Invalid"}, {"message", invalid}, {"method", "POST"}});
  auto refused = orchestrator_error_of([&] { orchestrator->spawn(spec("true")); });
  EXPECT_EQ(refused.code(), OrchestratorErrc::invalid_spec) << refused.what();
  EXPECT_TRUE(contains(refused.what(), invalid)) << refused.what();

  server_->fail_next({{"status", 500}, {"reason", "InternalError"}, {"message", "etcdserver: request timed out"}});
  auto internal = orchestrator_error_of([&] { orchestrator->list({}); });
  EXPECT_EQ(internal.code(), OrchestratorErrc::unavailable) << internal.what();
  EXPECT_TRUE(contains(internal.what(), "etcdserver: request timed out")) << internal.what();
  EXPECT_TRUE(orchestrator->list({{"synthorg.test-run", run_}}).empty()) << "refused spawns created nothing";
}

TEST_F(KubernetesTest, AnUnreachableServerIsUnavailable) {
  // A port nothing listens on: the server's own, after it is gone (with its files: keep copies).
  TempDir dir;
  fs::copy_file(server_->ca_file(), dir / "ca.crt");
  fs::copy_file(server_->token_file(), dir / "token");
  auto config = server_->config({{"ca_file", (dir / "ca.crt").string()}, {"token_file", (dir / "token").string()}});
  server_.reset();
  auto orchestrator = start(config);
  auto error = orchestrator_error_of([&] { orchestrator->inspect("anything"); });
  EXPECT_EQ(error.code(), OrchestratorErrc::unavailable) << error.what();
  EXPECT_TRUE(contains(error.what(), "cannot reach the Kubernetes API server")) << error.what();
  EXPECT_FALSE(host_.get<HealthCheck>()->check().up);
}

TEST_F(KubernetesTest, ARotatedTokenIsReadAgain) {
  TempDir dir;
  auto token_file = dir.write("token", std::string(first_token) + "\n");
  auto orchestrator = start(server_->config({{"token_file", token_file.string()}}));
  auto before = orchestrator->spawn(spec("exec /bin/busybox sleep 60"));

  // The cluster rotates the projected token: the server takes only the new one, and the file
  // is rewritten a moment later, as the kubelet does.
  server_->accept_only("rotated-token-2");
  auto refused = orchestrator_error_of([&] { orchestrator->inspect(before.id); });
  EXPECT_EQ(refused.code(), OrchestratorErrc::unavailable) << "the file still holds the old token: " << refused.what();
  dir.write("token", "rotated-token-2\n");
  EXPECT_EQ(orchestrator->inspect(before.id).state, WorkloadState::running) << "a 401 makes the plugin read the file again";
  auto after = orchestrator->spawn(spec("exec /bin/busybox sleep 60"));
  EXPECT_EQ(after.state, WorkloadState::running);
  EXPECT_EQ(orchestrator->list({{"synthorg.test-run", run_}}).size(), 2u);
}

TEST_F(KubernetesTest, InClusterConfiguration) {
  TempDir sa;
  sa.write("token", std::string(first_token) + "\n");
  fs::copy_file(server_->ca_file(), sa / "ca.crt");
  sa.write("namespace", "team-a\n");
  auto port = std::to_string(server_->port());
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "127.0.0.1");
  ScopedEnv service_port("KUBERNETES_SERVICE_PORT", port.c_str());
  {
    ScopedEnv pod_namespace("POD_NAMESPACE", nullptr);
    auto orchestrator = start({{"serviceaccount_dir", sa.path().string()}});
    auto status = orchestrator->spawn(spec("exec /bin/busybox sleep 60"));
    EXPECT_EQ(status.state, WorkloadState::running);
    EXPECT_EQ(requests("POST", "/api/v1/namespaces/team-a/pods").size(), 1u) << "the namespace file names the namespace";
    auto health = host_.get<HealthCheck>()->check();
    EXPECT_TRUE(health.up) << health.detail;
    EXPECT_TRUE(contains(health.data["config"].get<std::string>(), "in-cluster")) << health.data.dump();
    EXPECT_EQ(health.data["server"], "https://127.0.0.1:" + port);
    orchestrator->remove(status.id);
  }
  {
    ScopedEnv pod_namespace("POD_NAMESPACE", "team-b");
    PluginHost other;
    other.start(plugin_path, {{"serviceaccount_dir", sa.path().string()}});
    auto orchestrator = other.get<Orchestrator>();
    EXPECT_TRUE(orchestrator->list({}).empty());
    EXPECT_EQ(requests("GET", "/api/v1/namespaces/team-b/pods").size(), 1u) << "POD_NAMESPACE wins over the file";
  }
}

TEST_F(KubernetesTest, KubeconfigConfiguration) {
  TempDir dir;
  dir.write("token", std::string(first_token) + "\n");
  auto ca = base64(read_file(server_->ca_file()));
  auto kubeconfig = dir.write("config", "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
                                        "contexts:\n- name: dev\n  context: {cluster: kind, user: me, namespace: dev-ns}\n"
                                        "- name: ops\n  context: {cluster: kind, user: me, namespace: ops-ns}\n"
                                        "clusters:\n- name: kind\n  cluster:\n    server: " + server_->url() +
                                            "\n    certificate-authority-data: " + ca + "\n"
                                        "users:\n- name: me\n  user:\n    tokenFile: token\n");
  auto orchestrator = start({{"kubeconfig", kubeconfig.string()}});
  EXPECT_TRUE(orchestrator->list({}).empty());
  EXPECT_EQ(requests("GET", "/api/v1/namespaces/dev-ns/pods").size(), 1u) << "the current context's namespace";
  auto health = host_.get<HealthCheck>()->check();
  EXPECT_TRUE(health.up) << health.detail;
  EXPECT_TRUE(contains(health.data["config"].get<std::string>(), "context dev")) << health.data.dump();

  PluginHost other;
  other.start(plugin_path, {{"kubeconfig", kubeconfig.string()}, {"context", "ops"}});
  EXPECT_TRUE(other.get<Orchestrator>()->list({}).empty());
  EXPECT_EQ(requests("GET", "/api/v1/namespaces/ops-ns/pods").size(), 1u) << "the chosen context's namespace";

  // The kubeconfig's CA must be the one that signed the server: another CA (a second server's)
  // fails the handshake, and says the server cannot be reached, never that it answered.
  KubernetesServer stranger;
  auto text = read_file(kubeconfig);
  text.replace(text.find(ca), ca.size(), base64(read_file(stranger.ca_file())));
  auto other_ca = dir.write("config-wrong-ca", text);
  PluginHost wrong_ca;
  wrong_ca.start(plugin_path, {{"kubeconfig", other_ca.string()}});
  auto error = orchestrator_error_of([&] { wrong_ca.get<Orchestrator>()->list({}); });
  EXPECT_EQ(error.code(), OrchestratorErrc::unavailable) << error.what();
  EXPECT_TRUE(contains(error.what(), "cannot reach the Kubernetes API server")) << error.what();
}

TEST_F(KubernetesTest, PodsThatAreNotOursAreLeftAlone) {
  auto orchestrator = start();
  json foreign = {{"apiVersion", "v1"},
                  {"kind", "Pod"},
                  {"metadata", {{"name", "someone-elses"}, {"labels", {{"app", "theirs"}}}}},
                  {"spec", {{"restartPolicy", "Never"},
                            {"containers", {{{"name", "main"}, {"image", "x"}, {"args", {"sleep", "60"}}}}}}}};
  auto created = server_->send("POST", "/api/v1/namespaces/synthorg-test/pods", foreign, first_token);
  ASSERT_EQ(created.status, 201) << created.body;
  for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"inspect", [&] { orchestrator->inspect("someone-elses"); }},
           {"stop", [&] { orchestrator->stop("someone-elses", 1s); }},
           {"remove", [&] { orchestrator->remove("someone-elses"); }},
           {"wait", [&] { orchestrator->wait("someone-elses", 100ms); }},
           {"endpoint", [&] { orchestrator->endpoint("someone-elses", 80); }},
           {"logs", [&] { orchestrator->logs("someone-elses", {}, [](LogStream, std::string_view) { return true; }); }}}) {
    auto error = orchestrator_error_of(call);
    EXPECT_EQ(error.code(), OrchestratorErrc::not_found) << what << ": " << error.what();
    EXPECT_TRUE(contains(error.what(), "not managed by SynthOrg")) << what << ": " << error.what();
  }
  for (const auto& status : orchestrator->list({})) EXPECT_NE(status.id, "someone-elses") << "list() shows only ours";
  EXPECT_TRUE(requests("DELETE", "/pods/someone-elses").empty()) << "nothing was deleted";
  EXPECT_EQ(server_->send("GET", "/api/v1/namespaces/synthorg-test/pods/someone-elses", nullptr, first_token).status, 200);
  server_->send("DELETE", "/api/v1/namespaces/synthorg-test/pods/someone-elses", {{"gracePeriodSeconds", 0}}, first_token);
}

TEST_F(KubernetesTest, AMissingImageIsImageMissingAndLeavesNothing) {
  auto orchestrator = start();
  auto request = spec("true");
  request.image = "missing/nothing:1";
  auto error = orchestrator_error_of([&] { orchestrator->spawn(request); });
  EXPECT_EQ(error.code(), OrchestratorErrc::image_missing) << error.what();
  EXPECT_TRUE(contains(error.what(), "ErrImagePull") && contains(error.what(), "missing/nothing:1")) << error.what();
  EXPECT_TRUE(orchestrator->list({{"synthorg.test-run", run_}}).empty()) << "the pod that could not start is deleted";
}

TEST_F(KubernetesTest, APodNoNodeCanTakeIsCapacity) {
  auto orchestrator = start();
  auto request = spec("true");
  request.gpu = {1, "nvidia"};
  auto error = orchestrator_error_of([&] { orchestrator->spawn(request); });
  EXPECT_EQ(error.code(), OrchestratorErrc::capacity) << error.what();
  EXPECT_TRUE(contains(error.what(), "Insufficient nvidia.com/gpu") && contains(error.what(), "unschedulable_timeout"))
      << error.what();
  EXPECT_TRUE(orchestrator->list({{"synthorg.test-run", run_}}).empty());
}

TEST_F(KubernetesTest, StopKeepsTheExitCodeAndTheLastLines) {
  auto orchestrator = start();
  auto status = orchestrator->spawn(
      spec("echo started; trap 'echo got-term; exit 7' TERM; while :; do /bin/busybox sleep 0.1; done"));
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !contains(logs_of(status.id), "started") && std::chrono::steady_clock::now() < deadline;)
    std::this_thread::sleep_for(100ms);
  orchestrator->stop(status.id, 5s);
  auto deletes = requests("DELETE", "/pods/" + status.id);
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0]["body"]["gracePeriodSeconds"], 5);
  EXPECT_FALSE(deletes[0]["body"]["preconditions"]["uid"].get<std::string>().empty()) << "deletes exactly the pod it read";

  auto stopped = orchestrator->inspect(status.id);
  EXPECT_EQ(stopped.state, WorkloadState::exited);
  EXPECT_EQ(stopped.exit_code, 7) << "the trap's exit code, from the pod's last state";
  auto waited = orchestrator->wait(status.id, 1s);
  EXPECT_TRUE(waited.exited);
  EXPECT_EQ(waited.exit_code, 7);
  auto text = logs_of(status.id);
  EXPECT_TRUE(contains(text, "started\n") && contains(text, "got-term\n")) << "the log outlives the pod: " << text;
  bool listed = false;
  for (const auto& s : orchestrator->list({{"synthorg.test-run", run_}})) listed = listed || s.id == status.id;
  EXPECT_TRUE(listed) << "a stopped workload is listed until it is removed";
  orchestrator->stop(status.id, 1s);  // no-op
  EXPECT_EQ(server_->send("GET", "/api/v1/namespaces/synthorg-test/pods/" + status.id, nullptr, first_token).status, 404)
      << "on Kubernetes a stopped pod is a deleted pod";
  orchestrator->remove(status.id);
  EXPECT_EQ(orchestrator_error_of([&] { orchestrator->inspect(status.id); }).code(), OrchestratorErrc::not_found);
  orchestrator->remove(status.id);  // no-op
}

// --- The contract server itself ------------------------------------------------------------------

TEST(KubernetesContractServer, RefusesWhatTheDocumentDoesNotAllow) {
  if (!fs::exists(contract)) GTEST_SKIP() << contract << " is absent";
  KubernetesServer server;
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "p"}}},
              {"spec", {{"containers", {{{"name", "main"}, {"image", "x"}, {"memroy", "1Gi"}}}}}}};
  auto response = server.send("POST", "/api/v1/namespaces/default/pods", pod, first_token);
  EXPECT_EQ(response.status, 400) << response.body;
  auto unknown_query = server.send("GET", "/api/v1/namespaces/default/pods?labelSelectr=a%3Db", nullptr, first_token);
  EXPECT_EQ(unknown_query.status, 400) << unknown_query.body;
  auto bad_type = server.send("GET", "/api/v1/namespaces/default/pods?watch=yes", nullptr, first_token);
  EXPECT_EQ(bad_type.status, 400) << bad_type.body;
  auto no_token = server.send("GET", "/api/v1/namespaces/default/pods");
  EXPECT_EQ(no_token.status, 401) << no_token.body;
  auto violations = server.violations().dump();
  EXPECT_TRUE(contains(violations, "memroy") && contains(violations, "labelSelectr") && contains(violations, "watch"))
      << violations;
}

TEST(KubernetesContractServer, SaysWhyItSkipsWithoutTheDocument) {
  TempDir dir;
  Poco::Pipe out;
  auto handle = Poco::Process::launch("/usr/bin/python3",
                                      {server_script, "--ready-file", (dir / "ready").string(), "--contracts",
                                       (dir / "nowhere").string()},
                                      nullptr, &out, &out);
  out.close(Poco::Pipe::CLOSE_WRITE);
  Poco::PipeInputStream stream(out);
  std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  EXPECT_EQ(handle.wait(), 77);
  EXPECT_TRUE(contains(text, "SKIPPED") && contains(text, "kubernetes-core-v1-openapi.json")) << text;
}

}  // namespace
}  // namespace synthorg
