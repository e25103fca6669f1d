#include "cluster_config.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "synthorg/crypto.hpp"

namespace synthorg::orchestrator_kubernetes {
namespace {

namespace fs = std::filesystem;

constexpr const char* key_prefix = "plugins.orchestrator-kubernetes.config.";

std::string key(std::string_view name) { return std::string(key_prefix) + std::string(name); }

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

// An empty variable counts as unset: compose and .env files often write `NAME=`.
std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

std::string trim(std::string text) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && is_space(text.back())) text.pop_back();
  std::size_t start = 0;
  while (start < text.size() && is_space(text[start])) ++start;
  return text.substr(start);
}

// Reads a whole file; nullopt-like empty + reason through `why`.
bool read_file(const fs::path& path, std::string& out, std::string& why) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    why = "it does not exist";
    return false;
  }
  if (fs::is_directory(path, ec)) {
    why = "it is a directory";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = "it cannot be opened (permissions?)";
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return true;
}

std::string join_host_port(const std::string& host, const std::string& port) {
  if (host.find(':') != std::string::npos && host.front() != '[') return "[" + host + "]:" + port;
  return host + ":" + port;
}

bool looks_like_pem_certificate(std::string_view text) {
  return text.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos;
}

// certificate-authority-data is standard base64, possibly wrapped: map it onto base64url.
std::optional<std::string> decode_base64(std::string_view text) {
  std::string url;
  url.reserve(text.size());
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    url.push_back(c == '+' ? '-' : c == '/' ? '_' : c);
  }
  return crypto::base64url_decode(url);
}

std::string names_of(const YAML::Node& list) {
  std::string names;
  if (list && list.IsSequence())
    for (const auto& entry : list)
      if (entry["name"]) names += (names.empty() ? "" : ", ") + entry["name"].as<std::string>("");
  return names.empty() ? std::string("none") : names;
}

YAML::Node find_named(const YAML::Node& list, const std::string& name) {
  if (list && list.IsSequence())
    for (const auto& entry : list)
      if (entry["name"] && entry["name"].as<std::string>("") == name) return entry;
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string scalar(const YAML::Node& node, const char* field) {
  auto value = node[field];
  if (!value || value.IsNull()) return {};
  if (!value.IsScalar()) fail(std::string(field) + " must be a string");
  return value.as<std::string>();
}

// Paths in a kubeconfig are relative to the file that holds them (kubectl's rule).
std::string relative_to(const fs::path& kubeconfig, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (kubeconfig.parent_path() / path).lexically_normal().string();
}

}  // namespace

std::string read_token_file(const fs::path& path) {
  std::string text, why;
  if (!read_file(path, text, why)) throw std::runtime_error("cannot read the token file " + path.string() + ": " + why);
  auto token = trim(text);
  if (token.empty()) throw std::runtime_error("the token file " + path.string() + " is empty");
  return token;
}

ClusterConfig in_cluster(const fs::path& dir) {
  auto host = environment("KUBERNETES_SERVICE_HOST");
  auto port = environment("KUBERNETES_SERVICE_PORT");
  if (host.empty() || port.empty())
    fail("no Kubernetes API server to talk to: not running in a pod (KUBERNETES_SERVICE_HOST and "
         "KUBERNETES_SERVICE_PORT must both be set), and neither " + key("kubeconfig") + " nor " + key("server") +
         " is set. Run the kernel in a pod with a service account, or set " + key("kubeconfig") +
         " to a kubeconfig file");
  ClusterConfig config;
  config.server = "https://" + join_host_port(host, port);
  config.source = "in-cluster (" + dir.string() + ")";
  config.token_file = (dir / "token").string();
  try {
    read_token_file(config.token_file);
  } catch (const std::exception& error) {
    fail(std::string("in-cluster configuration: ") + error.what() +
         ". Mount the pod's service account token (automountServiceAccountToken: true), or point " +
         key("serviceaccount_dir") + " at the directory that holds token, ca.crt and namespace");
  }
  // client-go only logs a CA it cannot load and carries on with the system's trust store; so do we.
  std::error_code ec;
  if (fs::exists(dir / "ca.crt", ec)) config.ca_file = (dir / "ca.crt").string();
  if (auto ns = environment("POD_NAMESPACE"); !ns.empty()) {
    config.namespace_name = ns;
  } else {
    std::string text, why;
    if (read_file(dir / "namespace", text, why) && !trim(text).empty()) config.namespace_name = trim(text);
  }
  return config;
}

ClusterConfig from_kubeconfig(const fs::path& path, const std::string& context_name) {
  const std::string where = "kubeconfig " + path.string();
  std::string text, why;
  if (!read_file(path, text, why))
    fail("cannot read the " + where + " (" + key("kubeconfig") + "): " + why +
         "; give the path of a kubeconfig file (kubectl config view --raw --minify > file)");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    fail(where + " is not valid YAML: line " + std::to_string(error.mark.line + 1) + ": " + error.msg);
  }
  if (!root.IsMap()) fail(where + " is not a kubeconfig: expected a mapping with contexts, clusters and users");

  ClusterConfig config;
  try {
    std::string context = context_name.empty() ? scalar(root, "current-context") : context_name;
    if (context.empty())
      fail(where + " has no current-context; set " + key("context") + " to one of its contexts: " +
           names_of(root["contexts"]));
    auto context_entry = find_named(root["contexts"], context);
    if (!context_entry)
      fail(where + " has no context '" + context + "'; its contexts are: " + names_of(root["contexts"]) +
           (context_name.empty() ? " (fix current-context, or set " + key("context") + ")"
                                 : " (fix " + key("context") + ")"));
    auto ctx = context_entry["context"];
    if (!ctx || !ctx.IsMap()) fail(where + ": context '" + context + "' has no 'context' mapping");
    auto cluster_name = scalar(ctx, "cluster");
    auto user_name = scalar(ctx, "user");
    if (auto ns = scalar(ctx, "namespace"); !ns.empty()) config.namespace_name = ns;

    auto cluster_entry = find_named(root["clusters"], cluster_name);
    if (!cluster_entry)
      fail(where + ": context '" + context + "' names cluster '" + cluster_name +
           "', which is not among its clusters: " + names_of(root["clusters"]));
    auto cluster = cluster_entry["cluster"];
    if (!cluster || !cluster.IsMap()) fail(where + ": cluster '" + cluster_name + "' has no 'cluster' mapping");
    config.server = scalar(cluster, "server");
    if (config.server.empty()) fail(where + ": cluster '" + cluster_name + "' has no server URL");
    if (config.server.rfind("https://", 0) != 0)
      fail(where + ": cluster '" + cluster_name + "' has server '" + config.server +
           "'; orchestrator-kubernetes talks to the API server over HTTPS only (bearer tokens are never sent in "
           "clear)");
    if (auto skip = cluster["insecure-skip-tls-verify"]; skip && skip.as<bool>(false)) config.verify_peer = false;
    if (auto data = scalar(cluster, "certificate-authority-data"); !data.empty()) {
      auto pem = decode_base64(data);
      if (!pem)
        fail(where + ": certificate-authority-data of cluster '" + cluster_name +
             "' is not base64; it must hold the CA certificate as base64-encoded PEM");
      if (!looks_like_pem_certificate(*pem))
        fail(where + ": certificate-authority-data of cluster '" + cluster_name +
             "' does not decode to a PEM certificate (-----BEGIN CERTIFICATE-----)");
      config.ca_pem = *pem;
    } else if (auto file = scalar(cluster, "certificate-authority"); !file.empty()) {
      config.ca_file = relative_to(path, file);
      std::string pem, reason;
      if (!read_file(config.ca_file, pem, reason))
        fail(where + ": certificate-authority " + config.ca_file + " of cluster '" + cluster_name +
             "' cannot be read: " + reason);
      if (!looks_like_pem_certificate(pem))
        fail(where + ": certificate-authority " + config.ca_file + " of cluster '" + cluster_name +
             "' is not a PEM certificate");
    }

    if (!user_name.empty()) {
      auto user_entry = find_named(root["users"], user_name);
      if (!user_entry)
        fail(where + ": context '" + context + "' names user '" + user_name +
             "', which is not among its users: " + names_of(root["users"]));
      auto user = user_entry["user"];
      if (user && user.IsMap()) {
        config.token = scalar(user, "token");
        if (auto file = scalar(user, "tokenFile"); !file.empty()) {
          config.token_file = relative_to(path, file);
          try {
            read_token_file(config.token_file);
          } catch (const std::exception& error) {
            fail(where + ": user '" + user_name + "': " + error.what());
          }
        }
        if (config.token.empty() && config.token_file.empty()) {
          const char* kind = user["exec"]                                          ? "an exec credential plugin"
                             : user["auth-provider"]                               ? "an auth-provider"
                             : (user["client-certificate"] || user["client-certificate-data"]) ? "a client certificate"
                             : (user["username"] || user["password"])              ? "a username and password"
                                                                                   : nullptr;
          if (kind)
            fail(where + ": user '" + user_name + "' authenticates with " + kind +
                 ", which orchestrator-kubernetes does not support; give it a bearer token (token or tokenFile), "
                 "e.g. a service account's: kubectl create token <serviceaccount>");
        }
      }
    }
    config.source = "kubeconfig " + path.string() + " (context " + context + ")";
  } catch (const YAML::Exception& error) {
    fail(where + ": line " + std::to_string(error.mark.line + 1) + ": " + error.msg);
  } catch (const std::invalid_argument& error) {
    // scalar() throws without saying where; say it.
    std::string message = error.what();
    if (message.rfind(where, 0) == 0) throw;
    fail(where + ": " + message);
  }
  return config;
}

ClusterConfig resolve_cluster_config(const nlohmann::json& options) {
  auto get = [&](const char* name) { return options.value(name, std::string()); };
  const auto server = get("server"), kubeconfig = get("kubeconfig"), context = get("context");
  const auto ca_file = get("ca_file"), token_file = get("token_file"), ns = get("namespace");
  const auto serviceaccount_dir = get("serviceaccount_dir").empty() ? std::string(default_serviceaccount_dir)
                                                                     : get("serviceaccount_dir");

  ClusterConfig config;
  if (!server.empty() && !kubeconfig.empty())
    fail(key("server") + " and " + key("kubeconfig") + " are both set; keep one (the server URL, or the kubeconfig "
         "that names it)");
  if (!context.empty() && kubeconfig.empty())
    fail(key("context") + " is set but " + key("kubeconfig") + " is not; contexts live in a kubeconfig file");
  if (!server.empty()) {
    if (server.rfind("https://", 0) != 0)
      fail(key("server") + " is '" + server + "'; write the API server's HTTPS URL, e.g. https://10.0.0.1:6443 "
           "(bearer tokens are never sent in clear)");
    config.server = server;
    config.source = "explicit server";
  } else if (!kubeconfig.empty()) {
    config = from_kubeconfig(kubeconfig, context);
  } else {
    config = in_cluster(serviceaccount_dir);
  }

  // Explicit keys win over what the kubeconfig or the pod says.
  if (!ca_file.empty()) {
    std::string pem, why;
    if (!read_file(ca_file, pem, why)) fail(key("ca_file") + " is " + ca_file + ", which cannot be read: " + why);
    if (!looks_like_pem_certificate(pem))
      fail(key("ca_file") + " is " + ca_file + ", which is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
    config.ca_file = ca_file;
    config.ca_pem.clear();
  }
  if (!token_file.empty()) {
    try {
      read_token_file(token_file);
    } catch (const std::exception& error) {
      fail(key("token_file") + ": " + error.what() + "; give the path of a file holding the bearer token");
    }
    config.token_file = token_file;
    config.token.clear();
  }
  if (!ns.empty()) config.namespace_name = ns;
  return config;
}

TokenSource::TokenSource(std::string static_token, std::string file, std::chrono::seconds period)
    : token_(std::move(static_token)), file_(std::move(file)), period_(period) {
  if (!file_.empty()) {
    std::lock_guard lock(mutex_);
    read_locked();
  }
}

bool TokenSource::read_locked() {
  try {
    token_ = read_token_file(file_);
    read_at_ = std::chrono::steady_clock::now();
    return true;
  } catch (const std::exception&) {
    // Mid-rotation the file may be briefly absent: keep the token we have and try again soon.
    return false;
  }
}

std::string TokenSource::current() {
  std::lock_guard lock(mutex_);
  if (!file_.empty() && std::chrono::steady_clock::now() - read_at_ >= period_) read_locked();
  return token_;
}

bool TokenSource::refresh_after_rejection(const std::string& refused) {
  std::lock_guard lock(mutex_);
  if (file_.empty()) return false;
  if (token_ != refused) return true;  // another call refreshed it meanwhile
  return read_locked() && token_ != refused;
}

}  // namespace synthorg::orchestrator_kubernetes
