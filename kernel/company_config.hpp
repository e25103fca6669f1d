// company.yaml: reading, ${VAR} expansion, validation, and where every value came from.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/config_map.hpp"

namespace synthorg::kernel {

// The configuration as JSON, with the file position of each value by dotted key path.
struct ConfigDocument {
  std::string file;  // a path, or "<embedded default>"
  std::filesystem::path base_dir;  // relative plugin directories are resolved against it
  nlohmann::json root;
  std::map<std::string, std::pair<int, int>> locations;  // path -> (line, column), 1-based

  // "company.yaml:12:5" for the value at `path`, or its nearest parent that has a position.
  std::string where(const std::string& path) const;
};

// A configuration problem, formatted "file:line:col: key.path: what (fix: how)", one per line.
class ConfigFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PluginEntry {
  bool enabled = true;
  bool optional = false;  // when it cannot load or start, carry on without it
  std::chrono::milliseconds start_timeout{0};  // 0: kernel.start_timeout
  nlohmann::json config = nlohmann::json::object();
};

struct KernelSettings {
  std::vector<std::filesystem::path> plugin_dirs;  // absolute
  std::size_t threads = 0;
  std::size_t blocking_threads = 4;
  std::size_t blocking_queue = 1024;
  std::chrono::milliseconds shutdown_timeout{10'000};
  std::chrono::milliseconds start_timeout{60'000};  // each plugin's start(), unless its entry says
};

struct CompanyConfig {
  ConfigDocument document;
  std::string company_name;
  KernelSettings kernel;
  std::map<std::string, std::string> select;  // slot ("store") -> plugin name
  std::map<std::string, PluginEntry> plugins;
  std::map<std::string, nlohmann::json> settings;  // namespace -> {key: value}

  // Formats issues found later (e.g. against a plugin's config map) with file positions.
  ConfigFileError error(const std::vector<ConfigIssue>& issues) const;
};

// The kernel's own section, as a config map: validation, schema and docs from one table.
const ConfigMap& kernel_config_map();
const ConfigMap& plugin_entry_config_map();

// The company.yaml built into the binary (config/company.yaml).
std::string_view embedded_company_yaml();

// Parses YAML text. `file` labels messages; `base_dir` anchors relative paths;
// `default_plugin_dir` is used when kernel.plugin_dirs is empty. Throws ConfigFileError.
CompanyConfig parse_company_config(std::string_view text, std::string file, std::filesystem::path base_dir,
                                   const std::filesystem::path& default_plugin_dir);

// Chooses the file: `explicit_path`, else $SYNTHORG_CONFIG_PATH, else ./company.yaml when it
// exists, else the embedded default. Applies SYNTHORG_DATABASE_URL (selects store-postgres),
// and resolves `select: {orchestrator: auto}` with auto_orchestrator().
// The PondPilot guide's names for our variables: JWT_SECRET, PORT, GRPC_PORT. `synthorg`
// adopts each at start when ours is not set (main.cpp); when both are set, ours wins.
struct GuideVariable {
  const char* ours;
  const char* guide;
};
const std::vector<GuideVariable>& guide_variables();

CompanyConfig load_company_config(const std::optional<std::filesystem::path>& explicit_path,
                                  const std::filesystem::path& default_plugin_dir);

// orchestrator-kubernetes inside a pod (KUBERNETES_SERVICE_HOST and _PORT set), else
// orchestrator-docker when a Docker engine answers, else orchestrator-process.
std::string auto_orchestrator();
// True when DOCKER_HOST names a TCP engine, or its unix socket (default
// /var/run/docker.sock) accepts a connection.
bool docker_engine_reachable();

}  // namespace synthorg::kernel
