#include "docker_orchestrator.hpp"

#include <chrono>
#include <ctime>

namespace synthorg::orchestrator_docker {
namespace {

// Container ids and names only: anything else could not name a container and must never reach
// the request path.
std::string checked_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 128;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
          c == '-'))
      ok = false;
  if (!ok) throw OrchestratorError(OrchestratorErrc::not_found, "no workload has the id '" + id + "'");
  return id;
}

std::string unix_time(std::int64_t seconds) {
  std::time_t t = seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// "Exited (3) 2 seconds ago" → 3: the list answer has no exit code field of its own.
std::optional<int> exit_code_from_status(const std::string& text) {
  if (text.rfind("Exited (", 0) != 0) return std::nullopt;
  try {
    return std::stoi(text.substr(8));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// "repo/name:tag" → fromImage and tag for POST /images/create.
std::pair<std::string, std::string> split_reference(const std::string& image) {
  if (image.find('@') != std::string::npos) return {image, ""};
  auto slash = image.rfind('/');
  auto colon = image.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
    return {image.substr(0, colon), image.substr(colon + 1)};
  return {image, "latest"};
}

}  // namespace

DockerOrchestrator::DockerOrchestrator(DockerOptions options, const log::Logger& log)
    : options_(std::move(options)), log_(log), engine_(options_.host, options_.request_timeout) {}

nlohmann::json DockerOrchestrator::inspect_raw(const std::string& id) {
  auto reply = engine_.call("GET", "/containers/" + http::url_encode(checked_id(id)) + "/json", nullptr, {200});
  status_from_inspect(reply.body);  // throws not_found for containers we do not manage
  return reply.body;
}

WorkloadStatus DockerOrchestrator::inspect(const std::string& id) { return status_from_inspect(inspect_raw(id)); }

void DockerOrchestrator::pull(const std::string& image) {
  auto [from, tag] = split_reference(image);
  std::string path = "/images/create?fromImage=" + http::url_encode(from);
  if (!tag.empty()) path += "&tag=" + http::url_encode(tag);
  log_.info("Pulling image", {{"image", image}});
  std::string failure;
  auto last_log = std::chrono::steady_clock::now();
  auto reply = engine_.stream_json(
      "POST", path,
      [&](const nlohmann::json& progress) {
        if (progress.contains("error")) {
          failure = progress["error"].is_string() ? progress["error"].get<std::string>() : progress["error"].dump();
          return;
        }
        // A pull reports many times a second; a line every few seconds says it is alive.
        auto now = std::chrono::steady_clock::now();
        if (now - last_log > std::chrono::seconds(3)) {
          last_log = now;
          log_.info("Pull progress", {{"image", image},
                                      {"status", progress.value("status", std::string())},
                                      {"progress", progress.value("progress", std::string())}});
        }
      },
      options_.pull_timeout);
  if (reply.status != 200) {
    auto error = engine_error(reply.status, reply.body, "pulling " + image);
    throw OrchestratorError(OrchestratorErrc::image_missing, error.what());
  }
  if (!failure.empty())
    throw OrchestratorError(OrchestratorErrc::image_missing,
                            "image " + image + " is not on the engine and pulling it failed: " + failure);
  log_.info("Image pulled", {{"image", image}});
}

std::string DockerOrchestrator::create(const WorkloadSpec& spec, const nlohmann::json& body) {
  std::string path = "/containers/create";
  if (!spec.name.empty()) path += "?name=" + http::url_encode(spec.name);
  try {
    return engine_.call("POST", path, &body, {201}).body.at("Id").get<std::string>();
  } catch (const OrchestratorError& error) {
    if (error.code() != OrchestratorErrc::image_missing || !options_.pull_missing) throw;
  }
  pull(spec.image);
  return engine_.call("POST", path, &body, {201}).body.at("Id").get<std::string>();
}

WorkloadStatus DockerOrchestrator::spawn(const WorkloadSpec& spec) {
  orchestrator::check_spec(spec);
  auto body = create_body(spec, options_.mapping);
  auto id = create(spec, body);
  try {
    engine_.call("POST", "/containers/" + id + "/start", nullptr, {204, 304});
    auto status = inspect(id);
    log_.debug("Container started", {{"id", id.substr(0, 12)}, {"image", spec.image}});
    return status;
  } catch (...) {
    // Never leave a created-but-dead container behind.
    try {
      engine_.call("DELETE", "/containers/" + id + "?force=true&v=true", nullptr, {204, 404});
    } catch (const std::exception& cleanup) {
      log_.warn("Could not remove a container that failed to start", {{"id", id.substr(0, 12)},
                                                                      {"error", cleanup.what()}});
    }
    throw;
  }
}

std::vector<WorkloadStatus> DockerOrchestrator::list(const std::map<std::string, std::string>& labels) {
  nlohmann::json filters = {{"label", {std::string(orchestrator::managed_label) + "=true"}}};
  for (const auto& [key, value] : labels) {
    if (!orchestrator::valid_label_key(key) || !orchestrator::valid_label_value(value))
      throw OrchestratorError(OrchestratorErrc::invalid_spec, "cannot list by the label " + key + "='" + value +
                                                                  "': it is not a valid label");
    filters["label"].push_back(key + "=" + value);
  }
  auto reply = engine_.call("GET", "/containers/json?all=true&filters=" + http::url_encode(filters.dump()), nullptr, {200});
  std::vector<WorkloadStatus> out;
  for (const auto& item : reply.body) {
    const auto& item_labels = item.value("Labels", nlohmann::json::object());
    if (!is_managed(item_labels)) continue;
    WorkloadStatus status;
    status.id = item.value("Id", std::string());
    auto names = item.value("Names", nlohmann::json::array());
    if (!names.empty() && names[0].is_string()) status.name = names[0].get<std::string>();
    if (!status.name.empty() && status.name.front() == '/') status.name.erase(0, 1);
    status.image = item.value("Image", std::string());
    for (const auto& [key, value] : item_labels.items())
      if (value.is_string()) status.labels[key] = value.get<std::string>();
    auto state = item.value("State", std::string());
    status.state = state == "running" || state == "paused" || state == "restarting" ? WorkloadState::running
                   : state == "created"                                          ? WorkloadState::pending
                   : state == "exited" || state == "dead" || state == "removing" ? WorkloadState::exited
                                                                                 : WorkloadState::unknown;
    if (status.state == WorkloadState::exited) status.exit_code = exit_code_from_status(item.value("Status", ""));
    if (item.contains("Created") && item["Created"].is_number_integer())
      status.created_at = unix_time(item["Created"].get<std::int64_t>());
    out.push_back(std::move(status));
  }
  return out;
}

void DockerOrchestrator::stop(const std::string& id, std::chrono::seconds grace) {
  auto status = inspect(id);
  if (status.state == WorkloadState::exited) return;
  if (grace.count() < 0) grace = std::chrono::seconds(0);
  // The engine answers once the container has stopped: allow the grace period and then some.
  engine_.call("POST", "/containers/" + status.id + "/stop?t=" + std::to_string(grace.count()), nullptr, {204, 304},
               options_.request_timeout + grace);
}

void DockerOrchestrator::remove(const std::string& id) {
  auto reply = engine_.call("GET", "/containers/" + http::url_encode(checked_id(id)) + "/json", nullptr, {200, 404});
  if (reply.status == 404) return;  // already gone
  auto status = status_from_inspect(reply.body);
  engine_.call("DELETE", "/containers/" + status.id + "?force=true&v=true", nullptr, {204, 404});
}

WaitResult DockerOrchestrator::wait(const std::string& id, std::chrono::milliseconds timeout) {
  auto status = inspect(id);
  if (status.state == WorkloadState::exited) return {true, status.exit_code};
  if (timeout.count() <= 0) return {false, std::nullopt};
  bool timed_out = false;
  auto reply = engine_.call("POST", "/containers/" + status.id + "/wait?condition=not-running", nullptr, {200},
                            timeout, &timed_out);
  if (timed_out) return {false, std::nullopt};
  return {true, reply.body.value("StatusCode", 0)};
}

void DockerOrchestrator::logs(const std::string& id, const LogOptions& options, const LogSink& sink) {
  auto status = inspect(id);
  std::string path = "/containers/" + status.id + "/logs?stdout=true&stderr=true&follow=" + (options.follow ? "true" : "false") +
                     "&tail=" + (options.tail == 0 ? std::string("all") : std::to_string(options.tail));
  engine_.stream_lines(path, options.stop, sink);
}

Endpoint DockerOrchestrator::endpoint(const std::string& id, std::uint16_t container_port) {
  auto raw = inspect_raw(id);
  auto key = std::to_string(container_port) + "/tcp";
  const auto& config = raw.value("Config", nlohmann::json::object());
  if (!config.value("ExposedPorts", nlohmann::json::object()).contains(key))
    throw OrchestratorError(OrchestratorErrc::invalid_spec, "workload " + raw.value("Id", id).substr(0, 12) +
                                                                " did not request port " + std::to_string(container_port) +
                                                                "; list it in the spec's ports");
  if (raw.value("State", nlohmann::json::object()).value("Status", "") != "running")
    throw OrchestratorError(OrchestratorErrc::failed,
                            "workload " + raw.value("Id", id).substr(0, 12) + " is not running, so it has no endpoint");
  const auto& network = raw.value("NetworkSettings", nlohmann::json::object());
  if (options_.container_ip_endpoints) {
    for (const auto& [name, settings] : network.value("Networks", nlohmann::json::object()).items()) {
      auto address = settings.value("IPAddress", std::string());
      if (!address.empty()) return {address, container_port};
    }
  } else {
    const auto& bindings = network.value("Ports", nlohmann::json::object()).value(key, nlohmann::json());
    if (bindings.is_array()) {
      for (const auto& binding : bindings) {
        auto host = binding.value("HostIp", std::string());
        auto port = binding.value("HostPort", std::string());
        if (port.empty()) continue;
        // An unspecified address means "every interface": loopback is one of them.
        if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
        if (host == "::") host = "::1";
        return {host, static_cast<std::uint16_t>(std::stoi(port))};
      }
    }
  }
  throw OrchestratorError(OrchestratorErrc::failed, "the engine reports no address for port " +
                                                        std::to_string(container_port) + " of workload " +
                                                        raw.value("Id", id).substr(0, 12));
}

OrchestratorHealth DockerOrchestrator::health() {
  OrchestratorHealth health;
  health.info = {{"backend", "docker"}, {"host", engine_.describe()}, {"api_version", api_version}};
  try {
    auto version = engine_.negotiate();
    health.up = true;
    health.detail = "the Docker engine answers";
    health.info["engine_version"] = version.value("Version", "");
    health.info["engine_api_version"] = version.value("ApiVersion", "");
    health.info["os"] = version.value("Os", "");
  } catch (const OrchestratorError& error) {
    health.detail = error.what();
  }
  return health;
}

}  // namespace synthorg::orchestrator_docker
