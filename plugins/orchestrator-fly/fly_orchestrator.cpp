#include "fly_orchestrator.hpp"

#include <algorithm>
#include <thread>

namespace synthorg::orchestrator_fly {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// flaps (behind its proxy) holds a wait for at most 60 s; fly-go clamps to the same.
constexpr auto wait_limit = 60s;
// States a workload that has stopped running is in; waits ask for all of them, repeating
// `state` as fly-go's WithWaitStates does (the contract: "supports repeated ... values").
constexpr std::string_view ended_states = "state=stopped&state=failed&state=destroyed";
constexpr std::string_view running_or_ended_states = "state=started&state=stopped&state=failed";

bool valid_machine_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  });
}

std::string fly_state(const nlohmann::json& machine) { return machine.value("state", std::string()); }

bool ended(const std::string& state) {
  return state == "stopped" || state == "failed" || state == "destroyed" || state == "suspended";
}

std::string seconds_text(std::chrono::milliseconds duration) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(duration).count()) + " s";
}

}  // namespace

FlyOrchestrator::FlyOrchestrator(FlyOptions options, const log::Logger& log)
    : options_(std::move(options)), log_(log), api_(options_.api) {}

std::string FlyOrchestrator::path_of(const std::string& id) const { return "/machines/" + http::url_encode(id); }

std::optional<nlohmann::json> FlyOrchestrator::find(const std::string& id) {
  if (!valid_machine_id(id)) return std::nullopt;
  auto answer = api_.call("GET", path_of(id), nullptr, {404}, {}, "inspecting machine " + id);
  if (answer.status == 404) return std::nullopt;
  if (!managed(answer.body))
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "Fly machine " + id + " is not managed by SynthOrg (its metadata has no " +
                                std::string(orchestrator::managed_label) + "=true); refusing to touch it");
  return std::move(answer.body);
}

nlohmann::json FlyOrchestrator::machine(const std::string& id, bool destroyed_ok) {
  auto found = find(id);
  if (!found)
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "no Fly machine has the id '" + id + "' in the app '" + options_.api.app + "'");
  if (!destroyed_ok && fly_state(*found) == "destroyed")
    throw OrchestratorError(OrchestratorErrc::not_found, "Fly machine " + id + " was removed");
  return std::move(*found);
}

bool FlyOrchestrator::wait_for(const std::string& id, std::string_view states, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left <= 0ms) return false;
  // The API counts whole seconds: less than one is slept off here instead of overshooting.
  if (left < 1s) {
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(left, 250ms));
    return false;
  }
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::min<std::chrono::milliseconds>(left, wait_limit));
  auto answer = api_.call("GET", path_of(id) + "/wait?" + std::string(states) + "&timeout=" + std::to_string(seconds.count()),
                          nullptr, {400, 408}, seconds + options_.api.request_timeout, "waiting for machine " + id);
  if (answer.status == 408) return false;  // flaps' "deadline_exceeded": not there yet
  if (answer.status == 400) {
    // The machine went somewhere the wait cannot lead from (destroyed, say): the caller
    // reads its state again.
    std::this_thread::sleep_for(100ms);
    return false;
  }
  return true;
}

WorkloadStatus FlyOrchestrator::spawn(const WorkloadSpec& spec) {
  auto request = create_request(spec, options_.mapping);  // throws invalid_spec before any call
  auto created = api_.call("POST", "/machines", request, {}, {}, "creating a Fly machine for " + spec.image);
  auto id = created.body.value("id", std::string());
  if (id.empty()) throw OrchestratorError(OrchestratorErrc::failed, "Fly created a machine but reported no id");
  log_.info("Fly machine created", {{"id", id}, {"name", created.body.value("name", "")}, {"image", spec.image}});

  auto give_up = [&](OrchestratorErrc code, const std::string& why) {
    try {
      remove(id);
    } catch (const std::exception& error) {
      log_.warn("could not remove a Fly machine that failed to start", {{"id", id}, {"reason", error.what()}});
    }
    throw OrchestratorError(code, why);
  };
  auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    nlohmann::json current;
    try {
      current = machine(id, true);
    } catch (const OrchestratorError& error) {
      if (error.code() != OrchestratorErrc::unavailable) throw;
      if (Clock::now() >= deadline) throw;
      std::this_thread::sleep_for(500ms);
      continue;
    }
    auto state = fly_state(current);
    if (state == "started" || state == "stopped") return status_of(current);
    if (state == "failed" || state == "destroyed") {
      auto status = status_of(current);
      give_up(OrchestratorErrc::failed, "Fly machine " + id + " for " + spec.image + " " + state +
                                            " before it started" + (status.message.empty() ? "" : ": " + status.message));
    }
    if (Clock::now() >= deadline)
      give_up(OrchestratorErrc::unavailable, "Fly machine " + id + " for " + spec.image + " did not start within " +
                                                 seconds_text(options_.start_timeout) + " (last state: " + state + ")");
    wait_for(id, running_or_ended_states, deadline);
  }
}

WorkloadStatus FlyOrchestrator::inspect(const std::string& id) { return status_of(machine(id)); }

std::vector<WorkloadStatus> FlyOrchestrator::list(const std::map<std::string, std::string>& labels) {
  std::string query = "metadata." + std::string(orchestrator::managed_label) + "=true";
  for (const auto& [key, value] : labels) {
    if (!orchestrator::valid_label_key(key) || !orchestrator::valid_label_value(value))
      throw OrchestratorError(OrchestratorErrc::invalid_spec,
                              "cannot list by the label " + key + "='" + value + "': not a valid label");
    if (key == orchestrator::managed_label) {
      if (value != "true") return {};  // nothing managed carries anything else
      continue;
    }
    query += "&metadata." + http::url_encode(key) + "=" + http::url_encode(value);
  }
  query += "&limit=" + std::to_string(options_.page_size);

  std::vector<WorkloadStatus> out;
  std::string cursor;
  // "Responses may be shorter, or even empty, even when more machines remain": only the
  // absence of fly-next-cursor ends the list.
  for (int page = 0;; ++page) {
    if (page > 100000) throw OrchestratorError(OrchestratorErrc::failed, "the Fly machine list does not end");
    auto answer = api_.call("GET", "/machines?" + query + (cursor.empty() ? "" : "&cursor=" + http::url_encode(cursor)),
                            nullptr, {}, {}, "listing Fly machines");
    if (!answer.body.is_array())
      throw OrchestratorError(OrchestratorErrc::failed, "listing Fly machines: the answer is not a list");
    for (const auto& item : answer.body) {
      if (!managed(item) || fly_state(item) == "destroyed") continue;
      auto status = status_of(item);
      bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& label) {
        auto it = status.labels.find(label.first);
        return it != status.labels.end() && it->second == label.second;
      });
      if (match) out.push_back(std::move(status));
    }
    if (answer.next_cursor.empty() || answer.next_cursor == cursor) break;
    cursor = answer.next_cursor;
  }
  return out;
}

void FlyOrchestrator::stop(const std::string& id, std::chrono::seconds grace) {
  if (grace < 0s) throw OrchestratorError(OrchestratorErrc::invalid_spec, "a stop grace period cannot be negative");
  auto current = machine(id);
  auto state = fly_state(current);
  if (ended(state) || state == "created") return;  // nothing runs
  nlohmann::json body = {{"signal", grace == 0s ? "SIGKILL" : options_.mapping.stop_signal}};
  if (grace > 0s) body["timeout"] = std::to_string(grace.count()) + "s";
  try {
    api_.call("POST", path_of(id) + "/stop", body, {}, {}, "stopping Fly machine " + id);
  } catch (const OrchestratorError& error) {
    // It may have ended on its own between the two calls: then there is nothing to stop.
    if (error.code() == OrchestratorErrc::unavailable) throw;
    if (!ended(fly_state(machine(id, true)))) throw;
    return;
  }
  // Fly kills it after the grace; the margin covers the API's own delay.
  auto deadline = Clock::now() + grace + options_.api.request_timeout;
  for (;;) {
    auto now_state = fly_state(machine(id, true));
    if (ended(now_state)) return;
    if (Clock::now() >= deadline)
      throw OrchestratorError(OrchestratorErrc::unavailable, "Fly machine " + id + " did not stop within " +
                                                                 std::to_string(grace.count()) + " s plus " +
                                                                 seconds_text(options_.api.request_timeout) +
                                                                 " (state: " + now_state + ")");
    wait_for(id, ended_states, deadline);
  }
}

void FlyOrchestrator::remove(const std::string& id) {
  auto current = find(id);  // gone already is done; not ours is still refused
  if (!current || fly_state(*current) == "destroyed") return;
  auto answer = api_.call("DELETE", path_of(id) + "?force=true", nullptr, {404}, {}, "removing Fly machine " + id);
  if (answer.status == 404) return;
  log_.info("Fly machine removed", {{"id", id}});
  // DELETE answers while the machine may still be destroying; a later list must not show it.
  auto deadline = Clock::now() + options_.api.request_timeout;
  while (Clock::now() < deadline) {
    auto state = api_.call("GET", path_of(id), nullptr, {404}, {}, "inspecting machine " + id);
    if (state.status == 404 || fly_state(state.body) == "destroyed") return;
    wait_for(id, "state=destroyed", deadline);
  }
  throw OrchestratorError(OrchestratorErrc::unavailable,
                          "Fly machine " + id + " was asked to go but is not destroyed after " +
                              seconds_text(options_.api.request_timeout));
}

WaitResult FlyOrchestrator::wait(const std::string& id, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + std::max<std::chrono::milliseconds>(timeout, 0ms);
  auto current = machine(id);
  for (;;) {
    if (ended(fly_state(current))) {
      auto status = status_of(current);
      return {true, status.exit_code};
    }
    if (Clock::now() >= deadline) return {false, std::nullopt};
    wait_for(id, ended_states, deadline);
    current = machine(id, true);  // removed while waited on: it ended
  }
}

void FlyOrchestrator::logs(const std::string& id, const LogOptions&, const LogSink&) {
  machine(id);  // an unknown or foreign id is not_found, as everywhere
  throw OrchestratorError(OrchestratorErrc::failed,
                          "the Fly Machines API serves no logs: read them with `fly logs -a " + options_.api.app +
                              " --machine " + id + "`, or ship them from the app's NATS log stream "
                              "(fly-log-shipper) to a log store");
}

Endpoint FlyOrchestrator::endpoint(const std::string& id, std::uint16_t container_port) {
  auto current = machine(id);
  bool declared = false;
  const auto& services = current.value("config", nlohmann::json::object()).value("services", nlohmann::json::array());
  for (const auto& service : services)
    declared = declared || service.value("internal_port", 0) == container_port;
  if (!declared)
    throw OrchestratorError(OrchestratorErrc::invalid_spec, "workload " + id + " did not request port " +
                                                                std::to_string(container_port) +
                                                                "; list it in the spec's ports");
  if (fly_state(current) != "started")
    throw OrchestratorError(OrchestratorErrc::failed, "workload " + id + " is not running (Fly state " +
                                                          fly_state(current) + "), so it has no endpoint");
  auto address = current.value("private_ip", std::string());
  if (address.empty())
    throw OrchestratorError(OrchestratorErrc::failed, "Fly reports no private address for machine " + id);
  // The 6PN address: reachable from inside the app's private network (or over WireGuard).
  return {address, container_port};
}

OrchestratorHealth FlyOrchestrator::health() {
  OrchestratorHealth health;
  // logs and limits say what this backend cannot do (see logs() and the guest sizes).
  health.info = {{"backend", "fly"},
                 {"api_url", api_.describe()},
                 {"app", options_.api.app},
                 {"logs", "unsupported"},
                 {"limits", "rounded_up"},
                 // A Machine is a microVM: that is its isolation. The Machines API has no read-only
                 // root, capability set or no-new-privileges for the process inside it.
                 {"not_isolated", {"read_only_root", "drop_capabilities", "no_new_privileges"}}};
  if (!options_.mapping.region.empty()) health.info["region"] = options_.mapping.region;
  try {
    auto answer = api_.call("GET", "", nullptr, {}, 1500ms, "checking the Fly app " + options_.api.app, false);
    health.up = true;
    health.detail = "the Fly Machines API answers for the app " + options_.api.app;
    if (answer.body.is_object()) {
      if (answer.body.contains("machine_count")) health.info["machine_count"] = answer.body["machine_count"];
      if (answer.body.contains("status")) health.info["app_status"] = answer.body["status"];
    }
  } catch (const OrchestratorError& error) {
    health.detail = error.what();
    if (error.code() == OrchestratorErrc::not_found)
      health.detail = "the Fly app '" + options_.api.app + "' does not exist for this token: create it (`fly apps create " +
                      options_.api.app + "`) or fix plugins.orchestrator-fly.config.app / FLY_APP_NAME";
  }
  return health;
}

}  // namespace synthorg::orchestrator_fly
