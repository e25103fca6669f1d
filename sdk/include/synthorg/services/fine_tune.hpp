// FineTune: resumable multi-stage fine-tuning runs, each stage a one-shot container, provided by
// the fine-tune plugin. http-api reports it in /api/v1/capabilities; the dashboard reads the
// counters and follows the events below (channel `fine_tune` on the WebSocket).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace synthorg {

struct FineTuneCounters {
  std::int64_t active = 0;          // runs with a stage running now, in this process
  std::int64_t total_started = 0;   // runs started or resumed since this process started
  std::int64_t total_finished = 0;  // complete, failed or cancelled since start
};

class FineTune {
 public:
  static constexpr std::string_view service_id = "synthorg.FineTune/1";
  virtual ~FineTune() = default;

  // Cheap (atomics); any thread.
  virtual FineTuneCounters counters() const = 0;
};

namespace events {

// A stage reported `PROGRESS:<fraction>`; `overall` spreads the stages evenly over 0..1.
struct FineTuneProgress {
  static constexpr std::string_view topic = "fine_tune.progress";
  std::string run_id;
  std::string stage;
  double progress = 0;
  double overall = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(FineTuneProgress, run_id, stage, progress, overall)

// A stage changed state: started, complete, failed, cancelled, or its health port stopped (or
// came back to) answering: unhealthy, healthy.
struct FineTuneStage {
  static constexpr std::string_view topic = "fine_tune.stage";
  std::string run_id;
  std::string stage;
  std::string state;
  std::string detail;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(FineTuneStage, run_id, stage, state, detail)

// A run ended: complete, failed or cancelled, with the reason and the last error.
struct FineTuneFinished {
  static constexpr std::string_view topic = "fine_tune.finished";
  std::string run_id;
  std::string state;
  std::string reason;
  std::string error;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(FineTuneFinished, run_id, state, reason, error)

}  // namespace events
}  // namespace synthorg
