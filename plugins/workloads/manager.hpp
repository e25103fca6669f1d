// The workloads themselves: records in the Store, containers through the Orchestrator, the
// per-user get-or-create, the idle reaper and the start-up reconciliation. Every method here
// blocks (Store and Orchestrator calls): call from the blocking pool or the plugin's start/stop.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/log.hpp"
#include "synthorg/plugin.hpp"
#include "rate_limit.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/services/store.hpp"
#include "synthorg/services/workloads.hpp"

namespace synthorg::workloads {

inline constexpr std::string_view collection = "workloads";

struct Options {
  std::string image;
  std::vector<std::string> command;
  std::uint16_t port = 0;       // "http": proxied at /api/v1/workloads/{id}/proxy/
  std::uint16_t grpc_port = 0;  // "grpc": the Flight SQL gateway's calls
  std::map<std::string, std::string> env;
  std::chrono::milliseconds idle_timeout{5 * 60 * 1000};
  std::int64_t memory_bytes = 0;
  double cpus = 0;
  std::int64_t pids_limit = 0;
  std::int64_t max_per_host = 100;
  std::string network;
  std::chrono::milliseconds reap_interval{60 * 1000};
  std::chrono::milliseconds failure_cooldown{30 * 1000};
  std::chrono::milliseconds ready_timeout{30 * 1000};  // from start to the first HTTP answer on `port`
  std::chrono::seconds stop_grace{5};
  bool read_only_root = true;
  bool drop_all_capabilities = true;
  bool no_new_privileges = true;
  std::string user = "65534:65534";
  std::string tmpfs_options = "rw,noexec,nosuid,nodev,size=64m";
  bool stop_on_shutdown = false;
  std::string instance = "default";
};

// What a route answers with when a call cannot be served; the routes turn it into problem+json.
class WorkloadProblem : public std::runtime_error {
 public:
  WorkloadProblem(int status, std::string code, const std::string& detail, nlohmann::json extra = nlohmann::json::object(),
                  std::int64_t retry_after = 0)
      : std::runtime_error(detail), status(status), code(std::move(code)), extra(std::move(extra)),
        retry_after(retry_after) {}
  int status;
  std::string code;
  nlohmann::json extra;
  std::int64_t retry_after;  // seconds; 0: no Retry-After
};

struct Outcome {
  Document record;
  bool created = false;
};

// Where the proxy reaches a running workload. Kept in memory so that a warm proxied request
// needs neither the Store nor the orchestrator; its use is written back by the reaper's rounds.
struct Route {
  std::string owner;
  std::string host;  // the http port's endpoint; port 0 when it has none
  std::uint16_t port = 0;
  std::string grpc_host;  // the grpc port's; grpc_port 0 when it has none
  std::uint16_t grpc_port = 0;
  std::atomic<std::int64_t> last_used_ms{0};
};

class Manager final : public Workloads {
 public:
  Manager(Options options, std::shared_ptr<Store> store, std::shared_ptr<Orchestrator> orchestrator, ScopedBus& bus,
          log::Logger log);

  // Creates the collection; adopts, removes and marks as the backend and the Store disagree.
  void ensure_collection();
  void reconcile();
  // reconcile() once it has succeeded: a backend unreachable at start is reconciled later, by
  // the reaper's rounds, instead of keeping the kernel down.
  bool reconciled() const noexcept { return reconciled_; }

  // The caller's workload, started when it has none (one per user, whatever the concurrency).
  // Throws WorkloadProblem for capacity, orchestrator failures and a recent failed spawn.
  Outcome get_or_create(const std::string& user);
  std::optional<Document> find(const std::string& id);
  // owner empty: everybody's.
  Page list(const std::string& owner, std::size_t limit, const std::string& cursor);
  // Stops and removes its container; idempotent. idle_only: only if still idle when locked.
  Document stop(const Document& record, const std::string& reason, bool idle_only = false);
  Document touch(const Document& record);
  // The running workload `id` of `user` when this process knows it (null otherwise: ask
  // get_or_create); marks it used now. Never blocks.
  std::shared_ptr<Route> route(const std::string& id, const std::string& user);
  // The proxy could not reach workload `id`: when its container is gone or exited, the record
  // says so (failed, reason exited) and its slot is freed.
  void check_alive(const std::string& id) override;
  // Stops every running workload idle longer than idle_timeout, and records the ones whose
  // container died; returns how many were stopped as idle.
  std::size_t reap();
  // On plugin stop, when configured to: every running one, reason shutdown.
  void stop_all(const std::string& reason);

  WorkloadCounters counters() const override;
  WorkloadEndpoint acquire(const std::string& owner, std::string_view port) override;
  bool touch(const std::string& workload_id, const std::string& owner) override;
  std::int64_t take_call(const std::string& owner) override;
  // take_call's limit: the routes' token buckets, sized by the workloads.* settings.
  void set_rate_limit(std::shared_ptr<RateLimiter> limiter, std::shared_ptr<Settings> settings);
  const Options& options() const noexcept { return options_; }

  // The public form of a record.
  static nlohmann::json to_json(const Document& record);
  // synthorg.owner label: a hash of the subject, safe as a label value on every backend.
  static std::string owner_label(const std::string& subject);

 private:
  std::shared_ptr<std::mutex> user_lock(const std::string& user);
  Document spawn(const std::string& user);
  Document update(const Document& record, const std::function<void(nlohmann::json&)>& change);
  std::vector<Document> active_records();
  void publish(const std::string& topic, const Document& record, nlohmann::json extra = nlohmann::json::object());
  std::map<std::string, std::string> selector() const;
  // Waits for a just started workload to answer: an HTTP answer on its http port, else a
  // connection accepted on its grpc port. Throws when none comes in time.
  void wait_ready(const nlohmann::json& endpoints);
  // Where the container's ports are reached: {"http": {host, port}, "grpc": {...}}, each present
  // when configured.
  nlohmann::json endpoints_of(const std::string& container_id);
  // Its container died on its own: failed with reason exited (the cool-down stops a restart
  // storm), slot freed. Under the owner's lock.
  void record_exit(const Document& record, const std::string& message);
  void remember(const Document& record);
  void forget(const std::string& id);
  // The later of the stored last use and the proxy's, which is only in memory.
  std::int64_t last_used(const Document& record);

  Options options_;
  std::shared_ptr<Store> store_;
  std::shared_ptr<Orchestrator> orchestrator_;
  ScopedBus& bus_;
  log::Logger log_;
  std::mutex locks_mutex_;
  std::map<std::string, std::weak_ptr<std::mutex>> locks_;
  mutable std::mutex slots_mutex_;
  std::int64_t slots_used_ = 0;  // starting + running, for max_per_host
  // Records this process started or adopted and has not stopped: a late reconcile leaves them be.
  std::set<std::string> mine_;
  std::atomic<std::int64_t> spawned_{0}, stopped_{0};
  std::shared_mutex routes_mutex_;
  std::map<std::string, std::shared_ptr<Route>> routes_;
  std::atomic<bool> reconciled_{false};
  std::shared_ptr<RateLimiter> limiter_;
  std::shared_ptr<Settings> settings_;
};

std::int64_t now_ms();

}  // namespace synthorg::workloads
