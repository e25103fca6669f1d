#include "stage_runner.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "protocol.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/services/fine_tune.hpp"

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How often the driver looks at its stage: the reaction time to a cancel, a timeout or an exit.
constexpr auto poll_slice = 500ms;
// Malformed protocol lines are logged at most this often per stage (with a count of the rest).
constexpr auto malformed_log_period = 10s;
// Progress events go out at most this often per stage; the Store is written at most once a second.
constexpr auto progress_event_period = 100ms;
constexpr auto progress_persist_period = 1s;

std::string human(std::chrono::milliseconds duration) {
  auto ms = duration.count();
  if (ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

// What the log reader learns, read by the stage's thread.
struct Reading {
  std::mutex mutex;
  std::condition_variable ended;
  bool done = false;
  bool saw_complete = false;
  bool progress_dirty = false;
  double progress = 0;
  std::string error;
  std::string checkpoint;
  std::int64_t malformed = 0;
};

void sleep_unless_stopped(const std::stop_token& stop, std::chrono::milliseconds total) {
  for (auto end = Clock::now() + total; Clock::now() < end && !stop.stop_requested();)
    std::this_thread::sleep_for(50ms);
}

}  // namespace

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string spawn_reason(const std::exception& error) {
  auto* failure = dynamic_cast<const OrchestratorError*>(&error);
  if (!failure) return "spawn_failed";
  switch (failure->code()) {
    case OrchestratorErrc::image_missing: return "image_missing";
    case OrchestratorErrc::unavailable: return "orchestrator_unavailable";
    case OrchestratorErrc::capacity: return "capacity";
    case OrchestratorErrc::invalid_spec: return "invalid_spec";
    default: return "spawn_failed";
  }
}

WorkloadSpec stage_spec(const Options& options, const std::string& run_id, const std::string& stage, int attempt,
                        const json& stage_config, bool with_gpu) {
  WorkloadSpec spec;
  // Names are unique per attempt, so a retried stage never collides with a container not yet gone.
  if (!run_id.empty()) spec.name = fmt::format("fine-tune-{}-{}-{}", run_id, stage, attempt);
  spec.image = options.image;
  spec.command = options.command;
  spec.env = options.env;
  spec.env["SYNTHORG_FINE_TUNE_STAGE_CONFIG"] = stage_config.dump();
  spec.env["SYNTHORG_FINE_TUNE_HEALTH_PORT"] = std::to_string(options.health_port);
  spec.labels = {{std::string(component_label), std::string(component)},
                 {std::string(instance_label), options.instance},
                 {std::string(stage_label), stage}};
  if (!run_id.empty()) spec.labels[std::string(run_label)] = run_id;
  spec.memory_bytes = options.memory_bytes;
  spec.cpus = options.cpus;
  spec.pids_limit = options.pids_limit;
  spec.read_only_root = true;
  spec.drop_all_capabilities = true;
  spec.no_new_privileges = true;
  spec.user = options.user;
  spec.tmpfs.push_back({"/tmp", options.tmpfs_options});
  spec.network = options.network;
  if (!options.data_dir.empty()) {
    bool read_only = stage == "preflight" || std::find(options.read_only_stages.begin(), options.read_only_stages.end(),
                                                       stage) != options.read_only_stages.end();
    spec.mounts.push_back({options.data_dir, options.data_target, read_only});
  }
  spec.ports.push_back({options.health_port, "tcp"});
  if (with_gpu) spec.gpu = {options.gpu_count, ""};
  spec.one_shot = true;
  return spec;
}

StageOutcome StageRunner::run(const StageRun& stage, const StageHooks& hooks, std::stop_token stop,
                              const std::atomic<bool>& cancel) {
  const std::string name(stage_names[stage.index]);
  const double stages = static_cast<double>(stage_names.size());
  StageOutcome outcome;
  std::string id = stage.attach_container;
  if (id.empty()) {
    try {
      id = orchestrator_
               .spawn(stage_spec(options_, stage.run_id, name, stage.attempt, stage.stage_config,
                                 options_.variant == "gpu"))
               .id;
    } catch (const std::exception& error) {
      outcome.reason = spawn_reason(error);
      outcome.error = fmt::format("stage {} could not start: {}", name, error.what());
      return outcome;
    }
    hooks.spawned(id);
  }
  outcome.container_id = id;

  auto reading = std::make_shared<Reading>();
  std::jthread reader([&, reading](std::stop_token reader_stop) {
    auto last_event = Clock::now() - progress_event_period;
    auto last_warning = Clock::now() - malformed_log_period;
    std::int64_t unlogged = 0;
    auto sink = [&](LogStream, std::string_view line) {
      auto message = parse_line(line);
      std::lock_guard lock(reading->mutex);
      switch (message.kind) {
        case MessageKind::none:
        case MessageKind::stage_start:
          break;
        case MessageKind::progress:
          reading->progress = message.fraction;
          reading->progress_dirty = true;
          if (Clock::now() - last_event >= progress_event_period || message.fraction >= 1) {
            last_event = Clock::now();
            bus_.publish(events::FineTuneProgress{stage.run_id, name, message.fraction,
                                                  (static_cast<double>(stage.index) + message.fraction) / stages});
          }
          break;
        case MessageKind::error:
          reading->error = message.text;
          log_.warn("Stage reported an error", {{"run_id", stage.run_id}, {"stage", name}, {"error", message.text}});
          break;
        case MessageKind::stage_complete:
          if (message.text == name) reading->saw_complete = true;
          break;
        case MessageKind::checkpoint:
          reading->checkpoint = message.text;
          break;
        case MessageKind::malformed:
          ++reading->malformed;
          ++unlogged;
          if (Clock::now() - last_warning >= malformed_log_period) {
            last_warning = Clock::now();
            log_.warn("Malformed progress line ignored",
                      {{"run_id", stage.run_id}, {"stage", name}, {"problem", message.problem},
                       {"line", truncate_utf8(line, 200)}, {"bytes", line.size()}, {"since_last_warning", unlogged}});
            unlogged = 0;
          }
          break;
      }
      return !reader_stop.stop_requested();
    };
    try {
      LogOptions options;
      options.tail = stage.attach_container.empty() ? 0 : 10'000;
      options.follow = true;
      options.stop = reader_stop;
      orchestrator_.logs(id, options, sink);
    } catch (const std::exception& error) {
      log_.warn("Could not read the stage's log; its progress is unknown until it ends",
                {{"run_id", stage.run_id}, {"stage", name}, {"error", error.what()}});
    }
    std::lock_guard lock(reading->mutex);
    reading->done = true;
    reading->ended.notify_all();
  });

  auto stop_container = [&](const char* why) {
    try {
      orchestrator_.stop(id, options_.stop_grace);
    } catch (const std::exception& error) {
      log_.warn("Could not stop a stage container", {{"run_id", stage.run_id}, {"stage", name}, {"why", why},
                                                     {"error", error.what()}});
    }
  };

  const std::int64_t deadline = stage.started_ms + options_.stage_timeout.count();
  bool timed_out = false, cancelled = false, reported_unhealthy = false, answered = false;
  std::int64_t health_failures = 0;
  auto next_probe = Clock::now() + options_.health_interval;
  auto last_persist = Clock::now();
  std::unique_ptr<http::HttpClient> probe;
  WaitResult waited;
  for (;;) {
    if (stop.stop_requested()) {
      outcome.end = StageEnd::detached;
      return outcome;  // the reader is stopped and joined on the way out
    }
    try {
      waited = orchestrator_.wait(id, poll_slice);
      if (waited.exited) break;
    } catch (const OrchestratorError& error) {
      if (error.code() == OrchestratorErrc::not_found) {
        outcome.end = StageEnd::vanished;
        outcome.reason = "vanished";
        outcome.error = fmt::format("the container of stage {} is gone: {}", name, error.what());
        return outcome;
      }
      log_.warn("Could not wait for a stage; retrying", {{"run_id", stage.run_id}, {"stage", name},
                                                         {"error", error.what()}});
      sleep_unless_stopped(stop, 1s);
      continue;
    }
    if (cancel && !cancelled) {
      cancelled = true;
      log_.info("Cancelling a stage", {{"run_id", stage.run_id}, {"stage", name}, {"container_id", id}});
      stop_container("cancel");
      continue;
    }
    if (!timed_out && !cancelled && now_ms() >= deadline) {
      timed_out = true;
      log_.warn("Stage timed out; stopping it", {{"run_id", stage.run_id}, {"stage", name},
                                                 {"timeout", human(options_.stage_timeout)}});
      stop_container("timeout");
      continue;
    }
    if (Clock::now() - last_persist >= progress_persist_period) {
      std::optional<double> progress;
      {
        std::lock_guard lock(reading->mutex);
        if (reading->progress_dirty) progress = reading->progress;
        reading->progress_dirty = false;
      }
      last_persist = Clock::now();
      if (progress) hooks.progress(*progress);
    }
    if (Clock::now() >= next_probe) {
      next_probe = Clock::now() + options_.health_interval;
      bool healthy = false;
      std::string detail;
      try {
        if (!probe) {
          auto where = orchestrator_.endpoint(id, options_.health_port);
          auto host = where.host.find(':') == std::string::npos ? where.host : "[" + where.host + "]";
          http::ClientOptions client;
          client.base_url = fmt::format("http://{}:{}", host, where.port);
          client.connect_timeout = 2s;
          client.max_response_bytes = 64 * 1024;
          probe = std::make_unique<http::HttpClient>(client);
        }
        auto answer = probe->send({.method = "GET", .target = "/healthz", .timeout = 2s});
        auto body = json::parse(answer.body, nullptr, false);
        healthy = answer.status == 200 && body.is_object() && body.value("status", "") == "healthy";
        if (!healthy) detail = fmt::format("GET /healthz answered {}: {}", answer.status, truncate_utf8(answer.body, 200));
      } catch (const std::exception& error) {
        probe.reset();  // the endpoint may have moved (a restarted engine): look it up again
        detail = fmt::format("GET /healthz failed: {}", error.what());
      }
      if (healthy) {
        health_failures = 0;
        if (reported_unhealthy || !answered) {
          if (reported_unhealthy) log_.info("Stage answers its health port again", {{"run_id", stage.run_id}, {"stage", name}});
          hooks.health(true, reported_unhealthy ? "answering again" : "answering", !answered && !reported_unhealthy);
          reported_unhealthy = false;
          answered = true;
        }
      } else if (++health_failures >= options_.health_failures && !reported_unhealthy) {
        reported_unhealthy = true;
        log_.warn("Stage is not answering its health port",
                  {{"run_id", stage.run_id}, {"stage", name}, {"failures", health_failures}, {"detail", detail}});
        hooks.health(false, detail, false);
      }
    }
  }

  // The stream ends with the container; give the last lines a moment to arrive, then stop it.
  {
    std::unique_lock lock(reading->mutex);
    reading->ended.wait_for(lock, 5s, [&] { return reading->done; });
  }
  reader.request_stop();
  reader.join();
  outcome.exit_code = waited.exit_code;
  bool saw_complete = false;
  {
    std::lock_guard lock(reading->mutex);
    outcome.error = reading->error;
    outcome.checkpoint = reading->checkpoint;
    outcome.progress = reading->progress;
    outcome.malformed_lines = reading->malformed;
    saw_complete = reading->saw_complete;
  }
  try {
    orchestrator_.remove(id);
  } catch (const std::exception& error) {
    log_.warn("Could not remove a finished stage container; the next start removes it",
              {{"run_id", stage.run_id}, {"stage", name}, {"container_id", id}, {"error", error.what()}});
  }
  int code = waited.exit_code.value_or(-1);
  if (cancelled) {
    outcome.end = StageEnd::cancelled;
    outcome.reason = "user";
  } else if (timed_out) {
    outcome.reason = "timeout";
    outcome.error = fmt::format("stage {} ran longer than its timeout of {} and was stopped", name,
                                human(options_.stage_timeout));
  } else if (code == 0 && outcome.error.empty()) {
    outcome.end = StageEnd::complete;
    if (!saw_complete)
      log_.warn("Stage exited 0 without STAGE_COMPLETE; taken as complete", {{"run_id", stage.run_id}, {"stage", name}});
  } else {
    outcome.reason = "stage_failed";
    if (outcome.error.empty())
      outcome.error = fmt::format("stage {} exited with code {} without an ERROR: line", name, code);
  }
  return outcome;
}

json preflight(Orchestrator& orchestrator, const Options& options) {
  json checks = json::object();
  auto health = orchestrator.health();
  checks["orchestrator"] = {{"ok", health.up}, {"detail", health.detail}, {"backend", orchestrator.backend()}};
  auto attempt = [&](bool gpu) -> json {
    if (!health.up) return {{"ok", false}, {"detail", "not checked: the orchestrator cannot be reached"}};
    std::string id;
    try {
      json config = {{"run_id", ""}, {"stage", "preflight"}, {"health_port", options.health_port},
                     {"data_dir", options.data_dir.empty() ? "" : options.data_target}, {"gpu", gpu}};
      id = orchestrator.spawn(stage_spec(options, "", "preflight", 1, config, gpu)).id;
      auto waited = orchestrator.wait(id, options.preflight_timeout);
      std::string error;
      if (waited.exited && waited.exit_code.value_or(-1) != 0) {
        LogOptions tail;
        tail.tail = 50;
        orchestrator.logs(id, tail, [&](LogStream, std::string_view line) {
          auto message = parse_line(line);
          if (message.kind == MessageKind::error) error = message.text;
          return true;
        });
      }
      orchestrator.remove(id);
      if (!waited.exited)
        return {{"ok", false},
                {"detail", fmt::format("the image did not finish its preflight stage within {}",
                                       human(options.preflight_timeout))}};
      if (waited.exit_code.value_or(-1) != 0)
        return {{"ok", false},
                {"detail", fmt::format("the preflight stage exited with code {}{}", waited.exit_code.value_or(-1),
                                       error.empty() ? "" : ": " + error)}};
      return {{"ok", true}, {"detail", gpu ? "the image runs with GPUs" : "the image runs"}};
    } catch (const std::exception& failure) {
      if (!id.empty()) {
        try {
          orchestrator.remove(id);
        } catch (const std::exception&) {
        }
      }
      return {{"ok", false}, {"reason", spawn_reason(failure)}, {"detail", failure.what()}};
    }
  };
  checks["image"] = attempt(false);
  checks["image"]["image"] = options.image;
  if (options.variant == "gpu") {
    checks["gpu"] = checks["image"]["ok"].get<bool>() ? attempt(true)
                                                      : json{{"ok", false}, {"detail", "not checked: the image does not run"}};
  } else {
    checks["gpu"] = {{"ok", true}, {"skipped", true}, {"detail", "not needed: the cpu variant runs without GPUs"}};
  }
  bool ok = true;
  for (const auto& [name, check] : checks.items()) ok = ok && check.value("ok", false);
  return {{"ok", ok}, {"variant", options.variant}, {"image", options.image}, {"checks", checks}};
}

}  // namespace synthorg::fine_tune
