#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include "company_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "synthorg/host/plugin_file.hpp"

namespace synthorg::kernel {
namespace {

// Where `text` stops being well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF); npos when it all is. JSON, and so every message quoting a value, needs it.
// A value as JSON text inside a message; bytes that are not UTF-8 become U+FFFD instead of
// throwing, since a message must never fail to be made.
std::string quote(const nlohmann::json& value) { return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::size_t first_invalid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
    unsigned char lead = byte(0);
    std::size_t extra = 0;
    unsigned char low = 0x80, high = 0xbf;  // the second byte's range
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      extra = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      extra = 2;
      if (lead == 0xe0) low = 0xa0;
      if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      extra = 3;
      if (lead == 0xf0) low = 0x90;
      if (lead == 0xf4) high = 0x8f;
    } else {
      return i;
    }
    if (text.size() - i <= extra || byte(1) < low || byte(1) > high) return i;
    for (std::size_t k = 2; k <= extra; ++k)
      if ((byte(k) & 0xc0) != 0x80) return i;
    i += extra + 1;
  }
  return std::string_view::npos;
}

using nlohmann::json;

struct Converter {
  ConfigDocument& document;
  std::vector<ConfigIssue>& issues;

  void remember(const std::string& path, const YAML::Mark& mark) {
    // The first position recorded wins: for a map entry that is its key, where a reader looks.
    if (!mark.is_null()) document.locations.try_emplace(path, mark.line + 1, mark.column + 1);
  }

  // ${VAR} and ${VAR:-default} (default also when VAR is empty, as in the shell); the default may
  // itself hold references (${A:-${B:-8081}}: A, else B, else 8081); $$ is a literal dollar.
  // Returns nullopt after recording an issue.
  std::optional<std::string> expand(const std::string& raw, const std::string& path) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '$' || i + 1 >= raw.size()) {
        out += raw[i];
        continue;
      }
      if (raw[i + 1] == '$') {
        out += '$';
        ++i;
        continue;
      }
      if (raw[i + 1] != '{') {
        out += raw[i];
        continue;
      }
      // The matching brace: a default may nest ${...} of its own.
      auto close = std::string::npos;
      for (std::size_t j = i + 2, depth = 1; j < raw.size(); ++j) {
        if (raw[j] == '$' && j + 1 < raw.size() && raw[j + 1] == '$') {
          ++j;  // a literal dollar inside a default opens nothing
        } else if (raw[j] == '$' && j + 1 < raw.size() && raw[j + 1] == '{') {
          ++depth;
          ++j;
        } else if (raw[j] == '}' && --depth == 0) {
          close = j;
          break;
        }
      }
      if (close == std::string::npos) {
        issues.push_back({path, "unterminated \"${\" in " + quote(raw), "close it with \"}\", or write \"$$\" for a literal dollar"});
        return std::nullopt;
      }
      std::string inside = raw.substr(i + 2, close - i - 2);
      std::optional<std::string> fallback;
      if (auto sep = inside.find(":-"); sep != std::string::npos) {
        fallback = inside.substr(sep + 2);
        inside.resize(sep);
      }
      static const std::regex name_pattern("[A-Za-z_][A-Za-z0-9_]*");
      if (!std::regex_match(inside, name_pattern)) {
        issues.push_back({path, "\"${" + inside + "}\" is not a variable reference", "use ${NAME} or ${NAME:-default} with NAME made of letters, digits and _"});
        return std::nullopt;
      }
      const char* value = std::getenv(inside.c_str());
      if (value && (*value || !fallback)) {
        if (first_invalid_utf8(value) != std::string_view::npos) {
          issues.push_back({path, "environment variable " + inside + " is not valid UTF-8",
                            "set " + inside + " to UTF-8 text (check the terminal's or the .env file's encoding)"});
          return std::nullopt;
        }
        out += value;
      } else if (fallback) {
        auto expanded = expand(*fallback, path);
        if (!expanded) return std::nullopt;
        out += *expanded;
      } else {
        issues.push_back({path, "environment variable " + inside + " is not set",
                          "set " + inside + ", or write ${" + inside + ":-default} to fall back to a default"});
        return std::nullopt;
      }
      i = close;
    }
    return out;
  }

  static json typed_scalar(const std::string& text) {
    static const std::regex integer("[-+]?[0-9]+");
    static const std::regex decimal("[-+]?(([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)");
    if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") return nullptr;
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
    if (std::regex_match(text, integer)) {
      try {
        return std::stoll(text);
      } catch (const std::out_of_range&) {
        return text;
      }
    }
    if (std::regex_match(text, decimal)) {
      try {
        return std::stod(text);
      } catch (const std::out_of_range&) {
        return text;  // 1e999: beyond a double; the setting's check then names it
      }
    }
    return text;
  }

  json convert(const YAML::Node& node, const std::string& path) {
    remember(path, node.Mark());
    switch (node.Type()) {
      case YAML::NodeType::Scalar: {
        // The file is UTF-8, but a double-quoted escape can still make bytes that are not
        // ("\uD800", a lone surrogate): refused here, so no message below has to quote them.
        if (first_invalid_utf8(node.Scalar()) != std::string_view::npos) {
          issues.push_back({path, "the value is not valid UTF-8 once its escapes are read",
                            "remove the escape (a lone surrogate such as \\uD800 has no character)"});
          return nullptr;
        }
        auto expanded = expand(node.Scalar(), path);
        if (!expanded) return nullptr;
        const auto& tag = node.Tag();
        bool quoted = tag == "!" || (tag.size() >= 4 && tag.compare(tag.size() - 4, 4, ":str") == 0);
        return quoted ? json(*expanded) : typed_scalar(*expanded);
      }
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (std::size_t i = 0; i < node.size(); ++i) out.push_back(convert(node[i], path + "[" + std::to_string(i) + "]"));
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& item : node) {
          if (!item.first.IsScalar()) {
            issues.push_back({path, "a key is not a plain name", "write keys as plain words"});
            continue;
          }
          const std::string key = item.first.Scalar();
          const std::string child = path.empty() ? key : path + "." + key;
          remember(child, item.first.Mark());
          if (out.contains(key)) {
            issues.push_back({child, "duplicate key \"" + key + "\"", "keep one of them"});
            continue;
          }
          out[key] = convert(item.second, child);
        }
        return out;
      }
      default:
        return nullptr;
    }
  }
};

std::string parent_path(const std::string& path) {
  auto cut = path.find_last_of(".[");
  return cut == std::string::npos ? std::string() : path.substr(0, cut);
}

}  // namespace

std::string ConfigDocument::where(const std::string& path) const {
  for (std::string p = path;; p = parent_path(p)) {
    if (auto it = locations.find(p); it != locations.end())
      return file + ":" + std::to_string(it->second.first) + ":" + std::to_string(it->second.second);
    if (p.empty()) return file;
  }
}

ConfigFileError CompanyConfig::error(const std::vector<ConfigIssue>& issues) const {
  std::string text;
  for (const auto& issue : issues) {
    if (!text.empty()) text += '\n';
    text += document.where(issue.path) + ": ";
    if (!issue.path.empty()) text += issue.path + ": ";
    text += issue.message;
    if (!issue.fix.empty()) text += " (fix: " + issue.fix + ")";
  }
  return ConfigFileError(text);
}

const ConfigMap& kernel_config_map() {
  static const ConfigMap map = ConfigMap{}
      .string_list("plugin_dirs", {}, "Directories searched for plugin files (*.so). Relative paths are relative to "
                                      "this file. Empty: the plugin directory installed next to the synthorg binary. SYNTHORG_PLUGIN_PATH adds "
                                      "more, searched after these.")
      .integer("threads", 0, "I/O threads running the shared io_context; 0 means one per core.").range(0, 256)
      .integer("blocking_threads", 4, "Threads of the bounded pool for blocking work (database, orchestrator calls).").range(1, 256)
      .integer("blocking_queue", 1024, "Blocking tasks accepted beyond the running ones; more are refused as busy.").range(1, 1'000'000)
      .duration("shutdown_timeout", "10s", "Time all plugins together get to stop on SIGTERM/SIGINT before the kernel gives up on them.")
      .range(100, 600'000)
      .duration("start_timeout", "60s", "Time each plugin's start() may take; one that overruns it stops the start, "
                                        "naming the plugin (plugins.<name>.start_timeout overrides it per plugin).")
      .range(100, 3'600'000);
  return map;
}

const ConfigMap& plugin_entry_config_map() {
  static const ConfigMap map = ConfigMap{}
      .boolean("enabled", true, "Load and start this plugin.")
      .boolean("optional", false, "When the plugin cannot be loaded, configured or started, log it and carry on without it.")
      .duration("start_timeout", "0s", "Time this plugin's start() may take; 0s: kernel.start_timeout.").range(0, 3'600'000)
      .object("config", "The plugin's own settings; see its section of the configuration reference.");
  return map;
}

// The PondPilot guide's `containers: {memory_limit, cpu_limit}` (its config.yaml) is the workloads
// plugin's limits under another name: copied there, where the plugin's config map checks them.
// Both places set to different values is an error: one of them would be silently ignored.
namespace {
void apply_containers_section(const json& doc, CompanyConfig& config, std::vector<ConfigIssue>& issues) {
  if (!doc.contains("containers") || doc["containers"].is_null()) return;
  const json& containers = doc["containers"];
  static const std::vector<std::string> keys{"memory_limit", "cpu_limit"};
  if (!containers.is_object()) {
    issues.push_back({"containers", "expected a map, got " + quote(containers),
                      "write containers: {memory_limit: 512m, cpu_limit: 0.5}"});
    return;
  }
  for (const auto& [key, value] : containers.items()) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      auto near = did_you_mean(key, keys);
      issues.push_back({"containers." + key, "unknown key \"" + key + "\"",
                        near.empty() ? "the PondPilot guide's containers section holds memory_limit and cpu_limit; "
                                       "set anything else under plugins.workloads.config"
                                     : "did you mean \"" + near + "\"?"});
      continue;
    }
    auto& workloads = config.plugins["workloads"].config;
    if (workloads.contains(key) && workloads[key] != value) {
      issues.push_back({"containers." + key,
                        "set to " + quote(value) + " here and to " + quote(workloads[key]) +
                            " in plugins.workloads.config." + key,
                        "keep one of the two"});
      continue;
    }
    workloads[key] = value;
  }
}
}  // namespace

CompanyConfig parse_company_config(std::string_view text, std::string file, std::filesystem::path base_dir,
                                   const std::filesystem::path& default_plugin_dir) {
  CompanyConfig config;
  config.document.file = std::move(file);
  config.document.base_dir = std::move(base_dir);
  // Checked first, so every message below may quote any value of the file.
  if (auto bad = first_invalid_utf8(text); bad != std::string_view::npos) {
    auto before = text.substr(0, bad);
    auto line = std::count(before.begin(), before.end(), '\n') + 1;
    auto column = bad - (before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1) + 1;
    throw ConfigFileError(config.document.file + ":" + std::to_string(line) + ":" + std::to_string(column) +
                          ": the file is not valid UTF-8 here (fix: save it as UTF-8)");
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::ParserException& e) {
    throw ConfigFileError(config.document.file + ":" + std::to_string(e.mark.line + 1) + ":" +
                          std::to_string(e.mark.column + 1) + ": malformed YAML: " + e.msg +
                          " (fix: check the indentation and quoting on this line and the one before)");
  }
  std::vector<ConfigIssue> issues;
  Converter converter{config.document, issues};
  config.document.root = converter.convert(root, "");  // its issues are reported with the rest
  const json& doc = config.document.root;
  if (!doc.is_object())
    throw config.error({{"", doc.is_null() ? "the file is empty" : "the top level is not a map of keys",
                         "start from config/company.yaml: company_name, kernel, select, plugins"}});

  static const std::vector<std::string> top_keys{"company_name", "kernel", "select", "plugins", "settings",
                                                 "containers"};
  for (const auto& [key, value] : doc.items()) {
    if (std::find(top_keys.begin(), top_keys.end(), key) != top_keys.end()) continue;
    auto near = did_you_mean(key, top_keys);
    issues.push_back({key, "unknown key \"" + key + "\"",
                      near.empty() ? "remove it; the top-level keys are company_name, kernel, select, plugins, settings, containers"
                                   : "did you mean \"" + near + "\"?"});
  }

  if (!doc.contains("company_name") || doc["company_name"].is_null()) {
    issues.push_back({"", "required key \"company_name\" is missing", "add company_name: \"Your Company\""});
  } else if (!doc["company_name"].is_string() || doc["company_name"].get<std::string>().empty()) {
    issues.push_back({"company_name", "expected a non-empty string, got " + quote(doc["company_name"]), "write company_name: \"Your Company\""});
  } else {
    config.company_name = doc["company_name"].get<std::string>();
  }

  auto kernel = kernel_config_map().apply(doc.value("kernel", json()), "kernel", issues);
  if (kernel.contains("threads")) config.kernel.threads = kernel["threads"].get<std::size_t>();
  if (kernel.contains("blocking_threads")) config.kernel.blocking_threads = kernel["blocking_threads"].get<std::size_t>();
  if (kernel.contains("blocking_queue")) config.kernel.blocking_queue = kernel["blocking_queue"].get<std::size_t>();
  if (kernel.contains("shutdown_timeout")) config.kernel.shutdown_timeout = std::chrono::milliseconds(kernel["shutdown_timeout"].get<std::int64_t>());
  if (kernel.contains("start_timeout")) config.kernel.start_timeout = std::chrono::milliseconds(kernel["start_timeout"].get<std::int64_t>());
  for (const auto& dir : kernel.value("plugin_dirs", json::array())) {
    std::filesystem::path path(dir.get<std::string>());
    config.kernel.plugin_dirs.push_back(path.is_absolute() ? path : (config.document.base_dir / path).lexically_normal());
  }
  if (config.kernel.plugin_dirs.empty()) config.kernel.plugin_dirs.push_back(default_plugin_dir);

  const json select = doc.value("select", json::object());
  if (!select.is_object() && !select.is_null()) {
    issues.push_back({"select", "expected a map of service to plugin, got " + quote(select), "write e.g. select: {store: store-sqlite}"});
  } else if (select.is_object()) {
    for (const auto& [slot, chosen] : select.items()) {
      if (!chosen.is_string() || !host::valid_plugin_name(chosen.get<std::string>())) {
        issues.push_back({"select." + slot, "expected a plugin name, got " + quote(chosen), "write the name of a plugin, e.g. store-sqlite"});
        continue;
      }
      config.select[slot] = chosen.get<std::string>();
    }
  }

  // Settings: namespace -> key -> value. Values are checked against each setting's definition
  // when the plugin that owns it registers it; here only the shape.
  const json settings = doc.value("settings", json::object());
  if (!settings.is_object() && !settings.is_null()) {
    issues.push_back({"settings", "expected a map of setting namespaces, got " + quote(settings),
                      "write settings: {backup: {keep: 7}}"});
  } else if (settings.is_object()) {
    for (const auto& [space, keys] : settings.items()) {
      if (!keys.is_object()) {
        issues.push_back({"settings." + space, "expected a map of setting keys, got " + quote(keys),
                          "write settings: {" + space + ": {key: value}}"});
        continue;
      }
      config.settings[space] = keys;
    }
  }

  const json plugins = doc.value("plugins", json::object());
  if (!plugins.is_object() && !plugins.is_null()) {
    issues.push_back({"plugins", "expected a map of plugin names, got " + quote(plugins), "write plugins: {name: {enabled: true, config: {...}}}"});
  } else if (plugins.is_object()) {
    for (const auto& [name, entry] : plugins.items()) {
      const std::string path = "plugins." + name;
      if (!host::valid_plugin_name(name)) {
        issues.push_back({path, "\"" + name + "\" is not a plugin name", "use lower-case letters, digits and '-'"});
        continue;
      }
      auto applied = plugin_entry_config_map().apply(entry, path, issues);
      PluginEntry plugin;
      plugin.enabled = applied.value("enabled", true);
      plugin.optional = applied.value("optional", false);
      plugin.start_timeout = std::chrono::milliseconds(applied.value("start_timeout", std::int64_t{0}));
      plugin.config = applied.value("config", json::object());
      config.plugins[name] = std::move(plugin);
    }
  }
  apply_containers_section(doc, config, issues);
  if (!issues.empty()) throw config.error(issues);
  return config;
}

const std::vector<GuideVariable>& guide_variables() {
  static const std::vector<GuideVariable> table = {
      {"SYNTHORG_JWT_SECRET", "JWT_SECRET"},
      {"SYNTHORG_HTTP_PORT", "PORT"},
      {"SYNTHORG_GRPC_PORT", "GRPC_PORT"},
  };
  return table;
}

CompanyConfig load_company_config(const std::optional<std::filesystem::path>& explicit_path,
                                  const std::filesystem::path& default_plugin_dir) {
  std::optional<std::filesystem::path> path = explicit_path;
  std::string origin = "--config";
  if (!path) {
    if (const char* env = std::getenv("SYNTHORG_CONFIG_PATH"); env && *env) {
      path = env;
      origin = "SYNTHORG_CONFIG_PATH";
    } else if (std::filesystem::exists("company.yaml")) {
      path = "company.yaml";
    }
  }
  CompanyConfig config;
  if (path) {
    std::ifstream in(*path);
    if (!in)
      throw ConfigFileError(path->string() + ": cannot read the configuration file (named by " + origin +
                            "): " + (std::filesystem::exists(*path) ? "permission denied" : "no such file") +
                            " (fix: correct the path, or unset it to use the embedded default)");
    std::stringstream text;
    text << in.rdbuf();
    auto base = std::filesystem::absolute(*path).parent_path();
    config = parse_company_config(text.str(), path->string(), base, default_plugin_dir);
  } else {
    config = parse_company_config(embedded_company_yaml(), "<embedded default>", std::filesystem::current_path(),
                                  default_plugin_dir);
  }
  // The SynthOrg guide's SYNTHORG_PERSISTENCE_BACKEND picks the store; SYNTHORG_DATABASE_URL,
  // when set, still selects PostgreSQL whatever it says, as the guide has it.
  const char* url = std::getenv("SYNTHORG_DATABASE_URL");
  bool database_url = url && *url;
  if (const char* backend = std::getenv("SYNTHORG_PERSISTENCE_BACKEND"); backend && *backend) {
    std::string chosen(backend);
    std::transform(chosen.begin(), chosen.end(), chosen.begin(), [](unsigned char c) { return std::tolower(c); });
    if (chosen == "sqlite") {
      config.select["store"] = "store-sqlite";
    } else if (chosen == "postgres" || chosen == "postgresql") {
      if (!database_url)
        throw ConfigFileError("SYNTHORG_PERSISTENCE_BACKEND=postgres needs SYNTHORG_DATABASE_URL (fix: set it to "
                              "postgres://user:password@host:5432/database, or choose sqlite)");
    } else {
      throw ConfigFileError("SYNTHORG_PERSISTENCE_BACKEND is " + quote(chosen) +
                            "; it must be sqlite or postgres (fix: set one of them, or unset it to use select.store)");
    }
  }
  if (database_url) config.select["store"] = "store-postgres";
  // SYNTHORG_PLUGIN_PATH: more plugin directories, searched after the configured (or installed)
  // ones, so a third-party plugin is deployed by dropping it in its own directory; a built-in
  // keeps its name (a later file of the same name is refused as a duplicate).
  if (const char* extra = std::getenv("SYNTHORG_PLUGIN_PATH"); extra && *extra) {
    std::string_view rest(extra);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      std::filesystem::path dir(std::string(rest.substr(0, colon)));
      rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
      if (dir.empty()) continue;
      std::error_code error;
      if (!dir.is_absolute() || !std::filesystem::is_directory(dir, error))
        throw ConfigFileError("SYNTHORG_PLUGIN_PATH: " + quote(dir.string()) + " is " +
                              (dir.is_absolute() ? "not a directory" : "not an absolute path") +
                              " (fix: absolute directories separated by ':', e.g. /opt/synthorg/plugins)");
      config.kernel.plugin_dirs.push_back(dir.lexically_normal());
    }
  }
  if (auto slot = config.select.find("orchestrator"); slot != config.select.end() && slot->second == "auto")
    slot->second = auto_orchestrator();
  return config;
}

std::string auto_orchestrator() {
  // Inside a pod, the cluster is where workloads belong: client-go's own in-cluster test.
  const char* service_host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* service_port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (service_host && *service_host && service_port && *service_port) return "orchestrator-kubernetes";
  return docker_engine_reachable() ? "orchestrator-docker" : "orchestrator-process";
}

bool docker_engine_reachable() {
  const char* host = std::getenv("DOCKER_HOST");
  std::string address = host && *host ? host : "unix:///var/run/docker.sock";
  // An engine named by a TCP address is the operator's explicit choice: trust it.
  if (address.rfind("unix://", 0) != 0) return true;
  auto path = address.substr(7);
  sockaddr_un socket_address{};
  if (path.size() >= sizeof socket_address.sun_path) return false;
  socket_address.sun_family = AF_UNIX;
  std::memcpy(socket_address.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&socket_address), sizeof socket_address) == 0;
  ::close(fd);
  return connected;
}

}  // namespace synthorg::kernel
