// orchestrator-process: the reference Orchestrator. It runs each workload as a child process on
// this host, which makes it the backend a third party can read end to end: no daemon, no API
// server, only the contract in synthorg/services/orchestrator.hpp and what a process can honour.
//
//   plugin.cpp                 descriptor, configuration, wiring (this file)
//   process_orchestrator.cpp   the contract: spawn, inspect, list, stop, remove, wait, logs...
//   launcher.cpp               the command line: setsid, prlimit, setpriv, env, then the command
//   log_buffer.hpp             bounded per-workload output, as lines
//   workload_records.cpp       a file per running workload, so a restart stops what a crash left
//
// What a process cannot be given (a read-only root, tmpfs, mounts, a network, GPUs, a CPU quota)
// is accepted and reported in health().info["not_isolated"]: specs are written for every
// backend. The image is only recorded: the command runs on the host, so give one.
#include <filesystem>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "process_orchestrator.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::orchestrator_process {
namespace {

// The directory above the one holding the running binary: /usr for /usr/bin/synthorg, the build
// tree for build/default/bin/synthorg.
std::filesystem::path installation_prefix() {
  std::error_code error;
  auto binary = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::current_path() : binary.parent_path().parent_path();
}

class ProcessOrchestratorPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "orchestrator-process",
            .version = "1.0.0",
            .description = "Orchestrator that runs each workload as a local child process (the reference backend)",
            .provides = {std::string(Orchestrator::service_id), std::string(HealthCheck::service_id)},
            .needs = {{"synthorg.Executor/1", true}},
            .config = ConfigMap{}
                          .integer("max_workloads", 64,
                                   "Workloads held at once, running or exited and not yet removed; more is a "
                                   "capacity error")
                          .range(1, 4096)
                          .integer("log_buffer_bytes", 1 << 20,
                                   "Output kept per workload for logs(); the oldest lines go first")
                          .range(4096, 256 << 20)
                          .string("state_dir", "./data/process-workloads",
                                  "Where a record of each running workload is kept (mode 0700), so that after "
                                  "the kernel is killed without a stop (kill -9, OOM) the next start finds the "
                                  "workload processes it left running and stops them. Empty: no records")
                          .string_map("images",
                                      "The command line run in an image's place when a spec gives no command (a "
                                      "process has no image), split on spaces; a relative path with a '/' is taken "
                                      "from the installation prefix (the directory above the synthorg binary's)")};
  }

  explicit ProcessOrchestratorPlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    limits_.max_workloads = config.at("max_workloads").get<std::size_t>();
    limits_.log_buffer_bytes = config.at("log_buffer_bytes").get<std::size_t>();
    limits_.state_dir = config.at("state_dir").get<std::string>();
    limits_.images.clear();
    for (const auto& [image, line] : config.at("images").items()) {
      std::vector<std::string> command;
      std::istringstream words(line.get<std::string>());
      for (std::string word; words >> word;) {
        if (word.find('/') != std::string::npos && word.front() != '/') word = (installation_prefix() / word).string();
        command.push_back(word);
      }
      if (command.empty()) throw std::invalid_argument("images: the command for '" + image + "' is empty");
      limits_.images[image] = std::move(command);
    }
  }

  void start() override {
    auto tools = find_host_tools();
    // Not fatal: a kernel that cannot run local processes (the scratch image has no tools) still
    // serves everything else; health() says why and spawn() refuses with the same reason.
    if (tools.setsid.empty() || tools.env.empty())
      context_.log().warn("setsid (util-linux) or env (coreutils) is missing from /usr/bin: workloads cannot be "
                          "started; mount the Docker socket or select another orchestrator");
    else if (tools.setpriv.empty() || tools.prlimit.empty())
      context_.log().warn("util-linux's setpriv or prlimit is missing: workloads run without hardening or limits");
    else if (!tools.root)
      context_.log().warn("Not running as root: workloads keep this user and its capability bounding set");
    auto orchestrator = std::make_shared<ProcessOrchestrator>(limits_, std::move(tools), context_.executor().io_context(),
                                                              context_.log());
    orchestrator->stop_orphans();  // before anyone can ask: list() then shows none of them
    // Held in locals until both succeed: a start that fails half-way leaves nothing registered.
    auto provided = context_.registry().provide<Orchestrator>(orchestrator, {0, {{"backend", "process"}}});
    // "orchestrator.process", not critical: the fallback backend; when it cannot run, the rest
    // of the kernel is still ready. (shutdown() in stop() makes a held lease answer unavailable.)
    auto health = context_.registry().provide<HealthCheck>(orchestrator::health_check(orchestrator, false));
    orchestrator_registration_ = std::move(provided);
    health_registration_ = std::move(health);
    orchestrator_ = std::move(orchestrator);
  }

  void stop() override {
    // No new callers; a lease still in flight gets `unavailable` from the stopped backend.
    health_registration_.reset();
    orchestrator_registration_.reset();
    if (orchestrator_) orchestrator_->shutdown();
    orchestrator_.reset();
  }

 private:
  PluginContext& context_;
  Limits limits_;
  std::shared_ptr<ProcessOrchestrator> orchestrator_;
  Registration orchestrator_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::orchestrator_process

SYNTHORG_PLUGIN(synthorg::orchestrator_process::ProcessOrchestratorPlugin)
