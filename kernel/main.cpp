// synthorg: the kernel's command line. Exit codes: 0 ok, 1 error, 2 usage, 3 unhealthy (doctor).
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>

#include "backup_command.hpp"
#include "config_docs.hpp"
#include "guide_variables.hpp"
#include "doctor.hpp"
#include "http_probe.hpp"
#include "kernel.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/host/call_in_flight.hpp"
#include "synthorg/log.hpp"
#include "synthorg/toolchain.hpp"

namespace {

using namespace synthorg;
using namespace synthorg::kernel;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int exit_ok = 0;
constexpr int exit_error = 1;
constexpr int exit_usage = 2;

std::filesystem::path executable_dir() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::current_path() : self.parent_path();
}

std::filesystem::path default_plugin_dir() {
  return (executable_dir() / SYNTHORG_PLUGIN_DIR_FROM_BIN).lexically_normal();
}

// SIGINT/SIGTERM are blocked in every thread and taken by one thread with sigwait, so a
// signal is never lost whatever phase the kernel is in. A second signal exits at once.
class ShutdownSignal {
 public:
  ShutdownSignal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    waiter_ = std::thread([this] {
      for (int count = 1;; ++count) {
        int signal = 0;
        if (sigwait(&set_, &signal) != 0) continue;
        if (count > 1) {
          std::fputs("synthorg: second signal during shutdown; exiting now\n", stderr);
          std::_Exit(exit_error);
        }
        {
          std::lock_guard lock(mutex_);
          name_ = signal == SIGTERM ? "SIGTERM" : "SIGINT";
          requested_ = true;
        }
        changed_.notify_all();
      }
    });
    waiter_.detach();
  }
  const std::atomic<bool>& requested() const { return requested_; }
  std::string wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return requested_.load(); });
    return name_;
  }

 private:
  sigset_t set_{};
  std::thread waiter_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::atomic<bool> requested_{false};
  std::string name_;
};

void log_failure(const log::Logger& logger, std::string_view message, const std::string& detail) {
  std::size_t start = 0;
  while (start <= detail.size()) {
    auto end = detail.find('\n', start);
    if (end == std::string::npos) end = detail.size();
    logger.error(message, {{"error", std::string_view(detail).substr(start, end - start)}});
    start = end + 1;
  }
}

// Every connection costs a descriptor, and the soft open-file limit is often 1024 where the hard
// one is far higher: take all the hard limit allows, so the listeners' connection limits (derived
// from it) answer 503 before accept() runs out. Returns the soft limit now in force.
// Secrets from files, as Docker and Kubernetes hand them over: NAME unset, then NAME_FILE names
// the file, else /run/secrets/<name> (SYNTHORG_SECRETS_DIR moves it), with the PondPilot guide's
// `jwt_secret` too. One trailing newline is dropped. A file others may read is warned about; a
// NAME_FILE that cannot be read stops the start, naming it. Values are never logged.
void adopt_secret_files(const log::Logger& log) {
  struct Secret {
    const char* name;
    std::vector<const char*> docker_names;
  };
  static const std::vector<Secret> secrets = {
      {"SYNTHORG_JWT_SECRET", {"synthorg_jwt_secret", "jwt_secret"}},
      {"SYNTHORG_SETTINGS_KEY", {"synthorg_settings_key"}},
      {"SYNTHORG_DATABASE_URL", {"synthorg_database_url"}},
  };
  const char* dir_variable = std::getenv("SYNTHORG_SECRETS_DIR");
  std::filesystem::path dir = dir_variable && *dir_variable ? dir_variable : "/run/secrets";
  for (const auto& secret : secrets) {
    if (const char* set = std::getenv(secret.name); set && *set) continue;
    auto file_variable = std::string(secret.name) + "_FILE";
    std::filesystem::path file;
    bool named = false;
    if (const char* path = std::getenv(file_variable.c_str()); path && *path) {
      file = path;
      named = true;
    } else {
      for (const char* docker_name : secret.docker_names) {
        std::error_code error;
        if (std::filesystem::is_regular_file(dir / docker_name, error)) {
          file = dir / docker_name;
          break;
        }
      }
    }
    if (file.empty()) continue;
    std::ifstream in(file, std::ios::binary);
    std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.is_open() || value.size() > 65536) {
      if (!named) continue;
      throw std::runtime_error(file_variable + " names " + file.string() +
                               ", which cannot be read as a secret (fix: point it at a readable file of at most 64 KiB)");
    }
    if (value.ends_with('\n')) value.pop_back();
    if (value.ends_with('\r')) value.pop_back();
    if (value.empty()) {
      if (!named) continue;
      throw std::runtime_error(file_variable + " names " + file.string() + ", which is empty (fix: put the secret in it)");
    }
    struct stat info {};
    if (::stat(file.c_str(), &info) == 0 && (info.st_mode & (S_IRWXG | S_IRWXO)))
      log.warn("A secret's file may be read by other users (fix: chmod 600, or mount it with mode 0400)",
               {{"variable", secret.name}, {"file", file.string()}});
    ::setenv(secret.name, value.c_str(), 1);
    log.info("Secret read from a file", {{"variable", secret.name}, {"file", file.string()}});
  }
}

// The PondPilot guide's variables (guide_variables()): one set while ours is not becomes ours
// for this process, logged by name; both set and different: ours wins, and that is logged once.
// Values are never logged.
void adopt_guide_variables(const log::Logger& log) {
  for (const auto& [ours, guide] : guide_variables()) {
    const char* theirs = std::getenv(guide);
    if (!theirs || !*theirs) continue;
    const char* mine = std::getenv(ours);
    if (!mine || !*mine) {
      ::setenv(ours, theirs, 1);
      log.info("Using the PondPilot guide's variable for ours", {{"variable", guide}, {"as", ours}});
    } else if (std::string_view(mine) != theirs) {
      log.warn("Both variables are set and differ; ours wins", {{"used", ours}, {"ignored", guide}});
    }
  }
}

rlim_t raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised{limit.rlim_max, limit.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return limit.rlim_cur;
}

int serve(const std::optional<std::filesystem::path>& config_path, bool exit_after_start) {
  const auto began = Clock::now();
  ShutdownSignal signal;
  log::Logger logger("kernel");
  // A plugin that crashes the process is named on stderr, beside the log, before it dies.
  host::report_fatal_signals(STDERR_FILENO, "synthorg: ");
  try {
    auto config = load_company_config(config_path, default_plugin_dir());
    logger.info("Starting SynthOrg Kernel", {{"version", SYNTHORG_SDK_VERSION}, {"company", config.company_name},
                                             {"config", config.document.file}, {"pid", static_cast<int>(getpid())},
                                             {"open_files", static_cast<std::uint64_t>(raise_open_file_limit())}});
    Kernel kernel(std::move(config));
    kernel.discover();
    kernel.prepare();
    if (!kernel.start(&signal.requested())) {
      logger.info("Shutdown complete", {{"during", "start-up"}});
      return exit_ok;
    }
    auto took = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
    logger.info("All plugins started", {{"plugins", kernel.start_order().size()}, {"ms", took}});
    std::string reason = exit_after_start ? std::string("--exit-after-start") : signal.wait();
    logger.info("Shutting down", {{"reason", reason}});
    bool clean = kernel.stop();
    if (!clean) {
      logger.error("Shutdown incomplete: a plugin did not stop in time");
      std::fflush(nullptr);
      std::_Exit(exit_error);  // its thread may still run; static destructors must not race it
    }
    logger.info("Shutdown complete");
    return exit_ok;
  } catch (const ConfigFileError& e) {
    log_failure(logger, "Configuration error", e.what());
  } catch (const KernelError& e) {
    log_failure(logger, "Start-up failed", e.what());
  } catch (const std::exception& e) {
    log_failure(logger, "Start-up failed", e.what());
  }
  return exit_error;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "-" : out;
}

json manifest_json(const PluginSummary& plugin) {
  const auto& m = plugin.file.manifest;
  json needs = json::array();
  for (const auto& need : m.needs) needs.push_back({{"service", need.service}, {"required", need.required}});
  return {{"name", m.name},
          {"version", m.version},
          {"description", m.description},
          {"abi", std::to_string(plugin.file.descriptor->abi_major) + "." + std::to_string(plugin.file.descriptor->abi_minor)},
          {"provides", m.provides},
          {"needs", needs},
          {"file", plugin.file.path.string()}};
}

int plugins_list(const std::optional<std::filesystem::path>& config_path, bool as_json) {
  Kernel kernel(load_company_config(config_path, default_plugin_dir()));
  kernel.discover();
  auto plugins = kernel.plugins();
  if (as_json) {
    json out = {{"plugins", json::array()}, {"refused", json::array()}};
    for (const auto& plugin : plugins) out["plugins"].push_back(manifest_json(plugin));
    for (const auto& refusal : kernel.refusals())
      out["refused"].push_back({{"file", refusal.file.string()}, {"reason", refusal.reason}});
    std::cout << out.dump(2) << "\n";
    return exit_ok;
  }
  std::printf("%-24s %-10s %-5s %-36s %-36s %s\n", "NAME", "VERSION", "ABI", "PROVIDES", "NEEDS", "FILE");
  for (const auto& plugin : plugins) {
    const auto& m = plugin.file.manifest;
    std::vector<std::string> needs;
    for (const auto& need : m.needs) needs.push_back(need.service + (need.required ? "" : "?"));
    std::printf("%-24s %-10s %-5s %-36s %-36s %s\n", m.name.c_str(), m.version.c_str(),
                manifest_json(plugin)["abi"].get<std::string>().c_str(), joined(m.provides).c_str(),
                joined(needs).c_str(), plugin.file.path.c_str());
  }
  for (const auto& refusal : kernel.refusals()) std::printf("refused: %s\n", refusal.reason.c_str());
  return exit_ok;
}

int config_validate(const std::optional<std::filesystem::path>& config_path) {
  auto config = load_company_config(config_path, default_plugin_dir());
  std::string file = config.document.file;
  Kernel kernel(std::move(config));
  kernel.discover();
  kernel.prepare();
  auto order = kernel.start_order();
  std::printf("%s: valid; %zu plugin(s) would start in this order: %s\n", file.c_str(), order.size(),
              order.empty() ? "(none)" : joined(order).c_str());
  for (const auto& refusal : kernel.refusals()) std::printf("warning: refused %s\n", refusal.reason.c_str());
  return exit_ok;
}

int config_schema(const std::optional<std::filesystem::path>& config_path, const std::string& only_plugin) {
  Kernel kernel(load_company_config(config_path, default_plugin_dir()));
  kernel.discover();
  json plugin_properties = json::object();
  for (const auto& plugin : kernel.plugins()) {
    const auto& m = plugin.file.manifest;
    if (!only_plugin.empty() && m.name != only_plugin) continue;
    auto entry = plugin_entry_config_map().json_schema();
    entry["properties"]["config"] = m.config.json_schema();
    entry["description"] = m.description;
    plugin_properties[m.name] = entry;
  }
  if (!only_plugin.empty()) {
    if (plugin_properties.empty()) {
      std::fprintf(stderr, "synthorg: no plugin named '%s' in the plugin directories\n", only_plugin.c_str());
      return exit_error;
    }
    std::cout << plugin_properties[only_plugin]["properties"]["config"].dump(2) << "\n";
    return exit_ok;
  }
  json schema = {
      {"$schema", "https://json-schema.org/draft/2020-12/schema"},
      {"title", "SynthOrg company.yaml"},
      {"type", "object"},
      {"required", {"company_name"}},
      {"additionalProperties", false},
      {"properties",
       {{"company_name", {{"type", "string"}, {"minLength", 1}, {"description", "The organisation this install serves."}}},
        {"kernel", kernel_config_map().json_schema()},
        {"select", {{"type", "object"}, {"description", "The plugin chosen for each single-provider service, e.g. store: store-sqlite."},
                    {"additionalProperties", {{"type", "string"}, {"pattern", "^[a-z][a-z0-9-]*$"}}}}},
        {"plugins", {{"type", "object"}, {"properties", plugin_properties},
                     {"additionalProperties", plugin_entry_config_map().json_schema()}}},
        {"settings", {{"type", "object"}, {"description", "Values for runtime settings, by namespace and key."},
                      {"additionalProperties", {{"type", "object"}}}}},
        {"containers", {{"type", "object"},
                        {"description", "The PondPilot guide's name for the workloads plugin's memory_limit and "
                                        "cpu_limit."},
                        {"additionalProperties", false},
                        {"properties", {{"memory_limit", {{"type", "string"}}}, {"cpu_limit", {{"type", "number"}}}}}}}}}};
  std::cout << schema.dump(2) << "\n";
  return exit_ok;
}

int config_docs(const std::optional<std::filesystem::path>& config_path) {
  Kernel kernel(load_company_config(config_path, default_plugin_dir()));
  kernel.discover();
  auto plugins = kernel.plugins();
  std::vector<const host::PluginFile*> files;
  for (const auto& plugin : plugins) files.push_back(&plugin.file);
  std::cout << config_reference_markdown(files);
  for (const auto& refusal : kernel.refusals()) std::fprintf(stderr, "warning: refused %s\n", refusal.reason.c_str());
  return exit_ok;
}

struct ProbeRequest {
  std::string host = "127.0.0.1";
  int port = 3001;
  std::string path = "/api/v1/readyz";
  std::string timeout = "2s";
};

// Exit 0 on a 2xx answer, 1 otherwise: the contract of a container health check.
int probe(const ProbeRequest& request) {
  auto timeout = parse_duration(request.timeout);
  if (!timeout || timeout->count() <= 0) {
    std::fprintf(stderr, "synthorg probe: --timeout %s is not a duration (fix: e.g. 2s or 500ms)\n", request.timeout.c_str());
    return exit_usage;
  }
  auto url = "http://" + request.host + ":" + std::to_string(request.port) + request.path;
  auto result = http_get(request.host, static_cast<std::uint16_t>(request.port), request.path, *timeout);
  if (result.status >= 200 && result.status < 300) {
    std::printf("%d %s\n", result.status, url.c_str());
    return exit_ok;
  }
  if (result.status != 0)
    std::fprintf(stderr, "synthorg probe: %d from %s\n", result.status, url.c_str());
  else
    std::fprintf(stderr, "synthorg probe: %s: %s\n", url.c_str(), result.error.c_str());
  return exit_error;
}

int version(bool as_json) {
  if (as_json) {
    std::cout << json{{"version", SYNTHORG_SDK_VERSION},
                      {"abi", std::to_string(SYNTHORG_ABI_MAJOR) + "." + std::to_string(SYNTHORG_ABI_MINOR)},
                      {"toolchain", host_toolchain_signature()}}
                     .dump(2)
              << "\n";
  } else {
    std::printf("synthorg %s (plugin ABI %d.%d; toolchain %s)\n", SYNTHORG_SDK_VERSION, SYNTHORG_ABI_MAJOR,
                SYNTHORG_ABI_MINOR, host_toolchain_signature());
  }
  return exit_ok;
}

// Only the secret goes to stdout, so `export KEY=$(synthorg keygen fernet)` works as is.
int keygen_fernet() {
  std::cout << crypto::Fernet::generate_key() << "\n";
  return exit_ok;
}

// 64 bytes: HS256 gains nothing from a key longer than SHA-256's 64-byte block (RFC 2104 §3).
int keygen_jwt() {
  std::cout << crypto::base64url_encode(crypto::random_bytes(64)) << "\n";
  return exit_ok;
}

int plugins_check(const std::vector<std::string>& files, const std::string& kind, const std::string& config,
                  const std::vector<std::string>& with, const std::string& kit_image, const std::string& call_timeout) {
  auto runner = executable_dir() / "synthorg-conformance";
  if (access(runner.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "synthorg: the conformance runner %s is not installed (fix: install the SDK component)\n",
                 runner.c_str());
    return exit_error;
  }
  std::vector<std::string> args{runner.string(), "--kind", kind};
  if (!config.empty()) args.insert(args.end(), {"--config", config});
  for (const auto& provider : with) args.insert(args.end(), {"--with", provider});
  if (!kit_image.empty()) args.insert(args.end(), {"--kit-image", kit_image});
  if (!call_timeout.empty()) args.insert(args.end(), {"--call-timeout", call_timeout});
  for (const auto& file : files) args.insert(args.end(), {"--plugin", file});
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(runner.c_str(), argv.data());
  std::perror("synthorg: cannot run the conformance runner");
  return exit_error;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SynthOrg Kernel: loads the plugins company.yaml enables and runs them"};
  app.require_subcommand(1);
  std::optional<std::filesystem::path> config_path;
  app.add_option("-c,--config", config_path,
                 "company.yaml to use (default: $SYNTHORG_CONFIG_PATH, else ./company.yaml, else the embedded default)");

  bool exit_after_start = false;
  auto* serve_cmd = app.add_subcommand("serve", "Start every enabled plugin and run until SIGTERM or SIGINT");
  serve_cmd->add_flag("--exit-after-start", exit_after_start, "Stop again as soon as everything has started (smoke tests, benchmarks)");

  auto* plugins_cmd = app.add_subcommand("plugins", "Inspect and check plugin files");
  plugins_cmd->require_subcommand(1);
  bool list_json = false;
  auto* list_cmd = plugins_cmd->add_subcommand("list", "List the plugins found in the plugin directories");
  list_cmd->add_flag("--json", list_json, "Print JSON");
  std::vector<std::string> check_files, check_with;
  std::string check_kind = "auto", check_config, check_kit_image, check_call_timeout;
  auto* check_cmd = plugins_cmd->add_subcommand("check", "Run the conformance kit on plugin files");
  check_cmd->add_option("files", check_files, "Plugin files (.so)")->required()->check(CLI::ExistingFile);
  check_cmd->add_option("--kind", check_kind,
                        "Which kit: auto (default: every kit the plugin's manifest calls for), generic, store or "
                        "orchestrator (each adds its contract to generic); a kind narrows, and says what it leaves out")
      ->check(CLI::IsMember({"auto", "generic", "store", "orchestrator"}));
  check_cmd->add_option("--kit-image", check_kit_image,
                        "Image the orchestrator kit's workloads run (default: $SYNTHORG_KIT_IMAGE, else synthorg-test/busybox:latest)");
  check_cmd->add_option("--config", check_config, "The plugin's configuration as JSON");
  check_cmd->add_option("--call-timeout", check_call_timeout,
                        "Milliseconds one start() or stop() may take (default 60000, as kernel.start_timeout)");
  check_cmd->add_option("--with", check_with, "Provider plugin files to load first")->check(CLI::ExistingFile);

  auto* config_cmd = app.add_subcommand("config", "Check the configuration and print its schema");
  config_cmd->require_subcommand(1);
  auto* validate_cmd = config_cmd->add_subcommand("validate", "Check company.yaml and every enabled plugin's settings without starting anything");
  std::string schema_plugin;
  auto* schema_cmd = config_cmd->add_subcommand("schema", "Print the JSON Schema of company.yaml (or of one plugin's config)");
  schema_cmd->add_option("--plugin", schema_plugin, "Only this plugin's config");
  auto* docs_cmd = config_cmd->add_subcommand(
      "docs", "Print the configuration reference (Markdown) from the config maps of the kernel and every installed plugin");
  bool guide_table = false;
  docs_cmd->add_flag("--guide-variables", guide_table,
                     "Print only the table of the deployment guides' variables (docs/configuration.md carries it)");

  DoctorRequest doctor;
  auto* doctor_cmd = app.add_subcommand(
      "doctor", "Check configuration, keys, data directory, database, ports and plugin files; exit 3 when unhealthy");
  doctor_cmd->add_flag("--json", doctor.json, "Print JSON");

  ProbeRequest probe_request;
  if (const char* port = std::getenv("SYNTHORG_HTTP_PORT"); port && *port) {
    try {
      probe_request.port = std::stoi(port);
    } catch (const std::exception&) {
      // --port still works; a bad variable is the server's problem to report
    }
  }
  auto* probe_cmd = app.add_subcommand(
      "probe", "GET a health endpoint of a running server; exit 0 on 2xx (container health checks: the image has no curl)");
  probe_cmd->add_option("--host", probe_request.host, "IP address to ask")->capture_default_str();
  probe_cmd->add_option("--port", probe_request.port, "Port (default: $SYNTHORG_HTTP_PORT, else 3001)")
      ->check(CLI::Range(1, 65535))->capture_default_str();
  probe_cmd->add_option("--path", probe_request.path, "Path to GET")->capture_default_str();
  probe_cmd->add_option("--timeout", probe_request.timeout, "Give up after this long")->capture_default_str();

  bool version_json = false;
  auto* version_cmd = app.add_subcommand("version", "Print the version, plugin ABI and toolchain signature");
  version_cmd->add_flag("--json", version_json, "Print JSON");

  auto* keygen_cmd = app.add_subcommand("keygen", "Print a fresh random secret: `keygen fernet` or `keygen jwt`");
  // Extras are collected rather than refused, so a wrong kind gets a message naming the right ones
  // (CLI11 would only say "A subcommand is required").
  keygen_cmd->require_subcommand(0, 1)->allow_extras();
  auto* keygen_fernet_cmd = keygen_cmd->add_subcommand(
      "fernet", "A Fernet key for SYNTHORG_SETTINGS_KEY (32 random bytes, base64url with padding: 44 characters)");
  auto* keygen_jwt_cmd = keygen_cmd->add_subcommand(
      "jwt", "An HS256 signing secret for JWTs (64 random bytes, base64url without padding: 86 characters)");

  BackupRequest backup;
  auto* backup_cmd = app.add_subcommand("backup", "Back up and restore the Store's database");
  backup_cmd->require_subcommand(1);
  auto* backup_create_cmd = backup_cmd->add_subcommand("create", "Take a consistent backup while the server keeps serving");
  backup_create_cmd->add_flag("--json", backup.json, "Print JSON");
  auto* backup_list_cmd = backup_cmd->add_subcommand("list", "List backups in backup.dir, newest first");
  backup_list_cmd->add_flag("--json", backup.json, "Print JSON");
  auto* backup_restore_cmd = backup_cmd->add_subcommand("restore", "Verify a backup, then replace the database with it");
  backup_restore_cmd->add_option("id", backup.id, "The backup's id (12 hex digits, from `backup list`)")->required();
  backup_restore_cmd->add_flag("--confirm", backup.confirm, "Really replace the live database");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }

  try {
    // One-shot commands print their own results; their logs matter only when something fails.
    bool quiet = backup_cmd->parsed() || doctor_cmd->parsed() || docs_cmd->parsed() || probe_cmd->parsed();
    log::configure(quiet ? log::options_from_env(log::Options{log::Level::warn}) : log::options_from_env());
    adopt_secret_files(log::Logger("kernel"));
    adopt_guide_variables(log::Logger("kernel"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "synthorg: %s\n", e.what());
    return exit_usage;
  }

  try {
    if (serve_cmd->parsed()) return serve(config_path, exit_after_start);
    if (list_cmd->parsed()) return plugins_list(config_path, list_json);
    if (check_cmd->parsed()) return plugins_check(check_files, check_kind, check_config, check_with, check_kit_image, check_call_timeout);
    if (validate_cmd->parsed()) return config_validate(config_path);
    if (schema_cmd->parsed()) return config_schema(config_path, schema_plugin);
    if (docs_cmd->parsed() && guide_table) {
      std::cout << guide_variables_markdown();
      return exit_ok;
    }
    if (docs_cmd->parsed()) return config_docs(config_path);
    if (probe_cmd->parsed()) return probe(probe_request);
    if (doctor_cmd->parsed()) {
      doctor.config_path = config_path;
      doctor.plugin_dir = default_plugin_dir();
      return doctor_command(doctor);
    }
    if (version_cmd->parsed()) return version(version_json);
    if (backup_cmd->parsed()) {
      backup.config_path = config_path;
      backup.plugin_dir = default_plugin_dir();
      backup.action = backup_create_cmd->parsed()   ? BackupRequest::Action::create
                      : backup_list_cmd->parsed()   ? BackupRequest::Action::list
                                                    : BackupRequest::Action::restore;
      return backup_command(backup);
    }
    if (keygen_cmd->parsed()) {
      auto extras = keygen_cmd->remaining(true);
      if (extras.empty() && keygen_fernet_cmd->parsed()) return keygen_fernet();
      if (extras.empty() && keygen_jwt_cmd->parsed()) return keygen_jwt();
      std::string what = extras.empty() ? "no kind of secret given" : "unknown argument '" + extras.front() + "'";
      std::fprintf(stderr,
                   "synthorg keygen: %s (fix: `synthorg keygen fernet` for SYNTHORG_SETTINGS_KEY, "
                   "or `synthorg keygen jwt` for an HS256 signing secret)\n",
                   what.c_str());
      return exit_usage;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return exit_error;
  }
  return exit_usage;
}
