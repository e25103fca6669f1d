// One stage of a run, start to end: spawn its one-shot container (or re-attach to the one a
// previous kernel started), read the progress protocol from its log stream, probe its health
// port, enforce the stage timeout and a cancel, and report how it ended. Blocks for as long as
// the stage runs: the run's driver thread calls it (never an I/O thread, never the blocking pool).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>

#include <nlohmann/json.hpp>

#include "options.hpp"
#include "synthorg/log.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::fine_tune {

inline constexpr std::string_view component_label = "synthorg.component";
inline constexpr std::string_view instance_label = "synthorg.instance";
inline constexpr std::string_view run_label = "synthorg.run";
inline constexpr std::string_view stage_label = "synthorg.stage";
inline constexpr std::string_view component = "fine-tune";

// The hardened one-shot spec of a stage (or of the preflight check, run_id empty), the stage's
// JSON configuration in SYNTHORG_FINE_TUNE_STAGE_CONFIG.
WorkloadSpec stage_spec(const Options& options, const std::string& run_id, const std::string& stage, int attempt,
                        const nlohmann::json& stage_config, bool with_gpu);

struct StageRun {
  std::string run_id;
  std::size_t index = 0;  // into stage_names
  int attempt = 1;
  nlohmann::json stage_config;
  std::string attach_container;  // non-empty: a container a previous kernel started
  std::int64_t started_ms = 0;   // wall clock: the timeout counts from here, across restarts
};

enum class StageEnd { complete, failed, cancelled, detached, vanished };

struct StageOutcome {
  StageEnd end = StageEnd::failed;
  std::string reason;  // failed: stage_failed, timeout, image_missing, spawn_failed, orchestrator_unavailable
  std::string error;
  std::optional<int> exit_code;
  std::string container_id;
  std::string checkpoint;
  double progress = 0;
  std::int64_t malformed_lines = 0;
};

// What the runner tells its run as the stage goes: each call may block on the Store.
struct StageHooks {
  std::function<void(const std::string& container_id)> spawned;
  std::function<void(double progress)> progress;  // at most about once a second
  std::function<void(bool healthy, const std::string& detail, bool first_answer)> health;
};

class StageRunner {
 public:
  StageRunner(Orchestrator& orchestrator, const Options& options, ScopedBus& bus, log::Logger log)
      : orchestrator_(orchestrator), options_(options), bus_(bus), log_(std::move(log)) {}

  // `stop`: the plugin is stopping; the stage is left running and reported as detached.
  StageOutcome run(const StageRun& stage, const StageHooks& hooks, std::stop_token stop,
                   const std::atomic<bool>& cancel);

 private:
  Orchestrator& orchestrator_;
  const Options& options_;
  ScopedBus& bus_;
  log::Logger log_;
};

// Runs the image once as the `preflight` stage (and, for the gpu variant, once more asking for
// GPUs); each check is {ok, detail}.
nlohmann::json preflight(Orchestrator& orchestrator, const Options& options);

// The orchestrator's reason for a failed spawn, as a run's reason.
std::string spawn_reason(const std::exception& error);

std::int64_t now_ms();

}  // namespace synthorg::fine_tune
