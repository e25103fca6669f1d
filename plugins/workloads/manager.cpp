#include "manager.hpp"

#include <algorithm>
#include <set>
#include <thread>

#include <sys/socket.h>

#include <array>

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <fmt/format.h>

#include "synthorg/crypto.hpp"
#include "synthorg/http_client.hpp"

namespace synthorg::workloads {
namespace {

using nlohmann::json;

const std::string component_label = "synthorg.component";
const std::string instance_label = "synthorg.instance";
const std::string owner_label_key = "synthorg.owner";
const std::string workload_label = "synthorg.workload";

// A started container that never answered HTTP on its port.
struct NotReady : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool holds_slot(const json& data) {
  auto state = data.value("state", "");
  return state == "starting" || state == "running";
}

// How a failed spawn reads to the caller: the status and code follow the orchestrator's reason.
WorkloadProblem failure_problem(const Document& record, std::int64_t retry_after) {
  auto reason = record.data.value("reason", "failed");
  auto message = record.data.value("message", "");
  int status = 502;
  std::string code = "spawn_failed";
  std::string detail;
  if (reason == "image_missing") {
    code = "image_missing";
    detail = "the workload image is not available: " + message;
  } else if (reason == "invalid_spec") {
    code = "invalid_spec";
    detail = "the workload configuration was refused by the orchestrator: " + message;
  } else if (reason == "capacity") {
    status = 503;
    code = "capacity";
    detail = "the orchestrator has no room for another workload: " + message;
  } else if (reason == "not_ready") {
    code = "not_ready";
    detail = "the workload started but never answered: " + message;
  } else if (reason == "exited") {
    code = "workload_exited";
    detail = "the workload's container exited: " + message;
  } else if (reason == "unavailable") {
    status = 503;
    code = "orchestrator_unavailable";
    detail = "the orchestrator cannot be reached: " + message;
  } else {
    detail = "the workload failed to start: " + message;
  }
  detail += fmt::format(" (the failure is kept for {} s before a new attempt)", retry_after);
  return WorkloadProblem(status, code, detail, {{"workload", Manager::to_json(record)}, {"reason", reason}},
                         retry_after);
}

std::string rfc3339_ms(std::int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm parts{};
  ::gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
  return fmt::format("{}.{:03}Z", text, ms % 1000);
}

}  // namespace

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Manager::Manager(Options options, std::shared_ptr<Store> store, std::shared_ptr<Orchestrator> orchestrator,
                 ScopedBus& bus, log::Logger log)
    : options_(std::move(options)), store_(std::move(store)), orchestrator_(std::move(orchestrator)), bus_(bus),
      log_(std::move(log)) {}

void Manager::ensure_collection() {
  // active_owner is set while a record holds its user's one workload (starting, running, or
  // failed within the cool-down): the unique index makes "one per user" hold across replicas.
  store_->ensure_collection({std::string(collection),
                             {{"owner", false}, {"active_owner", true}, {"state", false}},
                             {{1, "workload records", [](StoreOps&) {}}}});
}

std::string Manager::owner_label(const std::string& subject) {
  return "u" + crypto::to_hex(crypto::sha256(subject)).substr(0, 40);
}

std::map<std::string, std::string> Manager::selector() const {
  return {{component_label, "workloads"}, {instance_label, options_.instance}};
}

json Manager::to_json(const Document& record) {
  const auto& data = record.data;
  json out = {{"id", record.id},
              {"owner", data.value("owner", "")},
              {"state", data.value("state", "")},
              {"reason", data.value("reason", "")},
              {"message", data.value("message", "")},
              {"container_id", data.value("container_id", "")},
              {"endpoint", data.value("endpoint", json(nullptr))},
              {"endpoints", data.value("endpoints", json::object())},
              {"created_at", record.created_at},
              {"updated_at", record.updated_at},
              {"last_used_at", rfc3339_ms(data.value("last_used_ms", std::int64_t{0}))},
              {"urls", {{"self", "/api/v1/workloads/" + record.id}, {"proxy", "/api/v1/workloads/" + record.id + "/proxy/"}}}};
  return out;
}

std::shared_ptr<std::mutex> Manager::user_lock(const std::string& user) {
  std::lock_guard guard(locks_mutex_);
  auto& slot = locks_[user];
  auto lock = slot.lock();
  if (!lock) {
    lock = std::make_shared<std::mutex>();
    slot = lock;
  }
  // Forget users nobody holds a lock for, so the map stays as small as the concurrency.
  if (locks_.size() > 1024)
    std::erase_if(locks_, [](const auto& entry) { return entry.second.expired(); });
  return lock;
}

Document Manager::update(const Document& record, const std::function<void(json&)>& change) {
  Document current = record;
  for (int attempt = 0;; ++attempt) {
    json data = current.data;
    change(data);
    try {
      return store_->update(collection, current.id, data, current.version);
    } catch (const StoreError& error) {
      if (error.code() != StoreErrc::conflict || attempt >= 8) throw;
      auto fresh = store_->get(collection, current.id);
      if (!fresh) throw StoreError(StoreErrc::not_found, "workload " + current.id + " is gone");
      current = *fresh;
    }
  }
}

void Manager::publish(const std::string& topic, const Document& record, json extra) {
  json payload = {{"workload_id", record.id},
                  {"user_id", record.data.value("owner", "")},
                  {"container_id", record.data.value("container_id", "")},
                  {"state", record.data.value("state", "")}};
  payload.update(extra);
  bus_.publish(topic, std::move(payload));
}

std::vector<Document> Manager::active_records() {
  std::vector<Document> out;
  for (const char* state : {"starting", "running"}) {
    Query query;
    query.where = {{"state", state}};
    query.limit = 1000;
    for (;;) {
      auto page = store_->query(collection, query);
      for (auto& document : page.documents) out.push_back(std::move(document));
      if (page.next_cursor.empty()) break;
      query.cursor = page.next_cursor;
    }
  }
  return out;
}

Outcome Manager::get_or_create(const std::string& user) {
  auto lock = user_lock(user);
  std::lock_guard guard(*lock);
  Query query;
  query.where = {{"active_owner", user}};
  query.limit = 1;
  auto page = store_->query(collection, query);
  if (!page.documents.empty()) {
    auto& record = page.documents.front();
    auto state = record.data.value("state", "");
    if (state == "running") return {touch(record), false};
    // Another replica is starting it (this process would hold the user's lock): answer as is.
    if (state == "starting") return {record, false};
    // A failed spawn is answered as is for the cool-down: no retry storm against the backend.
    auto left = record.data.value("failed_ms", std::int64_t{0}) + options_.failure_cooldown.count() - now_ms();
    if (left > 0) throw failure_problem(record, (left + 999) / 1000);
    update(record, [](json& data) { data.erase("active_owner"); });
  }
  return {spawn(user), true};
}

Document Manager::spawn(const std::string& user) {
  {
    std::lock_guard guard(slots_mutex_);
    if (slots_used_ >= options_.max_per_host)
      throw WorkloadProblem(503, "max_per_host",
                            fmt::format("this host already runs its limit of {} workloads (max_per_host); try again "
                                        "when one stops",
                                        options_.max_per_host),
                            {{"max_per_host", options_.max_per_host}}, 30);
    ++slots_used_;
  }
  std::string record_id;
  auto release = [this, &record_id] {
    std::lock_guard guard(slots_mutex_);
    --slots_used_;
    mine_.erase(record_id);
  };
  auto now = now_ms();
  Document record;
  try {
    record = store_->insert(collection, {{"owner", user},
                                         {"active_owner", user},
                                         {"state", "starting"},
                                         {"reason", ""},
                                         {"message", ""},
                                         {"container_id", ""},
                                         {"last_used_ms", now}});
    record_id = record.id;
    std::lock_guard guard(slots_mutex_);
    mine_.insert(record_id);
  } catch (const StoreError& error) {
    release();
    if (error.code() == StoreErrc::conflict)
      throw WorkloadProblem(409, "conflict", "another request is starting this user's workload; retry", {}, 1);
    throw;
  }

  WorkloadSpec spec;
  spec.name = "workload-" + record.id;
  spec.image = options_.image;
  spec.command = options_.command;
  spec.env = options_.env;
  spec.labels = {{component_label, "workloads"},
                 {instance_label, options_.instance},
                 {owner_label_key, owner_label(user)},
                 {workload_label, record.id}};
  spec.memory_bytes = options_.memory_bytes;
  spec.cpus = options_.cpus;
  spec.pids_limit = options_.pids_limit;
  spec.read_only_root = options_.read_only_root;
  spec.drop_all_capabilities = options_.drop_all_capabilities;
  spec.no_new_privileges = options_.no_new_privileges;
  spec.user = options_.user;
  spec.tmpfs.push_back({"/tmp", options_.tmpfs_options});
  spec.network = options_.network;
  if (options_.port) spec.ports.push_back({options_.port, "tcp"});
  if (options_.grpc_port) spec.ports.push_back({options_.grpc_port, "tcp"});

  std::string container_id;
  try {
    auto status = orchestrator_->spawn(spec);
    container_id = status.id;
    ++spawned_;
    record = update(record, [&](json& data) { data["container_id"] = container_id; });
    publish("workload.spawned", record);
    log_.info("Container spawned", {{"user_id", user}, {"container_id", container_id}, {"workload_id", record.id}});
    auto endpoints = endpoints_of(container_id);
    wait_ready(endpoints);
    record = update(record, [&](json& data) {
      data["state"] = "running";
      data["endpoint"] = endpoints.value("http", json(nullptr));
      data["endpoints"] = endpoints;
      data["last_used_ms"] = now_ms();
    });
    remember(record);
    publish("workload.ready", record);
    return record;
  } catch (const std::exception& error) {
    release();
    std::string reason = dynamic_cast<const NotReady*>(&error) ? "not_ready" : "failed";
    if (auto* orchestrator_error = dynamic_cast<const OrchestratorError*>(&error))
      reason = std::string(to_string(orchestrator_error->code()));
    // What the workload said before it failed is most often why (a missing file, a bad setting):
    // its last lines go to the operator's log, never into the user's answer.
    std::string last_output;
    if (!container_id.empty()) {
      try {
        orchestrator_->logs(container_id, {.tail = 8}, [&](LogStream, std::string_view line) {
          last_output.append(line.substr(0, 500)).append("\n");
          return true;
        });
      } catch (const std::exception&) {
        // Gone already, or the backend keeps no logs: the error says enough.
      }
      try {
        orchestrator_->remove(container_id);
      } catch (const std::exception& cleanup) {
        log_.warn("could not remove a half-started container; the next start reconciles it",
                  {{"container_id", container_id}, {"error", cleanup.what()}});
      }
      ++stopped_;
    }
    log_.error("Container spawn failed", {{"user_id", user}, {"workload_id", record.id}, {"reason", reason},
                                          {"error", error.what()}, {"last_output", last_output}});
    record = update(record, [&](json& data) {
      data["state"] = "failed";
      data["reason"] = reason;
      data["message"] = error.what();
      data["failed_ms"] = now_ms();
    });
    publish("workload.failed", record, {{"reason", reason}, {"message", error.what()}});
    throw failure_problem(record, (options_.failure_cooldown.count() + 999) / 1000);
  }
}

std::optional<Document> Manager::find(const std::string& id) {
  if (!store::valid_document_id(id)) return std::nullopt;
  return store_->get(collection, id);
}

Page Manager::list(const std::string& owner, std::size_t limit, const std::string& cursor) {
  Query query;
  if (!owner.empty()) query.where = {{"owner", owner}};
  query.order_by = "created_at";
  query.descending = true;
  query.limit = limit;
  query.cursor = cursor;
  return store_->query(collection, query);
}

Document Manager::touch(const Document& record) {
  if (record.data.value("state", "") != "running")
    throw WorkloadProblem(409, "not_running", fmt::format("workload {} is {}, not running", record.id,
                                                           record.data.value("state", "")));
  return update(record, [](json& data) { data["last_used_ms"] = now_ms(); });
}

Document Manager::stop(const Document& given, const std::string& reason, bool idle_only) {
  auto lock = user_lock(given.data.value("owner", ""));
  std::lock_guard guard(*lock);
  auto fresh = store_->get(collection, given.id);
  if (!fresh) throw WorkloadProblem(404, "not_found", "no such workload");
  auto record = *fresh;
  if (!holds_slot(record.data)) {
    // A failed one gives up its cool-down when its owner deletes it: the next POST tries again.
    if (record.data.contains("active_owner")) record = update(record, [](json& data) { data.erase("active_owner"); });
    return record;
  }
  if (idle_only && last_used(record) + options_.idle_timeout.count() > now_ms()) return record;
  forget(record.id);
  auto container_id = record.data.value("container_id", "");
  if (!container_id.empty()) {
    try {
      orchestrator_->stop(container_id, options_.stop_grace);
      orchestrator_->remove(container_id);
    } catch (const OrchestratorError& error) {
      if (error.code() != OrchestratorErrc::not_found) {
        if (error.code() == OrchestratorErrc::unavailable)
          throw WorkloadProblem(503, "orchestrator_unavailable",
                                std::string("the orchestrator cannot be reached: ") + error.what(), {}, 5);
        throw WorkloadProblem(502, "stop_failed", std::string("the container could not be stopped: ") + error.what());
      }
    }
  }
  record = update(record, [&](json& data) {
    data["state"] = "stopped";
    data["reason"] = reason;
    data["stopped_ms"] = now_ms();
    data.erase("active_owner");
  });
  {
    std::lock_guard slots(slots_mutex_);
    --slots_used_;
    mine_.erase(record.id);
  }
  ++stopped_;
  publish("workload.stopped", record, {{"reason", reason}});
  log_.info("Container stopped", {{"user_id", record.data.value("owner", "")},
                                  {"container_id", container_id},
                                  {"workload_id", record.id},
                                  {"reason", reason}});
  return record;
}

std::size_t Manager::reap() {
  std::size_t reaped = 0;
  auto cutoff = now_ms() - options_.idle_timeout.count();
  std::map<std::string, WorkloadStatus> containers;
  for (auto& container : orchestrator_->list(selector())) containers.emplace(container.id, std::move(container));
  for (const auto& record : active_records()) {
    if (record.data.value("state", "") != "running") continue;
    try {
      auto container = containers.find(record.data.value("container_id", ""));
      if (container == containers.end() || container->second.state == WorkloadState::exited) {
        record_exit(record, container == containers.end()
                                ? std::string("its container is gone")
                                : fmt::format("exit code {}", container->second.exit_code.value_or(-1)));
        continue;
      }
      auto used = last_used(record);
      if (used > cutoff) {
        // In use through the proxy since last written: write it now (once a round at most), so
        // a restarted kernel does not take it for idle.
        if (used > record.data.value("last_used_ms", std::int64_t{0}))
          update(record, [used](json& data) { data["last_used_ms"] = std::max(used, data.value("last_used_ms", used)); });
        continue;
      }
      auto after = stop(record, "idle_timeout", true);
      if (after.data.value("state", "") == "stopped") ++reaped;
    } catch (const std::exception& error) {
      log_.warn("could not reap or check a workload; trying again next round",
                {{"workload_id", record.id}, {"error", error.what()}});
    }
  }
  return reaped;
}

void Manager::stop_all(const std::string& reason) {
  for (const auto& record : active_records()) {
    try {
      stop(record, reason);
    } catch (const std::exception& error) {
      log_.warn("could not stop a workload", {{"workload_id", record.id}, {"error", error.what()}});
    }
  }
}

void Manager::reconcile() {
  auto containers = orchestrator_->list(selector());
  std::set<std::string> mine;
  {
    std::lock_guard guard(slots_mutex_);
    mine = mine_;
  }
  std::map<std::string, Document> active;
  for (auto& record : active_records())
    if (!mine.contains(record.id)) active.emplace(record.id, std::move(record));
  std::set<std::string> adopted;
  std::size_t removed = 0, vanished = 0;
  for (const auto& container : containers) {
    auto label = container.labels.find(workload_label);
    if (label != container.labels.end() && mine.contains(label->second)) continue;  // started here since
    auto it = label == container.labels.end() ? active.end() : active.find(label->second);
    bool ours = it != active.end() && container.state == WorkloadState::running && !adopted.contains(it->first);
    if (ours) {
      auto recorded = it->second.data.value("container_id", "");
      ours = recorded.empty() || recorded == container.id;
    }
    if (ours) {
      try {
        auto endpoints = endpoints_of(container.id);
        remember(update(it->second, [&](json& data) {
          data["state"] = "running";
          data["container_id"] = container.id;
          data["endpoint"] = endpoints.value("http", json(nullptr));
          data["endpoints"] = endpoints;
        }));
        adopted.insert(it->first);
        {
          std::lock_guard slots(slots_mutex_);
          ++slots_used_;
          mine_.insert(it->first);
        }
        log_.info("Container adopted", {{"user_id", it->second.data.value("owner", "")},
                                        {"container_id", container.id},
                                        {"workload_id", it->first}});
        continue;
      } catch (const std::exception& error) {
        log_.warn("could not adopt a container; removing it", {{"container_id", container.id}, {"error", error.what()}});
      }
    }
    try {
      orchestrator_->remove(container.id);
      ++removed;
      log_.warn("Orphaned container removed", {{"container_id", container.id},
                                               {"workload_id", label == container.labels.end() ? "" : label->second}});
    } catch (const std::exception& error) {
      log_.warn("could not remove an orphaned container", {{"container_id", container.id}, {"error", error.what()}});
    }
  }
  for (auto& [id, record] : active) {
    if (adopted.contains(id)) continue;
    auto after = update(record, [](json& data) {
      data["state"] = "stopped";
      data["reason"] = "vanished";
      data["stopped_ms"] = now_ms();
      data.erase("active_owner");
    });
    ++vanished;
    ++stopped_;
    publish("workload.stopped", after, {{"reason", "vanished"}});
  }
  reconciled_ = true;
  log_.info("workloads reconciled", {{"adopted", adopted.size()}, {"orphans_removed", removed}, {"vanished", vanished}});
}

json Manager::endpoints_of(const std::string& container_id) {
  json endpoints = json::object();
  for (auto [name, port] : {std::pair{"http", options_.port}, std::pair{"grpc", options_.grpc_port}}) {
    if (!port) continue;
    auto where = orchestrator_->endpoint(container_id, port);
    endpoints[name] = {{"host", where.host}, {"port", where.port}};
  }
  return endpoints;
}

void Manager::wait_ready(const json& endpoints) {
  auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  auto pause = std::chrono::milliseconds(5);
  std::string last_error;
  std::function<bool()> answered;
  std::string what;
  if (endpoints.contains("http")) {
    const auto& http = endpoints["http"];
    auto client = std::make_shared<http::HttpClient>(http::ClientOptions{
        .base_url = fmt::format("http://{}:{}", http["host"].get<std::string>(), http["port"].get<int>()),
        .max_idle_connections = 0});
    what = fmt::format("no HTTP answer on port {}", options_.port);
    answered = [client, &last_error] {
      try {
        // Any status is an answer: the service is up; what it thinks of "/" is its business.
        client->send({.method = "GET", .target = "/", .timeout = std::chrono::milliseconds(2000)});
        return true;
      } catch (const http::ClientError& error) {
        last_error = error.what();
        return false;
      }
    };
  } else if (endpoints.contains("grpc")) {
    // gRPC speaks HTTP/2 only, and an accepted connection proves nothing (Docker's proxy accepts
    // on the published port before anything listens inside): the server must answer the HTTP/2
    // connection preface with its SETTINGS frame.
    auto host = endpoints["grpc"]["host"].get<std::string>();
    auto port = endpoints["grpc"]["port"].get<std::uint16_t>();
    what = fmt::format("no HTTP/2 answer on the grpc port {}", options_.grpc_port);
    answered = [host, port, &last_error] {
      boost::asio::io_context io;
      boost::asio::ip::tcp::socket socket(io);
      boost::system::error_code ec;
      auto address = boost::asio::ip::make_address(host, ec);
      if (!ec) socket.connect({address, port}, ec);
      if (ec) {
        last_error = ec.message();
        return false;
      }
      timeval timeout{2, 0};
      ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      // The client preface, then an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
      static const std::string preface = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                                         std::string("\0\0\0\x04\0\0\0\0\0", 9);
      boost::asio::write(socket, boost::asio::buffer(preface), ec);
      std::array<unsigned char, 9> frame{};
      if (!ec) boost::asio::read(socket, boost::asio::buffer(frame), ec);
      if (ec) {
        last_error = "the port accepted a connection but gave no HTTP/2 answer (" + ec.message() + ")";
        return false;
      }
      if (frame[3] != 0x04) {
        last_error = "the port's first HTTP/2 frame is not SETTINGS: not a gRPC server";
        return false;
      }
      return true;
    };
  } else {
    return;  // no port: nothing to wait for
  }
  while (std::chrono::steady_clock::now() < deadline) {
    if (answered()) return;
    // Short pauses: a user waits for this, and a probe costs a loopback connect.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  throw NotReady(fmt::format("{} within {} ms (last: {})", what, options_.ready_timeout.count(), last_error));
}

void Manager::remember(const Document& record) {
  auto endpoints = record.data.value("endpoints", json::object());
  // Records written before named ports had the http endpoint alone.
  if (!endpoints.contains("http") && record.data.value("endpoint", json(nullptr)).is_object())
    endpoints["http"] = record.data["endpoint"];
  if (!endpoints.is_object() || endpoints.empty()) return;
  auto route = std::make_shared<Route>();
  route->owner = record.data.value("owner", "");
  if (auto http = endpoints.value("http", json(nullptr)); http.is_object()) {
    route->host = http.value("host", "");
    route->port = http.value("port", std::uint16_t{0});
  }
  if (auto grpc = endpoints.value("grpc", json(nullptr)); grpc.is_object()) {
    route->grpc_host = grpc.value("host", "");
    route->grpc_port = grpc.value("port", std::uint16_t{0});
  }
  route->last_used_ms = record.data.value("last_used_ms", std::int64_t{0});
  std::unique_lock guard(routes_mutex_);
  routes_[record.id] = std::move(route);
}

void Manager::forget(const std::string& id) {
  std::unique_lock guard(routes_mutex_);
  routes_.erase(id);
}

std::shared_ptr<Route> Manager::route(const std::string& id, const std::string& user) {
  std::shared_ptr<Route> found;
  {
    std::shared_lock guard(routes_mutex_);
    auto it = routes_.find(id);
    if (it == routes_.end() || it->second->owner != user) return nullptr;
    found = it->second;
  }
  found->last_used_ms = now_ms();
  return found;
}

std::int64_t Manager::last_used(const Document& record) {
  auto stored = record.data.value("last_used_ms", std::int64_t{0});
  std::shared_lock guard(routes_mutex_);
  auto it = routes_.find(record.id);
  return it == routes_.end() ? stored : std::max(stored, it->second->last_used_ms.load());
}

void Manager::check_alive(const std::string& id) {
  auto record = find(id);
  if (!record || record->data.value("state", "") != "running") return;
  auto container_id = record->data.value("container_id", "");
  std::string message;
  try {
    auto status = orchestrator_->inspect(container_id);
    if (status.state != WorkloadState::exited) return;
    message = fmt::format("exit code {}", status.exit_code.value_or(-1));
  } catch (const OrchestratorError& error) {
    if (error.code() != OrchestratorErrc::not_found) return;  // cannot tell now; the reaper looks again
    message = "its container is gone";
  }
  record_exit(*record, message);
}

void Manager::record_exit(const Document& given, const std::string& message) {
  auto lock = user_lock(given.data.value("owner", ""));
  std::lock_guard guard(*lock);
  auto fresh = store_->get(collection, given.id);
  if (!fresh || fresh->data.value("state", "") != "running" ||
      fresh->data.value("container_id", "") != given.data.value("container_id", ""))
    return;  // stopped or replaced meanwhile
  forget(given.id);
  auto container_id = fresh->data.value("container_id", "");
  try {
    orchestrator_->remove(container_id);
  } catch (const std::exception& error) {
    log_.warn("could not remove an exited container; the next reconcile does", {{"container_id", container_id},
                                                                                {"error", error.what()}});
  }
  auto record = update(*fresh, [&](json& data) {
    data["state"] = "failed";
    data["reason"] = "exited";
    data["message"] = message;
    data["failed_ms"] = now_ms();
  });
  {
    std::lock_guard slots(slots_mutex_);
    --slots_used_;
    mine_.erase(record.id);
  }
  ++stopped_;
  log_.warn("Container exited", {{"user_id", record.data.value("owner", "")},
                                 {"container_id", container_id},
                                 {"workload_id", record.id},
                                 {"message", message}});
  publish("workload.stopped", record, {{"reason", "failed"}, {"message", message}});
  publish("workload.failed", record, {{"reason", "exited"}, {"message", message}});
}

WorkloadCounters Manager::counters() const {
  std::lock_guard guard(slots_mutex_);
  return {slots_used_, spawned_.load(), stopped_.load()};
}

}  // namespace synthorg::workloads

namespace synthorg::workloads {

WorkloadEndpoint Manager::acquire(const std::string& owner, std::string_view port) {
  const bool known = port == "http" || port == "grpc";
  const auto configured = port == "http" ? options_.port : port == "grpc" ? options_.grpc_port : 0;
  if (!configured)
    throw WorkloadUnavailable("no_port",
                              known ? fmt::format("the workloads serve no {} port (set plugins.workloads.config.{})", port,
                                                  port == "grpc" ? "grpc_port" : "port")
                                    : fmt::format("'{}' is not a workload port; ask for http or grpc", port));
  // Another request, or another kernel, may be starting this owner's workload: wait for it as
  // long as a start of our own could take.
  auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout + std::chrono::seconds(5);
  for (;;) {
    Outcome outcome;
    try {
      outcome = get_or_create(owner);
    } catch (const WorkloadProblem& problem) {
      if (problem.code == "conflict" && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      throw WorkloadUnavailable(problem.code, problem.what(), problem.retry_after);
    } catch (const StoreError& error) {
      throw WorkloadUnavailable("store_unavailable", fmt::format("the database cannot be reached: {}", error.what()), 1);
    }
    const auto& data = outcome.record.data;
    if (data.value("state", "") == "running") {
      auto endpoints = data.value("endpoints", json::object());
      if (port == "http" && !endpoints.contains("http") && data.value("endpoint", json(nullptr)).is_object())
        endpoints["http"] = data["endpoint"];
      auto found = endpoints.value(std::string(port), json(nullptr));
      if (!found.is_object())
        throw WorkloadUnavailable("no_port", fmt::format("your workload {} was started without a {} port; stop it "
                                                         "(DELETE /api/v1/workloads/{}) and the next call starts one "
                                                         "that has it",
                                                         outcome.record.id, port, outcome.record.id));
      return {outcome.record.id, found.value("host", ""), found.value("port", std::uint16_t{0})};
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw WorkloadUnavailable("not_ready", "your workload is still starting; retry shortly", 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bool Manager::touch(const std::string& workload_id, const std::string& owner) {
  return route(workload_id, owner) != nullptr;
}

std::int64_t Manager::take_call(const std::string& owner) {
  if (!limiter_ || !settings_) return 0;
  auto per_minute = settings_->get("workloads", "requests_per_minute").value.get<double>();
  auto burst = settings_->get("workloads", "burst_size").value.get<double>();
  return limiter_->take(owner, per_minute, burst, RateLimiter::Clock::now());
}

void Manager::set_rate_limit(std::shared_ptr<RateLimiter> limiter, std::shared_ptr<Settings> settings) {
  limiter_ = std::move(limiter);
  settings_ = std::move(settings);
}

}  // namespace synthorg::workloads
