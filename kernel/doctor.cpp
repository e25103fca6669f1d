#include "doctor.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backup.hpp"
#include "http_probe.hpp"
#include "kernel.hpp"
#include "store_only.hpp"
#include "guide_variables.hpp"
#include "synthorg/crypto.hpp"

namespace synthorg::kernel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view orchestrator_service = "synthorg.Orchestrator/1";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string user_name(uid_t uid) {
  if (const passwd* entry = ::getpwuid(uid)) return entry->pw_name;
  return std::to_string(uid);
}

std::string joined(const std::vector<std::string>& items, std::string_view separator = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : std::string(separator)) + item;
  return out;
}

// The nearest ancestor of `path` (itself included) that exists.
fs::path existing_ancestor(fs::path path) {
  std::error_code error;
  path = fs::absolute(path, error).lexically_normal();
  while (!fs::exists(path, error) && path.has_parent_path() && path != path.parent_path()) path = path.parent_path();
  return path;
}

std::string owner_and_mode(const fs::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return "";
  return fmt::format("owner {}, mode {:04o}", user_name(info.st_uid), info.st_mode & 07777);
}

// What the plugins decided, kept once the kernel that worked it out is gone.
struct Plan {
  CompanyConfig config;
  std::vector<std::string> order;
  std::map<std::string, json> plugin_config;                   // with defaults applied
  std::map<std::string, std::vector<std::string>> provides;    // plugin -> service ids
};

class Doctor {
 public:
  explicit Doctor(const DoctorRequest& request) : request_(request) {}

  std::vector<CheckResult> run() {
    bool planned = plan();
    check_keys();
    check_guide_variables();
    if (!planned) {
      for (auto name : {"data directory", "database", "backup directory", "http port", "web port", "grpc port",
                        "orchestrator"})
        skip(name, "needs a valid configuration (see above)");
      return std::move(results_);
    }
    check_data_directory();
    check_database();
    check_backup_directory();
    check_ports();
    check_orchestrator();
    return std::move(results_);
  }

 private:
  void add(std::string name, CheckStatus status, std::string detail, std::string fix = {}) {
    results_.push_back({std::move(name), status, std::move(detail), std::move(fix)});
  }
  void skip(std::string name, std::string why) { add(std::move(name), CheckStatus::skip, std::move(why)); }
  bool starts(std::string_view plugin) const {
    return std::find(plan_.order.begin(), plan_.order.end(), plugin) != plan_.order.end();
  }
  std::vector<std::string> providers_of(std::string_view service) const {
    std::vector<std::string> out;
    for (const auto& name : plan_.order) {
      auto it = plan_.provides.find(name);
      if (it != plan_.provides.end() && std::find(it->second.begin(), it->second.end(), service) != it->second.end())
        out.push_back(name);
    }
    return out;
  }

  // config + plugin files: what `synthorg config validate` does, as checks.
  bool plan() {
    try {
      plan_.config = load_company_config(request_.config_path, request_.plugin_dir);
    } catch (const std::exception& error) {
      add("config", CheckStatus::fail, error.what(),
          "correct the file at the positions shown; `synthorg config validate` checks it again");
      skip("plugin files", "needs a readable configuration (see above)");
      return false;
    }
    Kernel kernel(plan_.config);
    try {
      kernel.discover();
    } catch (const std::exception& error) {
      add("config", CheckStatus::fail, error.what(), "create the directory, or correct kernel.plugin_dirs");
      skip("plugin files", "needs existing plugin directories (see above)");
      return false;
    }
    std::vector<std::string> names;
    for (const auto& plugin : kernel.plugins()) names.push_back(plugin.file.manifest.name);
    bool prepared = true;
    std::string problem;
    try {
      kernel.prepare();
    } catch (const std::exception& error) {
      prepared = false;
      problem = error.what();
    }
    if (prepared) {
      plan_.order = kernel.start_order();
      add("config", CheckStatus::ok,
          fmt::format("{} is valid; {} plugin(s) would start: {}", plan_.config.document.file, plan_.order.size(),
                      plan_.order.empty() ? "(none)" : joined(plan_.order)));
    } else {
      add("config", CheckStatus::fail, problem,
          "correct what the message names; `synthorg config validate` checks it again");
    }
    if (kernel.refusals().empty()) {
      add("plugin files", CheckStatus::ok, fmt::format("{} plugin file(s) load: {}", names.size(), joined(names)));
    } else {
      std::vector<std::string> reasons;
      for (const auto& refusal : kernel.refusals()) reasons.push_back(refusal.reason);
      add("plugin files", CheckStatus::fail, joined(reasons, "\n"),
          "rebuild each refused plugin against this SDK (`synthorg version` shows the ABI and toolchain), "
          "or remove it from the plugin directory");
    }
    if (!prepared) return false;
    for (const auto& plugin : kernel.plugins()) {
      const auto& manifest = plugin.file.manifest;
      if (!starts(manifest.name)) continue;
      plan_.provides[manifest.name] = manifest.provides;
      auto entry = plan_.config.plugins.find(manifest.name);
      json given = entry == plan_.config.plugins.end() ? json(nullptr) : entry->second.config;
      try {
        plan_.plugin_config[manifest.name] = manifest.config.apply(given);
      } catch (const std::exception&) {
        plan_.plugin_config[manifest.name] = json::object();  // prepare() accepted it; nothing to add
      }
    }
    return true;
  }

  void check_keys() {
    auto settings_key = env("SYNTHORG_SETTINGS_KEY");
    if (settings_key.empty()) {
      add("settings key", CheckStatus::warn,
          "SYNTHORG_SETTINGS_KEY is not set: sensitive settings cannot be stored, and a plugin that defines one "
          "refuses to start",
          "export SYNTHORG_SETTINGS_KEY=\"$(synthorg keygen fernet)\" and keep it: stored secrets need the same key");
    } else {
      try {
        crypto::Fernet check{settings_key};
        add("settings key", CheckStatus::ok, "SYNTHORG_SETTINGS_KEY is a valid Fernet key");
      } catch (const std::exception& error) {
        // The message says what is wrong and never echoes the key.
        add("settings key", CheckStatus::fail, std::string("SYNTHORG_SETTINGS_KEY: ") + error.what(),
            "export SYNTHORG_SETTINGS_KEY=\"$(synthorg keygen fernet)\" (a new key cannot read values stored "
            "under the old one)");
      }
    }
    auto jwt_secret = env("SYNTHORG_JWT_SECRET");
    bool auth = starts("auth");
    const std::string fix = "export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\", the same value on every replica";
    if (!jwt_secret.empty()) {
      if (auto problem = crypto::jwt_secret_problem(jwt_secret); !problem.empty())
        add("jwt secret", CheckStatus::fail, "SYNTHORG_JWT_SECRET " + problem, fix);
      else
        add("jwt secret", CheckStatus::ok,
            fmt::format("SYNTHORG_JWT_SECRET is set ({} characters){}", jwt_secret.size(),
                        auth ? "" : "; the auth plugin is not enabled, so nothing uses it yet"));
    } else if (auth && !plan_.plugin_config["auth"].value("secret_file", std::string()).empty()) {
      auto file = plan_.plugin_config["auth"].value("secret_file", std::string());
      add("jwt secret", CheckStatus::warn,
          "SYNTHORG_JWT_SECRET is not set: sessions are signed with the secret in " + file +
              (std::filesystem::exists(file) ? "" : ", made on first start") + "; fine on one machine only",
          fix);
    } else if (auth) {
      add("jwt secret", CheckStatus::fail, "SYNTHORG_JWT_SECRET is not set, and the auth plugin refuses to start without it",
          fix);
    } else {
      skip("jwt secret", "SYNTHORG_JWT_SECRET is not set; nothing needs it (the auth plugin is not enabled)");
    }
  }

  // A directory that exists and is writable, or that could be created. Returns the problem.
  static std::string unwritable(const fs::path& directory) {
    std::error_code error;
    if (fs::exists(directory, error)) {
      if (!fs::is_directory(directory, error)) return directory.string() + " exists but is not a directory";
      if (::access(directory.c_str(), W_OK | X_OK) != 0)
        return fmt::format("{} is not writable by uid {} ({})", directory.string(), ::geteuid(), owner_and_mode(directory));
      return "";
    }
    auto ancestor = existing_ancestor(directory);
    if (!fs::is_directory(ancestor, error))
      return fmt::format("{} cannot be created: {} is not a directory", directory.string(), ancestor.string());
    if (::access(ancestor.c_str(), W_OK | X_OK) != 0)
      return fmt::format("{} does not exist and cannot be created: {} is not writable by uid {} ({})",
                         directory.string(), ancestor.string(), ::geteuid(), owner_and_mode(ancestor));
    return "";
  }

  // Variables from the deployment guides that nothing here reads (guide_variables.cpp): named,
  // so an operator does not believe them in effect. Unused API keys and a NATS URL are warnings:
  // a secret nobody reads can only leak, and replicas do not share events without the bridge.
  void check_guide_variables() {
    std::vector<std::string> noted, warned;
    for (const auto& row : guide_variable_rows()) {
      if (!row.unused) continue;
      std::string name(row.name);
      if (env(name.c_str()).empty()) continue;
      bool warn = name.ends_with("_API_KEY") || name.starts_with("SYNTHORG_NATS_");
      (warn ? warned : noted).push_back(fmt::format("{} ({})", name, row.behaviour));
    }
    if (noted.empty() && warned.empty()) return skip("guide variables", "none set that this server ignores");
    std::vector<std::string> all = warned;
    all.insert(all.end(), noted.begin(), noted.end());
    add("guide variables", warned.empty() ? CheckStatus::ok : CheckStatus::warn,
        fmt::format("set but not read by this server: {}", fmt::join(all, "; ")),
        warned.empty() ? "" : "remove what nothing reads from the server's environment (docs/configuration.md lists "
                              "every guide variable)");
  }

  void check_data_directory() {
    if (!starts("store-sqlite")) {
      skip("data directory",
           providers_of(std::string(Store::service_id)).empty() ? "no Store plugin is enabled"
                                                                 : "the Store is not SQLite: no local database file");
      return;
    }
    auto from_env = env("SYNTHORG_DB_PATH");
    db_path_ = from_env.empty() ? fs::path(plan_.plugin_config["store-sqlite"].value("path", "")) : fs::path(from_env);
    std::error_code error;
    db_path_ = fs::absolute(db_path_, error).lexically_normal();
    auto directory = db_path_.parent_path();
    const std::string fix = fmt::format(
        "create it and give it to the user synthorg runs as (chown), mount a writable volume there, or point "
        "SYNTHORG_DB_PATH elsewhere");
    if (auto problem = unwritable(directory); !problem.empty()) {
      add("data directory", CheckStatus::fail, problem, fix);
      return;
    }
    if (fs::exists(db_path_, error)) {
      if (!fs::is_regular_file(db_path_, error)) {
        add("data directory", CheckStatus::fail, db_path_.string() + " exists but is not a file",
            "move it aside, or point SYNTHORG_DB_PATH elsewhere");
        return;
      }
      if (::access(db_path_.c_str(), R_OK | W_OK) != 0) {
        add("data directory", CheckStatus::fail,
            fmt::format("{} is not readable and writable by uid {} ({})", db_path_.string(), ::geteuid(),
                        owner_and_mode(db_path_)),
            fix);
        return;
      }
    }
    data_directory_ok_ = true;
    add("data directory", CheckStatus::ok,
        fs::exists(directory, error)
            ? fmt::format("{} is writable ({}); database file {}", directory.string(), owner_and_mode(directory),
                          db_path_.filename().string())
            : fmt::format("{} does not exist yet; store-sqlite creates it on start", directory.string()));
  }

  void check_database() {
    auto stores = providers_of(std::string(Store::service_id));
    if (stores.empty()) return skip("database", "no Store plugin is enabled");
    const bool sqlite = starts("store-sqlite");
    std::error_code error;
    if (sqlite) {
      if (!data_directory_ok_) return skip("database", "the data directory is not usable (see above)");
      if (!fs::exists(db_path_, error))
        return add("database", CheckStatus::ok,
                   db_path_.string() + " does not exist yet; store-sqlite creates it on first start");
      // Opening creates the lock file and the WAL as the caller: as root, on a service user's
      // files, that would leave root-owned files the server then cannot open.
      struct stat info {};
      if (::geteuid() == 0 && ::stat(db_path_.c_str(), &info) == 0 && info.st_uid != 0)
        return add("database", CheckStatus::warn,
                   fmt::format("not opened: {} belongs to {}, and files root would create beside it would lock "
                               "that user out",
                               db_path_.string(), user_name(info.st_uid)),
                   fmt::format("run the doctor as that user: runuser -u {} -- synthorg doctor", user_name(info.st_uid)));
    }
    try {
      StoreOnly running(request_.config_path, request_.plugin_dir);
      running.store().ping();
      auto info = running.store().info();
      backup_dir_ = running.backups().directory();
      add("database", CheckStatus::ok,
          fmt::format("{} answers: {} {} at {}", stores.front(), info.backend, info.server_version, info.location));
    } catch (const std::exception& failure) {
      add("database", CheckStatus::fail, failure.what(),
          sqlite ? "see the message: usually the file's or directory's owner, or a full disk"
                 : "check SYNTHORG_DATABASE_URL (user, password, host, database), that the server runs and "
                   "accepts this client, and SYNTHORG_POSTGRES_SSL_MODE");
    }
  }

  void check_backup_directory() {
    if (providers_of(std::string(Store::service_id)).empty()) return skip("backup directory", "no Store plugin is enabled");
    if (backup_dir_.empty()) {
      // The Store was not opened: resolve as the Settings service would without a stored value.
      auto from_env = env("SYNTHORG_BACKUP_DIR");
      auto from_config = plan_.config.settings.find("backup");
      if (!from_env.empty()) {
        backup_dir_ = from_env;
      } else if (from_config != plan_.config.settings.end() && from_config->second.contains("dir") &&
                 from_config->second["dir"].is_string()) {
        backup_dir_ = from_config->second["dir"].get<std::string>();
      } else {
        for (const auto& definition : kernel_setting_definitions())
          if (definition.key == "dir") backup_dir_ = definition.default_value.get<std::string>();
      }
    }
    std::error_code error;
    auto directory = fs::absolute(backup_dir_, error).lexically_normal();
    if (auto problem = unwritable(directory); !problem.empty())
      return add("backup directory", CheckStatus::fail, problem,
                 "create it for the user synthorg runs as, or set backup.dir (SYNTHORG_BACKUP_DIR) to a writable "
                 "directory");
    add("backup directory", CheckStatus::ok,
        fs::exists(directory, error) ? directory.string() + " is writable"
                                     : directory.string() + " does not exist yet; the first backup creates it");
  }

  // Each listening plugin's address and port can be bound: a port taken by another program would
  // stop `serve`, or (for an optional plugin such as web) leave it running without that listener.
  struct Listening {
    const char* check;    // "http port"
    const char* plugin;   // "http-api"
    int default_port;     // its ConfigMap's default
    const char* address_variable, *port_variable;
    const char* probe;    // a path our own server answers 200 on here, to tell it from a stranger;
                          // nullptr: not HTTP, so the API's port is asked instead
  };
  void check_ports() {
    for (const Listening& listening :
         {Listening{"http port", "http-api", 3001, "SYNTHORG_HTTP_ADDRESS", "SYNTHORG_HTTP_PORT", "/api/v1/healthz"},
          Listening{"web port", "web", 3000, "SYNTHORG_WEB_ADDRESS", "SYNTHORG_WEB_PORT", "/api/v1/healthz"},
          Listening{"grpc port", "flight-gateway", 8081, "SYNTHORG_GRPC_ADDRESS", "SYNTHORG_GRPC_PORT", nullptr}})
      check_port(listening);
  }

  void check_port(const Listening& listening) {
    const std::string name = listening.check, plugin = listening.plugin;
    if (!starts(plugin)) return skip(name, "the " + plugin + " plugin is not enabled");
    auto& config = plan_.plugin_config[plugin];
    auto address_text = config.value("address", std::string("0.0.0.0"));
    auto port = static_cast<std::uint16_t>(config.value("port", listening.default_port));
    if (port == 0) return add(name, CheckStatus::ok, "port 0: the server takes any free port");
    namespace asio = boost::asio;
    boost::system::error_code error;
    auto address = asio::ip::make_address(address_text, error);
    if (error)
      return add(name, CheckStatus::fail, "plugins." + plugin + ".config.address \"" + address_text + "\" is not an IP address",
                 fmt::format("write an address such as 0.0.0.0 or 127.0.0.1 ({})", listening.address_variable));
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io);
    asio::ip::tcp::endpoint endpoint(address, port);
    // The server sets SO_REUSEADDR too, so a socket in TIME_WAIT is no obstacle to it either.
    acceptor.open(endpoint.protocol(), error);
    if (!error) acceptor.set_option(asio::socket_base::reuse_address(true), error);
    if (!error) acceptor.bind(endpoint, error);
    acceptor.close();
    auto where = fmt::format("{}:{}", address_text, port);
    if (!error) return add(name, CheckStatus::ok, where + " is free");
    if (error == asio::error::address_in_use) {
      auto host = address.is_unspecified() ? std::string(address.is_v6() ? "::1" : "127.0.0.1") : address_text;
      auto probe_port = port;
      if (!listening.probe) {
        // A gRPC port cannot answer /healthz; if our API answers on its port, the server holding
        // this one is most likely ours too.
        auto& api = plan_.plugin_config["http-api"];
        probe_port = static_cast<std::uint16_t>(api.value("port", 3001));
        auto api_address = api.value("address", std::string("127.0.0.1"));
        host = api_address == "0.0.0.0" ? "127.0.0.1" : api_address == "::" ? "::1" : api_address;
      }
      if (probe_port != 0 &&
          http_get(host, probe_port, listening.probe ? listening.probe : "/api/v1/healthz", std::chrono::milliseconds(1000))
                  .status == 200)
        return add(name, CheckStatus::warn,
                   where + " is in use while this install's API answers /api/v1/healthz: probably synthorg itself, "
                           "already running (a second `synthorg serve` here would fail)",
                   "nothing, if that is this install's server; otherwise stop it or choose another port");
      return add(name, CheckStatus::fail, where + " is in use by another program",
                 fmt::format("stop it (`ss -ltnp 'sport = :{}'` names it), or set {} / plugins.{}.config.port", port,
                             listening.port_variable, plugin));
    }
    if (error == asio::error::access_denied)
      return add(name, CheckStatus::fail, where + ": permission denied (ports below 1024 need privileges)",
                 fmt::format("use a port from 1024 up ({} is the default) and put a reverse proxy on 80/443",
                             listening.default_port));
    add(name, CheckStatus::fail, where + ": " + error.message(),
        fmt::format("set plugins.{}.config.address ({}) to an address of this machine, e.g. 0.0.0.0", plugin,
                    listening.address_variable));
  }

  void check_orchestrator() {
    auto orchestrators = providers_of(orchestrator_service);
    if (orchestrators.empty())
      return skip("orchestrator",
                  "no orchestrator plugin is enabled; with orchestrator-docker this checks the Docker socket, "
                  "with orchestrator-kubernetes the in-cluster service account");
    for (const auto& name : orchestrators) {
      if (name == "orchestrator-docker") {
        check_docker_socket();
      } else if (name == "orchestrator-kubernetes") {
        check_kubernetes();
      } else {
        skip("orchestrator", name + ": the doctor has no check for this orchestrator");
      }
    }
  }

  void check_docker_socket() {
    auto host = env("DOCKER_HOST");
    std::string path = "/var/run/docker.sock";
    if (!host.empty()) {
      if (host.rfind("unix://", 0) != 0)
        return skip("docker socket", "DOCKER_HOST is not a unix:// socket; the doctor checks only local sockets");
      path = host.substr(7);
    }
    namespace asio = boost::asio;
    asio::io_context io;
    asio::local::stream_protocol::socket socket(io);
    boost::system::error_code error;
    socket.connect(asio::local::stream_protocol::endpoint(path), error);
    if (!error) return add("docker socket", CheckStatus::ok, path + " accepts connections");
    add("docker socket", CheckStatus::fail, path + ": " + error.message(),
        "mount the Docker socket (read the risk noted in compose.yml first), give this user access to it, or set "
        "DOCKER_HOST=unix:///path");
  }

  void check_kubernetes() {
    auto host = env("KUBERNETES_SERVICE_HOST");
    auto port = env("KUBERNETES_SERVICE_PORT");
    const std::string token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    if (host.empty() || port.empty())
      return add("kubernetes", CheckStatus::fail,
                 "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set (they are inside a pod)",
                 "run inside the cluster with the manifests in packaging/k8s/");
    if (::access(token.c_str(), R_OK) != 0)
      return add("kubernetes", CheckStatus::fail, token + " is not readable",
                 "keep automountServiceAccountToken on for the synthorg ServiceAccount (packaging/k8s/)");
    add("kubernetes", CheckStatus::ok, fmt::format("in cluster: API at {}:{}, service account token readable", host, port));
  }

  const DoctorRequest& request_;
  std::vector<CheckResult> results_;
  Plan plan_;
  fs::path db_path_;
  bool data_directory_ok_ = false;
  fs::path backup_dir_;
};

}  // namespace

std::string_view status_name(CheckStatus status) noexcept {
  switch (status) {
    case CheckStatus::ok: return "OK";
    case CheckStatus::warn: return "WARN";
    case CheckStatus::fail: return "FAIL";
    case CheckStatus::skip: return "SKIP";
  }
  return "?";
}

std::vector<CheckResult> run_doctor(const DoctorRequest& request) { return Doctor(request).run(); }

int doctor_command(const DoctorRequest& request) {
  auto results = run_doctor(request);
  auto failed = std::count_if(results.begin(), results.end(), [](const auto& r) { return r.status == CheckStatus::fail; });
  if (request.json) {
    json checks = json::array();
    for (const auto& result : results)
      checks.push_back({{"name", result.name}, {"status", status_name(result.status)}, {"detail", result.detail},
                        {"fix", result.fix}});
    std::cout << json{{"healthy", failed == 0}, {"checks", checks}}.dump(2) << '\n';
    return failed == 0 ? 0 : doctor_unhealthy;
  }
  constexpr std::size_t indent = 23;  // the 5-wide status, a space, the 16-wide name, a space
  std::cout << fmt::format("synthorg doctor (uid {}, {})\n", ::geteuid(), user_name(::geteuid()));
  for (const auto& result : results) {
    // Multi-line details (several refused files, several config errors) stay aligned.
    std::string detail;
    for (char c : result.detail) detail += c == '\n' ? "\n" + std::string(indent, ' ') : std::string(1, c);
    std::cout << fmt::format("{:<5} {:<16} {}\n", status_name(result.status), result.name, detail);
    if (!result.fix.empty() && result.status != CheckStatus::ok && result.status != CheckStatus::skip)
      std::cout << fmt::format("{}fix: {}\n", std::string(indent, ' '), result.fix);
  }
  if (failed == 0)
    std::cout << "healthy: nothing failed\n";
  else
    std::cout << fmt::format("unhealthy: {} check(s) failed (exit {})\n", failed, doctor_unhealthy);
  return failed == 0 ? 0 : doctor_unhealthy;
}

}  // namespace synthorg::kernel
