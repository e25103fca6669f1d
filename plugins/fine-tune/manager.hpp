// Runs: records in the Store, one driver thread per run this process drives, the stage order,
// cancel and resume, and the start-up reconciliation that re-attaches to stages a previous
// kernel left running. Every method blocks (Store and Orchestrator calls): call it from the
// blocking pool or from the plugin's start/stop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "options.hpp"
#include "stage_runner.hpp"
#include "synthorg/log.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/fine_tune.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::fine_tune {

inline constexpr std::string_view collection = "fine_tune_runs";

class Manager final : public FineTune {
 public:
  Manager(Options options, std::shared_ptr<Store> store, std::shared_ptr<Orchestrator> orchestrator, ScopedBus& bus,
          log::Logger log);
  ~Manager() override;

  void ensure_collection();
  // Re-attaches to the stage containers of running runs, marks runs whose container vanished
  // `interrupted` (resumable), and removes labelled containers no run owns. Until it has
  // succeeded (an orchestrator down at start), each API call tries it again first.
  void reconcile();
  void ensure_reconciled();

  // Throws Problem: 409 too_many_active_runs, 409 run_finished / run_active / run_complete.
  Document start_run(const nlohmann::json& config, const std::string& user);
  Document cancel(const std::string& id);
  Document resume(const std::string& id, const std::string& user);
  std::optional<Document> find(const std::string& id);
  Page list(std::size_t limit, const std::string& cursor);
  nlohmann::json preflight();

  // Plugin stop: every driver ends; the stage containers keep running for the next start.
  void detach_all();

  FineTuneCounters counters() const override;
  const Options& options() const noexcept { return options_; }

  static nlohmann::json to_json(const Document& record);

 private:
  struct Driver {
    std::string run_id;
    std::atomic<bool> cancel{false};
    std::mutex mutex;
    std::condition_variable finished;
    bool done = false;
    std::jthread thread;  // last: started once the rest is ready, joined first
  };

  void launch(const std::string& id, std::string attach_container);
  void drive(std::stop_token stop, Driver& driver, std::string attach_container);
  Document update(const std::string& id, const std::function<void(nlohmann::json&)>& change);
  void finish(const std::string& id, const std::string& state, const std::string& reason, const std::string& error);
  void stage_event(const std::string& id, const std::string& stage, const std::string& state,
                   const std::string& detail = {});
  std::int64_t active_in_store();
  void reap_drivers();  // joins drivers that have ended; never from a driver thread
  std::map<std::string, std::string> selector() const;

  Options options_;
  std::shared_ptr<Store> store_;
  std::shared_ptr<Orchestrator> orchestrator_;
  ScopedBus& bus_;
  log::Logger log_;
  StageRunner runner_;
  std::mutex start_mutex_;  // one start, resume or reconcile at a time: the active-run limit holds
  mutable std::mutex drivers_mutex_;
  std::map<std::string, std::shared_ptr<Driver>> drivers_;
  bool closed_ = false;  // detach_all ran: no new drivers (under drivers_mutex_)
  std::atomic<bool> reconciled_{false};
  std::atomic<std::int64_t> started_{0}, finished_{0};
};

}  // namespace synthorg::fine_tune
