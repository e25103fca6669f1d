#include "manager.hpp"

#include <set>

#include <fmt/format.h>

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;

bool finished_state(const std::string& state) {
  return state == "complete" || state == "failed" || state == "cancelled";
}

// The first stage not complete: where a run goes on (stage_names.size() when all are).
std::size_t next_stage(const json& data) {
  const auto& stages = data.at("stages");
  for (std::size_t i = 0; i < stages.size(); ++i)
    if (stages[i].value("state", "") != "complete") return i;
  return stages.size();
}

json fresh_stages() {
  json stages = json::array();
  for (auto name : stage_names)
    stages.push_back({{"name", name}, {"state", "pending"}, {"attempts", 0}, {"progress", 0.0}, {"container_id", ""},
                      {"started_at", nullptr}, {"finished_at", nullptr}, {"duration_ms", nullptr},
                      {"exit_code", nullptr}, {"error", ""}, {"malformed_lines", 0}, {"health", "unknown"}});
  return stages;
}

double overall(std::size_t index, double progress) {
  return (static_cast<double>(index) + progress) / static_cast<double>(stage_names.size());
}

}  // namespace

Manager::Manager(Options options, std::shared_ptr<Store> store, std::shared_ptr<Orchestrator> orchestrator,
                 ScopedBus& bus, log::Logger log)
    : options_(std::move(options)), store_(std::move(store)), orchestrator_(std::move(orchestrator)), bus_(bus),
      log_(log), runner_(*orchestrator_, options_, bus_, log) {}

Manager::~Manager() { detach_all(); }

void Manager::ensure_collection() {
  store_->ensure_collection({std::string(collection), {{"state", false}}, {{1, "fine-tune runs", [](StoreOps&) {}}}});
}

std::map<std::string, std::string> Manager::selector() const {
  return {{std::string(component_label), std::string(component)}, {std::string(instance_label), options_.instance}};
}

json Manager::to_json(const Document& record) {
  json out = record.data;
  out.erase("instance");
  for (auto& stage : out["stages"]) stage.erase("started_ms");
  out["id"] = record.id;
  out["created_at"] = record.created_at;
  out["updated_at"] = record.updated_at;
  auto self = "/api/v1/fine-tune/runs/" + record.id;
  out["urls"] = {{"self", self}, {"cancel", self + "/cancel"}, {"resume", self + "/resume"}};
  return out;
}

Document Manager::update(const std::string& id, const std::function<void(json&)>& change) {
  for (int attempt = 0;; ++attempt) {
    auto current = store_->get(collection, id);
    if (!current) throw Problem(404, "not_found", "no such fine-tune run");
    json data = current->data;
    change(data);
    try {
      return store_->update(collection, id, data, current->version);
    } catch (const StoreError& error) {
      // The driver and an API call may write one run at once: read again and reapply.
      if (error.code() != StoreErrc::conflict || attempt >= 8) throw;
    }
  }
}

void Manager::stage_event(const std::string& id, const std::string& stage, const std::string& state,
                          const std::string& detail) {
  bus_.publish(events::FineTuneStage{id, stage, state, detail});
}

void Manager::finish(const std::string& id, const std::string& state, const std::string& reason,
                     const std::string& error) {
  update(id, [&](json& data) {
    data["state"] = state;
    data["reason"] = reason;
    if (!error.empty()) data["last_error"] = error;
    if (state == "complete") data["progress"] = 1.0;
    data["finished_at"] = store::now_timestamp();
  });
  ++finished_;
  log_.info("Run finished", {{"run_id", id}, {"state", state}, {"reason", reason}, {"error", error}});
  bus_.publish(events::FineTuneFinished{id, state, reason, error});
}

std::int64_t Manager::active_in_store() {
  std::int64_t active = 0;
  Query query;
  query.where = {{"state", "running"}};
  query.limit = 1000;
  for (;;) {
    auto page = store_->query(collection, query);
    for (const auto& record : page.documents) active += record.data.value("instance", "") == options_.instance;
    if (page.next_cursor.empty()) return active;
    query.cursor = page.next_cursor;
  }
}

void Manager::reap_drivers() {
  std::vector<std::shared_ptr<Driver>> ended;
  {
    std::lock_guard guard(drivers_mutex_);
    for (auto it = drivers_.begin(); it != drivers_.end();) {
      bool done;
      {
        std::lock_guard lock(it->second->mutex);
        done = it->second->done;
      }
      if (done) {
        ended.push_back(std::move(it->second));
        it = drivers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroyed here, outside the lock: each join returns at once, the thread having ended.
}

void Manager::launch(const std::string& id, std::string attach_container) {
  auto driver = std::make_shared<Driver>();
  driver->run_id = id;
  std::lock_guard guard(drivers_mutex_);
  // A request still in flight when the plugin stopped: the run stays recorded as running, and the
  // next start re-attaches to it or marks it interrupted.
  if (closed_) return;
  drivers_[id] = driver;
  // A thread per driven run, on purpose: a stage blocks for hours on its log stream and its exit,
  // which would hold one of the blocking pool's few threads for as long.
  driver->thread = std::jthread([this, raw = driver.get(), attach = std::move(attach_container)](
                                    std::stop_token stop) { drive(stop, *raw, attach); });
}

void Manager::drive(std::stop_token stop, Driver& driver, std::string attach) {
  const auto& id = driver.run_id;
  try {
    while (!stop.stop_requested()) {
      auto record = store_->get(collection, id);
      if (!record || record->data.value("state", "") != "running") break;
      auto index = next_stage(record->data);
      if (index >= stage_names.size()) {
        finish(id, "complete", "", "");
        break;
      }
      const std::string name(stage_names[index]);
      auto stage = record->data["stages"][index];
      StageRun run{id, index, stage.value("attempts", 0), json::object(), attach, stage.value("started_ms", std::int64_t{0})};
      if (attach.empty()) {
        run.attempt += 1;
        run.started_ms = now_ms();
        update(id, [&](json& data) {
          auto& entry = data["stages"][index];
          entry.update({{"state", "running"}, {"attempts", run.attempt}, {"started_at", store::now_timestamp()},
                        {"started_ms", run.started_ms}, {"finished_at", nullptr}, {"duration_ms", nullptr},
                        {"exit_code", nullptr}, {"container_id", ""}, {"progress", 0.0}, {"error", ""},
                        {"health", "unknown"}});
          data["stage"] = name;
          data["progress"] = overall(index, 0);
        });
        stage_event(id, name, "started");
        log_.info("Stage started", {{"run_id", id}, {"stage", name}, {"attempt", run.attempt}});
      } else {
        log_.info("Run re-attached", {{"run_id", id}, {"stage", name}, {"container_id", attach}});
      }
      run.stage_config = {{"run_id", id},
                           {"stage", name},
                           {"stage_index", index},
                           {"stages", stage_names},
                           {"attempt", run.attempt},
                           {"data_dir", options_.data_dir.empty() ? "" : options_.data_target},
                           {"read_only", std::find(options_.read_only_stages.begin(), options_.read_only_stages.end(),
                                                   name) != options_.read_only_stages.end()},
                           {"checkpoint", record->data.value("checkpoint", "")},
                           {"health_port", options_.health_port},
                           {"config", record->data.value("config", json::object())}};
      attach.clear();

      StageHooks hooks;
      hooks.spawned = [&](const std::string& container_id) {
        update(id, [&](json& data) { data["stages"][index]["container_id"] = container_id; });
      };
      hooks.progress = [&](double progress) {
        update(id, [&](json& data) {
          data["stages"][index]["progress"] = progress;
          data["progress"] = overall(index, progress);
        });
      };
      hooks.health = [&](bool healthy, const std::string& detail, bool first_answer) {
        update(id, [&](json& data) { data["stages"][index]["health"] = healthy ? "healthy" : "unresponsive"; });
        // The first answer is only recorded; a change after it is news.
        if (!first_answer) stage_event(id, name, healthy ? "healthy" : "unhealthy", detail);
      };
      auto outcome = runner_.run(run, hooks, stop, driver.cancel);
      if (outcome.end == StageEnd::detached) {
        log_.info("Run detached; its stage keeps running for the next start", {{"run_id", id}, {"stage", name}});
        break;
      }
      static const std::map<StageEnd, std::string> stage_state = {{StageEnd::complete, "complete"},
                                                                  {StageEnd::failed, "failed"},
                                                                  {StageEnd::cancelled, "cancelled"},
                                                                  {StageEnd::vanished, "interrupted"}};
      const auto& state = stage_state.at(outcome.end);
      update(id, [&](json& data) {
        auto& entry = data["stages"][index];
        auto finished = now_ms();
        entry.update({{"state", state}, {"finished_at", store::now_timestamp()},
                      {"duration_ms", finished - entry.value("started_ms", finished)},
                      {"exit_code", outcome.exit_code ? json(*outcome.exit_code) : json(nullptr)},
                      {"error", outcome.error}, {"malformed_lines", outcome.malformed_lines}});
        if (outcome.end == StageEnd::complete) {
          entry["progress"] = 1.0;
          data["progress"] = overall(index, 1);
          if (!outcome.checkpoint.empty()) data["checkpoint"] = outcome.checkpoint;
        }
        if (outcome.end == StageEnd::vanished) {
          data["state"] = "interrupted";
          data["reason"] = "vanished";
          data["last_error"] = outcome.error;
        }
      });
      stage_event(id, name, state, outcome.error);
      if (outcome.end == StageEnd::complete) {
        log_.info("Stage complete", {{"run_id", id}, {"stage", name}});
        continue;
      }
      if (outcome.end == StageEnd::failed) finish(id, "failed", outcome.reason, outcome.error);
      if (outcome.end == StageEnd::cancelled) finish(id, "cancelled", "user", "");
      break;
    }
  } catch (const std::exception& error) {
    log_.error("Run driver failed; the run stays as recorded and the next start re-attaches or marks it",
               {{"run_id", id}, {"error", error.what()}});
  }
  std::lock_guard lock(driver.mutex);
  driver.done = true;
  driver.finished.notify_all();
}

Document Manager::start_run(const json& config, const std::string& user) {
  ensure_reconciled();
  std::lock_guard guard(start_mutex_);
  reap_drivers();
  if (auto active = active_in_store(); active >= options_.max_active_runs)
    throw Problem(409, "too_many_active_runs",
                  fmt::format("{} run(s) already active, the limit (max_active_runs) is {}; cancel one or wait for it "
                              "to finish",
                              active, options_.max_active_runs),
                  {{"max_active_runs", options_.max_active_runs}});
  auto record = store_->insert(collection, {{"state", "running"},
                                            {"instance", options_.instance},
                                            {"created_by", user},
                                            {"stage", stage_names.front()},
                                            {"stages", fresh_stages()},
                                            {"progress", 0.0},
                                            {"config", config},
                                            {"image", options_.image},
                                            {"variant", options_.variant},
                                            {"reason", ""},
                                            {"last_error", ""},
                                            {"checkpoint", ""},
                                            {"resumes", 0},
                                            {"started_at", store::now_timestamp()},
                                            {"finished_at", nullptr}});
  ++started_;
  log_.info("Run started", {{"run_id", record.id}, {"user_id", user}, {"image", options_.image}});
  launch(record.id, "");
  return record;
}

Document Manager::cancel(const std::string& id) {
  ensure_reconciled();
  auto record = find(id);
  if (!record) throw Problem(404, "not_found", "no such fine-tune run");
  auto state = record->data.value("state", "");
  if (finished_state(state))
    throw Problem(409, "run_finished",
                  fmt::format("run {} is {} already; only a running or interrupted run can be cancelled", id, state),
                  {{"state", state}});
  std::shared_ptr<Driver> driver;
  {
    std::lock_guard guard(drivers_mutex_);
    if (auto it = drivers_.find(id); it != drivers_.end()) driver = it->second;
  }
  if (driver) {
    std::lock_guard lock(driver->mutex);
    if (driver->done) driver.reset();  // it ended without finishing the run (a Store failure, say)
  }
  if (driver) {
    // The driver stops the stage (SIGTERM, then SIGKILL after stop_grace), removes it and records
    // the end.
    driver->cancel = true;
    std::unique_lock lock(driver->mutex);
    driver->finished.wait_for(lock, options_.stop_grace + std::chrono::seconds(60), [&] { return driver->done; });
  } else {
    // Nothing drives it here (interrupted, or running in a kernel that could not reconcile yet).
    for (const auto& container : orchestrator_->list({{std::string(run_label), id}})) orchestrator_->remove(container.id);
    update(id, [&](json& data) {
      auto index = next_stage(data);
      if (index < data["stages"].size()) data["stages"][index]["state"] = "cancelled";
    });
    finish(id, "cancelled", "user", "");
  }
  return *find(id);
}

Document Manager::resume(const std::string& id, const std::string& user) {
  ensure_reconciled();
  std::lock_guard guard(start_mutex_);
  reap_drivers();
  auto record = find(id);
  if (!record) throw Problem(404, "not_found", "no such fine-tune run");
  auto state = record->data.value("state", "");
  if (state == "complete")
    throw Problem(409, "run_complete", fmt::format("run {} is complete; there is nothing to resume", id),
                  {{"state", state}});
  if (state == "running")
    throw Problem(409, "run_active", fmt::format("run {} is running; cancel it first to resume it later", id),
                  {{"state", state}});
  if (auto active = active_in_store(); active >= options_.max_active_runs)
    throw Problem(409, "too_many_active_runs",
                  fmt::format("{} run(s) already active, the limit (max_active_runs) is {}", active,
                              options_.max_active_runs),
                  {{"max_active_runs", options_.max_active_runs}});
  // Whatever a previous attempt left must not be taken for the new one.
  for (const auto& container : orchestrator_->list({{std::string(run_label), id}})) orchestrator_->remove(container.id);
  std::string from;
  auto resumed = update(id, [&](json& data) {
    for (auto& stage : data["stages"])
      if (stage.value("state", "") != "complete") stage["state"] = "pending";
    auto index = next_stage(data);
    from = index < stage_names.size() ? std::string(stage_names[index]) : "";
    data["state"] = "running";
    data["reason"] = "";
    data["last_error"] = "";
    data["finished_at"] = nullptr;
    data["resumes"] = data.value("resumes", 0) + 1;
    data["resumed_by"] = user;
  });
  ++started_;
  log_.info("Run resumed", {{"run_id", id}, {"user_id", user}, {"from_stage", from}});
  launch(id, "");
  return resumed;
}

std::optional<Document> Manager::find(const std::string& id) {
  if (!store::valid_document_id(id)) return std::nullopt;
  return store_->get(collection, id);
}

Page Manager::list(std::size_t limit, const std::string& cursor) {
  Query query;
  query.order_by = "created_at";
  query.descending = true;
  query.limit = limit;
  query.cursor = cursor;
  return store_->query(collection, query);
}

json Manager::preflight() { return fine_tune::preflight(*orchestrator_, options_); }

void Manager::ensure_reconciled() {
  if (reconciled_) return;
  try {
    reconcile();
  } catch (const OrchestratorError& error) {
    throw Problem(503, "orchestrator_unavailable",
                  std::string("the orchestrator cannot be reached, so running stages cannot be checked: ") +
                      error.what());
  }
}

void Manager::reconcile() {
  std::lock_guard guard(start_mutex_);
  if (reconciled_) return;
  auto containers = orchestrator_->list(selector());
  std::set<std::string> driven;
  {
    std::lock_guard drivers(drivers_mutex_);
    for (const auto& [id, driver] : drivers_) driven.insert(id);
  }
  std::set<std::string> kept;
  std::size_t reattached = 0, interrupted = 0, removed = 0;
  Query query;
  query.where = {{"state", "running"}};
  query.limit = 1000;
  std::vector<Document> running;
  for (;;) {
    auto page = store_->query(collection, query);
    for (auto& record : page.documents)
      if (record.data.value("instance", "") == options_.instance && !driven.contains(record.id))
        running.push_back(std::move(record));
    if (page.next_cursor.empty()) break;
    query.cursor = page.next_cursor;
  }
  for (const auto& record : running) {
    auto index = next_stage(record.data);
    std::string stage = index < stage_names.size() ? std::string(stage_names[index]) : "";
    auto recorded = index < stage_names.size() ? record.data["stages"][index].value("container_id", "") : "";
    const WorkloadStatus* found = nullptr;
    for (const auto& container : containers) {
      auto run = container.labels.find(std::string(run_label));
      auto on = container.labels.find(std::string(stage_label));
      if (run == container.labels.end() || run->second != record.id || on == container.labels.end() ||
          on->second != stage)
        continue;
      if (!found || container.id == recorded) found = &container;
    }
    if (index >= stage_names.size() || found) {
      // All stages done (the kernel stopped before recording it), or a stage to re-attach to.
      if (found) kept.insert(found->id);
      launch(record.id, found ? found->id : "");
      ++reattached;
      continue;
    }
    auto error = fmt::format("the container of stage {} vanished while the kernel was down; resume the run to start "
                             "that stage again",
                             stage);
    update(record.id, [&](json& data) {
      data["stages"][index]["state"] = "interrupted";
      data["state"] = "interrupted";
      data["reason"] = "vanished";
      data["last_error"] = error;
    });
    stage_event(record.id, stage, "interrupted", error);
    log_.warn("Run interrupted: its stage container vanished", {{"run_id", record.id}, {"stage", stage}});
    ++interrupted;
  }
  for (const auto& container : containers) {
    auto run = container.labels.find(std::string(run_label));
    if (kept.contains(container.id) || (run != container.labels.end() && driven.contains(run->second))) continue;
    try {
      orchestrator_->remove(container.id);
      ++removed;
      log_.warn("Orphaned stage container removed", {{"container_id", container.id}});
    } catch (const std::exception& error) {
      log_.warn("Could not remove an orphaned stage container", {{"container_id", container.id},
                                                                 {"error", error.what()}});
    }
  }
  reconciled_ = true;
  log_.info("fine-tune reconciled", {{"reattached", reattached}, {"interrupted", interrupted},
                                     {"orphans_removed", removed}});
}

void Manager::detach_all() {
  std::map<std::string, std::shared_ptr<Driver>> all;
  {
    std::lock_guard guard(drivers_mutex_);
    closed_ = true;
    all.swap(drivers_);
  }
  for (auto& [id, driver] : all) driver->thread.request_stop();
  // Each returns within a poll slice (or an orchestrator call); a cancel waiting on one may hold
  // the last reference, so join here rather than in the destructor.
  for (auto& [id, driver] : all)
    if (driver->thread.joinable()) driver->thread.join();
}

FineTuneCounters Manager::counters() const {
  std::int64_t active = 0;
  {
    std::lock_guard guard(drivers_mutex_);
    for (const auto& [id, driver] : drivers_) {
      std::lock_guard lock(driver->mutex);
      active += !driver->done;
    }
  }
  return {active, started_.load(), finished_.load()};
}

}  // namespace synthorg::fine_tune
