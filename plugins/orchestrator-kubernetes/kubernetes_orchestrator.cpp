#include "kubernetes_orchestrator.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace synthorg::orchestrator_kubernetes {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string text_at(const json& object, const char* a, const char* b) {
  auto outer = object.find(a);
  if (outer == object.end() || !outer->is_object()) return {};
  auto inner = outer->find(b);
  return inner != outer->end() && inner->is_string() ? inner->get<std::string>() : std::string();
}

std::string resource_version(const json& pod) { return text_at(pod, "metadata", "resourceVersion"); }
std::string uid_of(const json& pod) { return text_at(pod, "metadata", "uid"); }
std::string pod_ip(const json& pod) { return text_at(pod, "status", "podIP"); }

void check_id(const std::string& id) {
  if (id.empty()) throw OrchestratorError(OrchestratorErrc::invalid_spec, "the workload id is empty");
}

// Splits a byte stream into lines, keeping the unfinished tail for the next chunk.
class LineSplitter {
 public:
  template <class F>
  bool feed(std::string_view chunk, F&& on_line) {
    buffer_.append(chunk);
    std::size_t start = 0;
    for (auto newline = buffer_.find('\n', start); newline != std::string::npos;
         newline = buffer_.find('\n', start)) {
      std::string_view line(buffer_.data() + start, newline - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      start = newline + 1;
      if (!on_line(line)) {
        buffer_.erase(0, start);
        return false;
      }
    }
    buffer_.erase(0, start);
    return true;
  }
  template <class F>
  void flush(F&& on_line) {
    if (!buffer_.empty()) on_line(std::string_view(buffer_));
    buffer_.clear();
  }

 private:
  std::string buffer_;
};

std::int64_t whole_seconds_ceil(std::chrono::milliseconds ms) { return (ms.count() + 999) / 1000; }

}  // namespace

KubernetesOrchestrator::KubernetesOrchestrator(std::shared_ptr<ApiClient> api, OrchestratorOptions options,
                                               log::Logger log)
    : api_(std::move(api)), options_(std::move(options)), log_(std::move(log)) {}

// ---- helpers ------------------------------------------------------------------------------

std::optional<json> KubernetesOrchestrator::find_pod(const std::string& id) {
  auto response = api_->send("GET", api_->pod_path(id));
  if (response.status == 404) return std::nullopt;
  if (response.status < 200 || response.status > 299) api_->raise(response.status, response.body, "reading pod " + id);
  try {
    return json::parse(response.body);
  } catch (const json::exception& error) {
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "the API server answered reading pod " + id + " with something that is not JSON: " +
                                error.what());
  }
}

json KubernetesOrchestrator::get_managed(const std::string& id) {
  check_id(id);
  auto pod = find_pod(id);
  if (!pod)
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "no workload '" + id + "' in namespace " + api_->namespace_name());
  if (!is_managed(*pod))
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "pod '" + id + "' in namespace " + api_->namespace_name() +
                                " is not managed by SynthOrg (it has no synthorg.managed=true label); SynthOrg "
                                "leaves it alone");
  return *pod;
}

KubernetesOrchestrator::Follow KubernetesOrchestrator::follow(const std::string& name, json& last,
                                                              Clock::time_point deadline,
                                                              const std::function<bool(const json&)>& done,
                                                              std::stop_token stop) {
  std::string version = resource_version(last);
  const std::string what = "watching pod " + name;
  while (true) {
    if (done(last)) return Follow::done;
    auto now = Clock::now();
    if (now >= deadline) return Follow::timed_out;
    if (stop.stop_requested()) return Follow::cancelled;
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    // The server closes the watch a little after our own deadline, so that ours decides; and
    // never later than five minutes, so that a silent connection is renewed.
    auto server_seconds = std::min<std::int64_t>(whole_seconds_ceil(remaining) + 1, 300);
    std::string target = api_->pods_path() + "?fieldSelector=" + http::url_encode("metadata.name=" + name);
    if (!version.empty()) target += "&resourceVersion=" + http::url_encode(version);
    target += "&timeoutSeconds=" + std::to_string(server_seconds) + "&watch=true";

    std::optional<Follow> result;
    std::optional<json> error_status;
    LineSplitter lines;
    auto on_line = [&](std::string_view line) {
      if (line.empty()) return true;
      json event;
      try {
        event = json::parse(line);
      } catch (const json::exception&) {
        return true;  // a line we cannot read is skipped; the next event carries the full state
      }
      auto type = event.value("type", "");
      auto object = event.contains("object") ? event["object"] : json::object();
      if (type == "ERROR") {
        error_status = object;
        return false;
      }
      if (auto v = resource_version(object); !v.empty()) version = v;
      if (type == "BOOKMARK") return true;
      last = object;
      if (type == "DELETED") {
        result = Follow::deleted;
        return false;
      }
      if (done(object)) {
        result = Follow::done;
        return false;
      }
      return true;
    };
    // Our own bound as well, in case the server goes silent; renewed until the deadline.
    auto client_timeout = std::min<std::chrono::milliseconds>(remaining + 50ms, std::chrono::seconds(server_seconds + 5));
    auto end = api_->stream(
        target, what, [&](std::string_view chunk) { return lines.feed(chunk, on_line); }, stop, client_timeout);
    if (result) return *result;
    if (error_status) {
      int code = error_status->value("code", 0);
      if (code != 410) api_->raise(code ? code : 500, error_status->dump(), what);
      // 410 Gone: our resourceVersion is too old for the watch cache. Start again from now.
      auto fresh = find_pod(name);
      if (!fresh) return Follow::deleted;
      last = *fresh;
      version = resource_version(last);
      continue;
    }
    if (end == StreamEnd::cancelled) return Follow::cancelled;
    // Otherwise the watch ended (the server's timeout, or ours): go round and watch again from
    // `version`; the top of the loop decides whether the deadline has passed.
  }
}

bool KubernetesOrchestrator::delete_pod(const std::string& name, std::int64_t grace_seconds, const std::string& uid) {
  json options = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"gracePeriodSeconds", std::max<std::int64_t>(grace_seconds, 1)}};
  if (!uid.empty()) options["preconditions"] = {{"uid", uid}};
  auto response = api_->send("DELETE", api_->pod_path(name), options.dump());
  if (response.status == 404) return false;
  if (response.status < 200 || response.status > 299)
    api_->raise(response.status, response.body, "deleting pod " + name);
  return true;
}

void KubernetesOrchestrator::cleanup_after_failed_spawn(const std::string& name) noexcept {
  try {
    delete_pod(name, 1, {});
  } catch (const std::exception& error) {
    log_.warn("Could not delete a pod that failed to start; it keeps the synthorg.managed label and can be removed "
              "later",
              {{"pod", name}, {"error", error.what()}});
  }
}

std::vector<std::string> KubernetesOrchestrator::read_log_lines(const std::string& name, std::size_t tail) {
  std::string target = api_->pod_path(name) + "/log?container=" + container_name;
  if (tail > 0) target += "&tailLines=" + std::to_string(tail);
  std::vector<std::string> out;
  LineSplitter lines;
  auto keep = [&](std::string_view line) {
    out.emplace_back(line);
    return true;
  };
  api_->stream(target, "reading the log of pod " + name, [&](std::string_view chunk) { return lines.feed(chunk, keep); },
               {}, std::chrono::seconds(30));
  lines.flush(keep);
  return out;
}

// ---- tombstones: what stop() leaves of a deleted pod ----------------------------------------

std::optional<KubernetesOrchestrator::Tombstone> KubernetesOrchestrator::tombstone(const std::string& id) {
  std::lock_guard lock(tombstones_mutex_);
  auto it = tombstones_.find(id);
  if (it == tombstones_.end()) return std::nullopt;
  return it->second;
}

void KubernetesOrchestrator::bury(Tombstone stone) {
  std::lock_guard lock(tombstones_mutex_);
  auto id = stone.status.id;
  if (tombstones_.insert_or_assign(id, std::move(stone)).second) tombstone_order_.push_back(id);
  // Bounded: the oldest go first (they read as removed, as after a kernel restart).
  while (tombstones_.size() > options_.max_tombstones && !tombstone_order_.empty()) {
    tombstones_.erase(tombstone_order_.front());
    tombstone_order_.pop_front();
  }
}

bool KubernetesOrchestrator::exhume(const std::string& id) {
  std::lock_guard lock(tombstones_mutex_);
  if (tombstones_.erase(id) == 0) return false;
  tombstone_order_.erase(std::remove(tombstone_order_.begin(), tombstone_order_.end(), id), tombstone_order_.end());
  return true;
}

// ---- the contract -----------------------------------------------------------------------------

WorkloadStatus KubernetesOrchestrator::spawn(const WorkloadSpec& spec) {
  orchestrator::check_spec(spec);
  auto name = pod_name_for(spec.name);
  auto pod = build_pod(spec, name, options_.pod);  // throws invalid_spec before touching the API
  json last = api_->call("POST", api_->pods_path(), "creating pod " + name, pod.dump());
  log_.info("Pod created", {{"pod", name}, {"namespace", api_->namespace_name()}, {"image", spec.image}});

  const auto deadline = Clock::now() + options_.spawn_timeout;
  std::optional<Clock::time_point> unschedulable_since;
  std::optional<StartFailure> failure;
  auto started = [&](const json& current) {
    auto state = to_status(current).state;
    if (state == WorkloadState::running || state == WorkloadState::exited) return true;
    if ((failure = start_failure(current))) return true;
    std::string why;
    if (unschedulable(current, &why)) {
      auto now = Clock::now();
      if (!unschedulable_since) unschedulable_since = now;
      if (now - *unschedulable_since >= options_.unschedulable_timeout) {
        failure = StartFailure{OrchestratorErrc::capacity,
                               "no node has room for the workload (Unschedulable: " + why +
                                   "); free resources, lower its requests, or raise "
                                   "plugins.orchestrator-kubernetes.config.unschedulable_timeout for a cluster "
                                   "autoscaler to add nodes"};
        return true;
      }
    }
    return false;
  };

  try {
    while (true) {
      auto until = deadline;
      if (unschedulable_since) until = std::min(until, *unschedulable_since + options_.unschedulable_timeout + 10ms);
      auto result = follow(name, last, until, started);
      if (result == Follow::done) break;
      if (result == Follow::deleted)
        throw OrchestratorError(OrchestratorErrc::failed,
                                "pod " + name + " was deleted while it was starting (by someone else, or evicted)");
      if (Clock::now() >= deadline) {
        auto status = to_status(last);
        throw OrchestratorError(
            OrchestratorErrc::unavailable,
            "pod " + name + " did not start within " + std::to_string(options_.spawn_timeout.count() / 1000) +
                " s (still " + std::string(to_string(status.state)) +
                (status.message.empty() ? "" : ": " + status.message) +
                "); raise plugins.orchestrator-kubernetes.config.spawn_timeout for slow image pulls");
      }
    }
  } catch (...) {
    cleanup_after_failed_spawn(name);
    throw;
  }
  if (failure) {
    cleanup_after_failed_spawn(name);
    throw OrchestratorError(failure->code, "pod " + name + " for image '" + spec.image + "': " + failure->message);
  }
  return to_status(last);
}

WorkloadStatus KubernetesOrchestrator::inspect(const std::string& id) {
  if (auto stone = tombstone(id)) return stone->status;
  return to_status(get_managed(id));
}

std::vector<WorkloadStatus> KubernetesOrchestrator::list(const std::map<std::string, std::string>& labels) {
  std::string selector = std::string(orchestrator::managed_label) + "=true";
  for (const auto& [key, value] : labels) {
    // Checked, so that a value can never widen the selector (",", "!=", " in (...)").
    if (!orchestrator::valid_label_key(key))
      throw OrchestratorError(OrchestratorErrc::invalid_spec, "label key '" + key + "' is not a valid label key");
    if (!orchestrator::valid_label_value(value))
      throw OrchestratorError(OrchestratorErrc::invalid_spec, "label " + key + "='" + value + "' is not a valid label value");
    if (key == orchestrator::managed_label) {
      if (value != "true") return {};
      continue;
    }
    selector += "," + key + "=" + value;
  }
  auto answer = api_->call("GET", api_->pods_path() + "?labelSelector=" + http::url_encode(selector), "listing pods");
  std::vector<WorkloadStatus> out;
  std::map<std::string, bool> live;
  if (answer.is_object() && answer.contains("items") && answer["items"].is_array())
    for (const auto& pod : answer["items"]) {
      if (!is_managed(pod)) continue;  // never trust a selector alone
      out.push_back(to_status(pod));
      live[out.back().id] = true;
    }
  std::lock_guard lock(tombstones_mutex_);
  for (const auto& [id, stone] : tombstones_) {
    if (live.count(id)) continue;
    bool matches = std::all_of(labels.begin(), labels.end(), [&](const auto& wanted) {
      auto it = stone.status.labels.find(wanted.first);
      return it != stone.status.labels.end() && it->second == wanted.second;
    });
    if (matches) out.push_back(stone.status);
  }
  return out;
}

void KubernetesOrchestrator::stop(const std::string& id, std::chrono::seconds grace) {
  if (tombstone(id)) return;
  auto pod = get_managed(id);
  if (to_status(pod).state == WorkloadState::exited) return;  // ended by itself: nothing to stop

  // The log dies with the pod: keep its last lines for logs() on the tombstone. A snapshot now,
  // and a follower that also catches what the workload writes while it shuts down.
  std::vector<std::string> snapshot;
  try {
    snapshot = read_log_lines(id, options_.tombstone_log_lines);
  } catch (const std::exception&) {
    // Pending (no log yet) or already going: the follower may still get it.
  }
  std::vector<std::string> followed;
  bool followed_ok = false;
  std::mutex attach_mutex;
  std::condition_variable attach_changed;
  bool attached = false;  // the follower has had its first bytes (or has given up)
  auto mark_attached = [&] {
    std::lock_guard lock(attach_mutex);
    attached = true;
    attach_changed.notify_all();
  };
  // A helper thread only for the length of this call: the follow stream has to run while the
  // deletion below waits for the pod to go.
  std::jthread follower([&](std::stop_token stop) {
    try {
      LineSplitter lines;
      auto keep = [&](std::string_view line) {
        followed.emplace_back(line);
        if (followed.size() > options_.tombstone_log_lines) followed.erase(followed.begin());
        return true;
      };
      std::string target = api_->pod_path(id) + "/log?container=" + container_name +
                           "&follow=true&tailLines=" + std::to_string(options_.tombstone_log_lines);
      auto end = api_->stream(target, "following the log of pod " + id,
                              [&](std::string_view chunk) {
                                mark_attached();
                                return lines.feed(chunk, keep);
                              },
                              stop, 0ms);
      lines.flush(keep);
      followed_ok = end == StreamEnd::finished;
    } catch (const std::exception&) {
    }
    mark_attached();
  });
  {
    // The follower must be reading before the pod is asked to stop, or what the workload
    // writes while it shuts down is lost with the pod. Its first bytes are the lines already
    // written; a workload that wrote none gets a short moment only.
    std::unique_lock lock(attach_mutex);
    attach_changed.wait_for(lock, snapshot.empty() ? 250ms : 2s, [&] { return attached; });
  }

  // Followed from the state read before the DELETE, so that neither a graceful deletion's last
  // changes nor an immediate one's DELETED event can fall before the watch starts.
  json last = pod;
  Follow result = Follow::deleted;
  if (delete_pod(id, grace.count(), uid_of(pod)))
    result = follow(id, last, Clock::now() + grace + options_.deletion_margin, [](const json&) { return false; });
  follower.request_stop();
  follower.join();
  if (result == Follow::timed_out)
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "pod " + id + " is still terminating " +
                                std::to_string((grace + options_.deletion_margin).count() / 1000) +
                                " s after it was asked to stop; its node may be unreachable. It will be "
                                "removed when the node answers");

  Tombstone stone;
  stone.status = to_status(last);
  stone.status.id = id;
  stone.status.state = WorkloadState::exited;
  if (!stone.status.exit_code && stone.status.message.empty())
    stone.status.message = "stopped: the pod was deleted before its container reported an exit code";
  stone.log_lines = followed_ok && followed.size() >= snapshot.size() ? std::move(followed) : std::move(snapshot);
  log_.info("Pod stopped", {{"pod", id},
                            {"exit_code", stone.status.exit_code ? *stone.status.exit_code : -1},
                            {"grace_seconds", static_cast<std::int64_t>(grace.count())}});
  bury(std::move(stone));
}

void KubernetesOrchestrator::remove(const std::string& id) {
  check_id(id);
  if (exhume(id)) return;  // stopped earlier: the pod is gone already
  auto pod = find_pod(id);
  if (!pod) return;
  if (!is_managed(*pod))
    throw OrchestratorError(OrchestratorErrc::not_found,
                            "pod '" + id + "' in namespace " + api_->namespace_name() +
                                " is not managed by SynthOrg (it has no synthorg.managed=true label); SynthOrg "
                                "leaves it alone");
  json last = *pod;  // followed from before the DELETE, as in stop()
  if (!delete_pod(id, 1, uid_of(*pod))) return;
  auto result = follow(id, last, Clock::now() + 1s + options_.deletion_margin, [](const json&) { return false; });
  if (result == Follow::timed_out)
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "pod " + id + " is still terminating after it was deleted; its node may be unreachable");
  log_.info("Pod removed", {{"pod", id}});
}

WaitResult KubernetesOrchestrator::wait(const std::string& id, std::chrono::milliseconds timeout) {
  if (auto stone = tombstone(id)) return {true, stone->status.exit_code};
  auto last = get_managed(id);
  auto exited = [](const json& pod) { return to_status(pod).state == WorkloadState::exited; };
  auto result = follow(id, last, Clock::now() + timeout, exited);
  switch (result) {
    case Follow::done: return {true, to_status(last).exit_code};
    case Follow::deleted:
      // Stopped meanwhile (by this process: its tombstone knows more) or deleted by someone else.
      if (auto stone = tombstone(id)) return {true, stone->status.exit_code};
      return {true, to_status(last).exit_code};
    case Follow::timed_out:
    case Follow::cancelled: break;
  }
  return {false, std::nullopt};
}

void KubernetesOrchestrator::logs(const std::string& id, const LogOptions& options, const LogSink& sink) {
  if (auto stone = tombstone(id)) {
    const auto& lines = stone->log_lines;
    std::size_t first = options.tail == 0 || options.tail >= lines.size() ? 0 : lines.size() - options.tail;
    for (std::size_t i = first; i < lines.size(); ++i)
      if (!sink(LogStream::stdout_stream, lines[i])) return;
    return;
  }
  auto pod = get_managed(id);
  if (to_status(pod).state == WorkloadState::pending) {
    if (!options.follow) return;  // nothing written yet
    auto started = [](const json& current) {
      return to_status(current).state != WorkloadState::pending || start_failure(current).has_value();
    };
    auto result = follow(id, pod, Clock::time_point::max(), started, options.stop);
    if (result != Follow::done || to_status(pod).state == WorkloadState::pending) return;
  }
  std::string target = api_->pod_path(id) + "/log?container=" + container_name;
  if (options.follow) target += "&follow=true";
  if (options.tail > 0) target += "&tailLines=" + std::to_string(options.tail);
  // Kubernetes keeps one log per container with stdout and stderr merged: every line is
  // reported as stdout_stream.
  LineSplitter lines;
  bool wanted = true;
  auto deliver = [&](std::string_view line) {
    wanted = sink(LogStream::stdout_stream, line);
    return wanted;
  };
  auto end = api_->stream(target, "reading the log of pod " + id,
                          [&](std::string_view chunk) { return lines.feed(chunk, deliver); }, options.stop,
                          options.follow ? 0ms : std::chrono::milliseconds(60s));
  if (end == StreamEnd::timed_out && !options.follow)
    throw OrchestratorError(OrchestratorErrc::unavailable, "reading the log of pod " + id + " timed out");
  if (wanted && end == StreamEnd::finished) lines.flush(deliver);
}

Endpoint KubernetesOrchestrator::endpoint(const std::string& id, std::uint16_t container_port) {
  if (tombstone(id))
    throw OrchestratorError(OrchestratorErrc::failed, "workload " + id + " has exited; it has no endpoint");
  auto pod = get_managed(id);
  if (!declares_port(pod, container_port))
    throw OrchestratorError(OrchestratorErrc::invalid_spec,
                            "port " + std::to_string(container_port) + " was not requested in the spec of workload " +
                                id + "; add it to WorkloadSpec.ports");
  auto status = to_status(pod);
  if (status.state != WorkloadState::running)
    throw OrchestratorError(OrchestratorErrc::failed, "workload " + id + " is " + std::string(to_string(status.state)) +
                                                          ", not running; it has no endpoint");
  auto ip = pod_ip(pod);
  if (ip.empty())
    throw OrchestratorError(OrchestratorErrc::unavailable, "pod " + id + " runs but has no pod IP yet; retry shortly");
  return {ip, container_port};
}

OrchestratorHealth KubernetesOrchestrator::health() {
  OrchestratorHealth health;
  health.info = {{"backend", "kubernetes"},
                 {"server", api_->describe()},
                 {"namespace", api_->namespace_name()},
                 {"config", api_->source()},
                 // The logs API merges a container's stdout and stderr (see logs()).
                 {"log_streams", "combined"}};
  try {
    auto resources = api_->call("GET", "/api/v1/", "reading the core API's resources", {}, options_.health_timeout);
    health.info["api_version"] = resources.is_object() ? resources.value("groupVersion", "v1") : "v1";
    // Reachable is not enough: the service account must be allowed to manage pods here.
    api_->call("GET", api_->pods_path() + "?labelSelector=" + http::url_encode("synthorg.managed=true") + "&limit=1",
               "listing pods in namespace " + api_->namespace_name(), {}, options_.health_timeout);
    health.up = true;
    health.detail = "the API server answers and pods may be listed in namespace " + api_->namespace_name();
  } catch (const std::exception& error) {
    health.up = false;
    health.detail = error.what();
  }
  return health;
}

}  // namespace synthorg::orchestrator_kubernetes
