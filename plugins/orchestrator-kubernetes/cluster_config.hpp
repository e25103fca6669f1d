// Where the API server is and how to authenticate to it: in-cluster (the pod's service account),
// a kubeconfig file, or explicit keys. Resolved once, at configure(); only the token file is
// read again later, because projected service-account tokens rotate.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace synthorg::orchestrator_kubernetes {

inline constexpr const char* default_serviceaccount_dir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct ClusterConfig {
  std::string server;     // https://host:port[/prefix]
  std::string ca_file;    // PEM file, or empty
  std::string ca_pem;     // PEM text (kubeconfig certificate-authority-data), or empty
  bool verify_peer = true;
  std::string token;       // a static token (kubeconfig user.token); never logged
  std::string token_file;  // read now and re-read as it rotates; wins over `token`
  std::string namespace_name = "default";
  std::string source;  // how it was found, for logs and health: "in-cluster", "kubeconfig ..."
};

// The plugin's (defaulted) config object → a ClusterConfig. Order: explicit `server`, then
// `kubeconfig`, then in-cluster (KUBERNETES_SERVICE_HOST/PORT). Throws std::invalid_argument
// naming the key (plugins.orchestrator-kubernetes.config.<key>) or the file, and the fix.
ClusterConfig resolve_cluster_config(const nlohmann::json& config);

// The kubeconfig part alone (tests call it through configure()).
ClusterConfig from_kubeconfig(const std::filesystem::path& path, const std::string& context_name);
// client-go's InClusterConfig, with the service-account directory as a parameter.
ClusterConfig in_cluster(const std::filesystem::path& serviceaccount_dir);

// The bearer token, re-read from its file at most once a minute and whenever the server says
// 401 (client-go's cached token source does the same). Thread-safe.
class TokenSource {
 public:
  TokenSource(std::string static_token, std::string file,
              std::chrono::seconds period = std::chrono::seconds(60));
  // The token to send now ("" when there is none).
  std::string current();
  // Reads the file again after a 401; true when it holds a token other than the one refused.
  bool refresh_after_rejection(const std::string& refused);
  bool from_file() const noexcept { return !file_.empty(); }
  const std::string& file() const noexcept { return file_; }

 private:
  bool read_locked();  // false (keeping the old token) when the file cannot be read

  std::mutex mutex_;
  std::string token_;
  std::string file_;
  std::chrono::seconds period_;
  std::chrono::steady_clock::time_point read_at_{};
};

// Reads a token file: trimmed; throws std::runtime_error saying which file and why.
std::string read_token_file(const std::filesystem::path& path);

}  // namespace synthorg::orchestrator_kubernetes
