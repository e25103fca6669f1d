#include "process_orchestrator.hpp"

#include <fcntl.h>
#include <signal.h>
extern "C" {
#include <sys/pidfd.h>  // glibc 2.36 declares pidfd_open without C linkage for C++
}
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

#include <Poco/Exception.h>
#include <Poco/Pipe.h>
#include <Poco/Process.h>

namespace synthorg::orchestrator_process {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t max_line_bytes = 16 * 1024;
// After the process exits, output still in its pipes is read; a grandchild that escaped the
// process group may hold them open, so a follower gives up waiting for end-of-file after this.
constexpr auto straggler_grace = 2s;
// How long SIGKILL may take to be noticed before a call reports the process as stuck.
constexpr auto kill_patience = 10s;

[[noreturn]] void fail(OrchestratorErrc code, const std::string& message) { throw OrchestratorError(code, message); }

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(millis));
  return text;
}

// A descriptor of our own (close-on-exec) for one end of a Poco pipe, which keeps its own.
int take_read_end(Poco::Pipe& pipe) {
  int fd = ::fcntl(pipe.readHandle(), F_DUPFD_CLOEXEC, 0);
  pipe.close(Poco::Pipe::CLOSE_READ);
  if (fd < 0) fail(OrchestratorErrc::failed, std::string("cannot keep the workload's output pipe: ") + std::strerror(errno));
  return fd;
}

// The shell convention Docker follows: 128 + the signal for a process killed by one.
int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

ProcessOrchestrator::ProcessOrchestrator(Limits limits, HostTools tools, boost::asio::io_context& io, log::Logger log)
    : limits_(limits), tools_(std::move(tools)), io_(io), log_(std::move(log)) {
  // Start the loopback addresses somewhere random, so two processes on one host (two kits, a
  // kernel and a kit) rarely pick the same ones.
  next_host_ = static_cast<std::uint32_t>(std::random_device{}() % (256 * 254));
  if (!limits_.state_dir.empty()) {
    try {
      records_.emplace(limits_.state_dir);
    } catch (const std::exception& error) {
      // Workloads still run; only a kernel killed without a stop would leave them behind.
      records_problem_ = error.what();
      log_.warn("Workloads are not recorded, so a kernel killed without a stop leaves them running",
                {{"error", records_problem_}});
    }
  }
}

std::size_t ProcessOrchestrator::stop_orphans() {
  if (!records_) return 0;
  std::size_t dropped = 0;
  auto orphans = records_->orphans(dropped);
  struct Target {
    WorkloadRecords::Orphan orphan;
    int pidfd = -1;
    bool exited = false;
  };
  std::vector<Target> targets;
  for (auto& orphan : orphans) {
    int pidfd = ::pidfd_open(orphan.process.pid, 0);
    // Looked at again once the pidfd holds the process: had it ended and its pid been reused in
    // between, the start time would differ and the stranger is left alone.
    if (pidfd < 0 || !still_running(orphan.process)) {
      if (pidfd >= 0) ::close(pidfd);
      records_->remove(orphan.id);
      ++dropped;
      continue;
    }
    ::kill(-orphan.process.pid, SIGTERM);  // its process group, as stop() does
    targets.push_back({std::move(orphan), pidfd});
  }
  // Every target's exit, up to `limit`; a pidfd is readable once its process has ended.
  auto await = [&](std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    for (;;) {
      std::vector<pollfd> waiting;
      for (auto& target : targets)
        if (!target.exited) waiting.push_back({target.pidfd, POLLIN, 0});
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (waiting.empty() || left <= 0) return;
      if (::poll(waiting.data(), waiting.size(), static_cast<int>(left)) < 0 && errno != EINTR) return;
      for (auto& target : targets)
        for (const auto& polled : waiting)
          if (polled.fd == target.pidfd && (polled.revents & POLLIN)) target.exited = true;
    }
  };
  await(2000ms);
  for (auto& target : targets)
    if (!target.exited) ::kill(-target.orphan.process.pid, SIGKILL);
  await(std::chrono::duration_cast<std::chrono::milliseconds>(kill_patience));
  std::size_t stopped = 0;
  for (auto& target : targets) {
    ::close(target.pidfd);
    if (!target.exited) {
      log_.error("An orphaned workload process did not exit after SIGKILL; its record is kept for the next start",
                 {{"workload_id", target.orphan.id}, {"pid", target.orphan.process.pid}});
      continue;
    }
    records_->remove(target.orphan.id);
    ++stopped;
    log_.warn("Orphaned workload process stopped (left running by a kernel that did not stop cleanly)",
              {{"workload_id", target.orphan.id}, {"name", target.orphan.name}, {"pid", target.orphan.process.pid}});
  }
  if (stopped || dropped)
    log_.info("Workload records from a previous run checked",
              {{"orphans_stopped", stopped}, {"records_dropped", dropped}, {"state_dir", records_->dir().string()}});
  return stopped;
}

ProcessOrchestrator::~ProcessOrchestrator() { shutdown(); }

void ProcessOrchestrator::shutdown() {
  Lock lock(mutex_);
  if (closed_) return;
  closed_ = true;
  for (auto& [id, workload] : workloads_) {
    if (workload->state != WorkloadState::exited) {
      signal(*workload, SIGKILL);
      reap(*workload, true);
    }
    workload->removed = true;
    close_descriptors(*workload);
  }
  if (!workloads_.empty()) log_.info("Stopped every workload", {{"count", workloads_.size()}});
  workloads_.clear();
  listen_hosts_.clear();
  changed_.notify_all();
}

ProcessOrchestrator::WorkloadPtr ProcessOrchestrator::find(const Lock&, const std::string& id) const {
  if (closed_) fail(OrchestratorErrc::unavailable, "the process orchestrator has stopped");
  auto found = workloads_.find(id);
  if (found == workloads_.end()) fail(OrchestratorErrc::not_found, "no workload '" + id + "' in the process orchestrator");
  return found->second;
}

std::string ProcessOrchestrator::allocate_listen_host() {
  for (std::uint32_t tried = 0; tried < 256 * 254; ++tried) {
    auto index = next_host_++ % (256 * 254);
    auto host = "127.77." + std::to_string(index / 254) + "." + std::to_string(index % 254 + 1);
    if (listen_hosts_.insert(host).second) return host;
  }
  fail(OrchestratorErrc::capacity, "every loopback address in 127.77.0.0/16 is taken");
}

void ProcessOrchestrator::note_once(const std::string& key, const std::string& message, log::Level level) {
  if (noted_.insert(key).second) log_.log(level, message, {{"backend", "process"}});
}

WorkloadStatus ProcessOrchestrator::spawn(const WorkloadSpec& requested) {
  orchestrator::check_spec(requested);
  WorkloadSpec spec = requested;
  if (spec.command.empty()) {
    auto stands_in = limits_.images.find(spec.image);
    if (stands_in == limits_.images.end())
      fail(OrchestratorErrc::invalid_spec,
           "invalid workload spec: command is empty and image '" + spec.image +
               "' has no command in orchestrator-process's `images`: the process backend runs no images; give a "
               "command, or map the image to one");
    spec.command = stands_in->second;
  }

  if (tools_.setsid.empty() || tools_.env.empty())
    fail(OrchestratorErrc::unavailable,
         "this host has no setsid (util-linux) or env (coreutils) in /usr/bin, so the process orchestrator cannot "
         "start workloads; install them, mount the Docker socket or select another orchestrator");
  Lock lock(mutex_);
  if (closed_) fail(OrchestratorErrc::unavailable, "the process orchestrator has stopped");
  if (workloads_.size() >= limits_.max_workloads)
    fail(OrchestratorErrc::capacity, "the process orchestrator holds " + std::to_string(workloads_.size()) +
                                         " workloads already (max_workloads); remove some first");
  auto listen_host = allocate_listen_host();
  LaunchPlan plan;
  try {
    plan = plan_launch(spec, tools_, listen_host);
  } catch (...) {
    listen_hosts_.erase(listen_host);
    throw;
  }
  // What a process cannot honour is accepted (a spec is written for any backend) and said once.
  if (spec.read_only_root || !spec.tmpfs.empty() || !spec.mounts.empty() || !spec.network.empty() || spec.gpu.count != 0 ||
      spec.cpus > 0)
    note_once("not_isolated",
              "The process backend runs workloads on the host: read_only_root, tmpfs, mounts, network, gpu and cpus "
              "are accepted but not applied",
              log::Level::info);
  for (const auto& skipped : plan.skipped)
    note_once("skipped:" + skipped,
              "The process backend cannot apply " + skipped +
                  " here (it needs root and util-linux's setpriv/prlimit; pids_limit also a user to switch to); "
                  "workloads run without it",
              log::Level::warn);

  auto workload = std::make_shared<Workload>(limits_.log_buffer_bytes);
  workload->id = "proc-" + std::to_string(++sequence_) + "-" + std::to_string(::getpid());
  workload->spec = spec;
  workload->name = (spec.name.empty() ? std::string("workload") : spec.name) + "-" + std::to_string(sequence_);
  workload->listen_host = listen_host;
  workload->created_at = now_rfc3339();

  // The environment goes through Poco, on top of the host's (which `env -u` then drops), so its
  // values never appear on a command line.
  Poco::Pipe in, out, err;
  try {
    auto handle = Poco::Process::launch(plan.program, plan.args, "/", &in, &out, &err, plan.env);
    workload->pid = handle.id();
  } catch (const Poco::Exception& error) {
    listen_hosts_.erase(listen_host);
    fail(OrchestratorErrc::failed, "cannot start the workload's process: " + error.displayText());
  }
  in.close();  // stdin reads end-of-file, as in a container started without -i
  workload->plan = std::move(plan);
  try {
    workload->out = std::make_unique<Output>(io_, take_read_end(out), max_line_bytes);
    workload->err = std::make_unique<Output>(io_, take_read_end(err), max_line_bytes);
    // The exit is noticed through a pidfd on the io_context: no thread waits for it.
    int pidfd = ::pidfd_open(workload->pid, 0);
    if (pidfd < 0)
      fail(OrchestratorErrc::failed, std::string("pidfd_open: ") + std::strerror(errno) + " (Linux 5.3 or later is needed)");
    ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    workload->exit_watch = std::make_unique<boost::asio::posix::stream_descriptor>(io_, pidfd);
    // A workload that could not be recorded would outlive a crashed kernel unseen.
    if (records_) {
      try {
        records_->add(workload->id, workload->name, workload->pid);
      } catch (const std::exception& error) {
        fail(OrchestratorErrc::failed, std::string("cannot start the workload: ") + error.what());
      }
    }
  } catch (...) {
    // Without its pipes, its pidfd or its record the workload could not be watched: do not
    // leave it behind.
    signal(*workload, SIGKILL);
    reap(*workload, true);
    close_descriptors(*workload);
    listen_hosts_.erase(listen_host);
    throw;
  }
  workloads_[workload->id] = workload;
  read_output(workload, *workload->out, LogStream::stdout_stream);
  read_output(workload, *workload->err, LogStream::stderr_stream);
  watch_exit(workload);
  log_.debug("Workload started", {{"id", workload->id}, {"pid", workload->pid}, {"listen_host", listen_host}});
  return status_of(*workload);
}

// Called with the mutex held (from spawn, then from its own completion handlers).
void ProcessOrchestrator::read_output(const WorkloadPtr& workload, Output& output, LogStream stream) {
  output.pipe.async_read_some(
      boost::asio::buffer(output.buffer),
      [self = shared_from_this(), workload, &output, stream](const boost::system::error_code& error, std::size_t size) {
        Lock lock(self->mutex_);
        if (workload->removed) return;  // the descriptors are closed, `output` may be gone
        auto emit = [&](std::string line) { workload->logs.append(stream, std::move(line)); };
        if (size > 0) output.lines.feed(std::string_view(output.buffer.data(), size), emit);
        if (error) {
          output.lines.finish(emit);
          output.open = false;
          boost::system::error_code ignored;
          output.pipe.close(ignored);
        } else {
          self->read_output(workload, output, stream);
        }
        self->changed_.notify_all();
      });
}

void ProcessOrchestrator::watch_exit(const WorkloadPtr& workload) {
  workload->exit_watch->async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [self = shared_from_this(), workload](const boost::system::error_code& error) {
        Lock lock(self->mutex_);
        if (workload->removed || workload->state == WorkloadState::exited) return;
        if (error) return;  // cancelled: shutdown reaps
        if (!self->reap(*workload, false)) {
          self->watch_exit(workload);  // woken early: keep watching
          return;
        }
        self->changed_.notify_all();
      });
}

bool ProcessOrchestrator::reap(Workload& workload, bool block) {
  if (workload.state == WorkloadState::exited) return true;
  // Look without reaping first: while the process is a zombie its pid (its group's id) cannot be
  // reused, so the rest of its group can still be killed safely, as a container's processes go
  // when its first one ends.
  auto deadline = Clock::now() + (block ? kill_patience : 0s);
  bool zombie = false;
  for (;;) {
    siginfo_t info{};
    int rc = ::waitid(P_PID, static_cast<id_t>(workload.pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc != 0 && errno == EINTR) continue;
    if (rc != 0) break;  // ECHILD: someone else reaped it (SIGCHLD ignored?); recorded without a code
    if (info.si_pid == workload.pid) {
      zombie = true;
      break;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  int status = 0;
  pid_t done = -1;
  if (zombie) {
    ::kill(-workload.pid, SIGKILL);
    do {
      done = ::waitpid(workload.pid, &status, 0);
    } while (done < 0 && errno == EINTR);
  }
  workload.state = WorkloadState::exited;
  workload.exit_code = done == workload.pid ? std::optional<int>(exit_code_of(status)) : std::nullopt;
  workload.finished_at = now_rfc3339();
  workload.exited_at = Clock::now();
  boost::system::error_code ignored;
  if (workload.exit_watch) workload.exit_watch->close(ignored);
  listen_hosts_.erase(workload.listen_host);
  if (records_) records_->remove(workload.id);
  return true;
}

void ProcessOrchestrator::signal(const Workload& workload, int signal_number) const {
  if (workload.state == WorkloadState::exited) return;  // reaped: the pid may belong to someone else now
  // The whole group; until setsid has run, the process is not a group leader yet.
  if (::kill(-workload.pid, signal_number) != 0) ::kill(workload.pid, signal_number);
}

void ProcessOrchestrator::close_descriptors(Workload& workload) {
  boost::system::error_code ignored;
  if (workload.out) workload.out->pipe.close(ignored);
  if (workload.err) workload.err->pipe.close(ignored);
  if (workload.exit_watch) workload.exit_watch->close(ignored);
}

bool ProcessOrchestrator::output_done(const Workload& workload) const {
  if (workload.removed || closed_) return true;
  if (workload.state != WorkloadState::exited) return false;
  bool drained = !workload.out->open && !workload.err->open;
  return drained || Clock::now() - workload.exited_at >= straggler_grace;
}

WorkloadStatus ProcessOrchestrator::status_of(const Workload& workload) const {
  WorkloadStatus status;
  status.id = workload.id;
  status.name = workload.name;
  status.image = workload.spec.image;
  status.state = workload.state;
  status.exit_code = workload.exit_code;
  status.labels = orchestrator::managed_labels(workload.spec);
  status.created_at = workload.created_at;
  status.started_at = workload.created_at;
  status.finished_at = workload.finished_at;
  status.memory_bytes = workload.plan.memory_bytes;
  status.pids_limit = workload.plan.pids_limit;
  status.cpus = 0;  // not enforced: a process gets no CPU quota without cgroups
  if (workload.exit_code && *workload.exit_code >= 128)
    status.message = "killed by signal " + std::to_string(*workload.exit_code - 128);
  return status;
}

WorkloadStatus ProcessOrchestrator::inspect(const std::string& id) {
  Lock lock(mutex_);
  return status_of(*find(lock, id));
}

std::vector<WorkloadStatus> ProcessOrchestrator::list(const std::map<std::string, std::string>& labels) {
  Lock lock(mutex_);
  if (closed_) fail(OrchestratorErrc::unavailable, "the process orchestrator has stopped");
  std::vector<WorkloadStatus> out;
  for (const auto& [id, workload] : workloads_) {
    auto status = status_of(*workload);
    bool matches = true;
    for (const auto& [key, value] : labels) {
      auto found = status.labels.find(key);
      matches = matches && found != status.labels.end() && found->second == value;
    }
    if (matches) out.push_back(std::move(status));
  }
  return out;
}

void ProcessOrchestrator::stop(const std::string& id, std::chrono::seconds grace) {
  Lock lock(mutex_);
  auto workload = find(lock, id);
  auto exited = [&] { return workload->state == WorkloadState::exited; };
  if (exited()) return;
  signal(*workload, SIGTERM);
  if (changed_.wait_for(lock, grace, exited)) return;
  signal(*workload, SIGKILL);
  if (!changed_.wait_for(lock, kill_patience, exited) && !reap(*workload, true))
    fail(OrchestratorErrc::failed, "workload " + id + " did not exit after SIGKILL");
}

void ProcessOrchestrator::remove(const std::string& id) {
  Lock lock(mutex_);
  if (closed_) fail(OrchestratorErrc::unavailable, "the process orchestrator has stopped");
  auto found = workloads_.find(id);
  if (found == workloads_.end()) return;  // already gone: a no-op
  auto workload = found->second;
  if (workload->state != WorkloadState::exited) {
    signal(*workload, SIGKILL);
    auto exited = [&] { return workload->state == WorkloadState::exited; };
    if (!changed_.wait_for(lock, kill_patience, exited) && !reap(*workload, true))
      fail(OrchestratorErrc::failed, "workload " + id + " did not exit after SIGKILL");
  }
  workload->removed = true;
  close_descriptors(*workload);
  workloads_.erase(workload->id);
  changed_.notify_all();
}

WaitResult ProcessOrchestrator::wait(const std::string& id, std::chrono::milliseconds timeout) {
  Lock lock(mutex_);
  auto workload = find(lock, id);
  changed_.wait_for(lock, timeout, [&] { return workload->state == WorkloadState::exited || workload->removed || closed_; });
  if (workload->removed) fail(OrchestratorErrc::not_found, "workload " + id + " was removed while waiting for it");
  return {workload->state == WorkloadState::exited, workload->exit_code};
}

void ProcessOrchestrator::logs(const std::string& id, const LogOptions& options, const LogSink& sink) {
  Lock lock(mutex_);
  auto workload = find(lock, id);
  auto batch = workload->logs.tail(options.tail);
  auto next = workload->logs.next_seq();
  for (;;) {
    bool done = output_done(*workload);
    lock.unlock();
    for (const auto& line : batch)
      if (!sink(line.stream, line.text)) return;
    if (!options.follow || done || options.stop.stop_requested()) return;
    lock.lock();
    auto more = [&] { return workload->logs.next_seq() > next || output_done(*workload); };
    if (workload->state == WorkloadState::exited) {
      // Past the exit only the pipes' remains are awaited; stragglers get straggler_grace.
      changed_.wait_until(lock, options.stop, workload->exited_at + straggler_grace, more);
    } else {
      changed_.wait(lock, options.stop, more);
    }
    if (options.stop.stop_requested()) return;
    batch = workload->logs.since(next);
    next = workload->logs.next_seq();
  }
}

Endpoint ProcessOrchestrator::endpoint(const std::string& id, std::uint16_t container_port) {
  Lock lock(mutex_);
  auto workload = find(lock, id);
  bool requested = false;
  for (const auto& port : workload->spec.ports) requested = requested || port.container_port == container_port;
  if (!requested)
    fail(OrchestratorErrc::invalid_spec,
         "workload " + id + " did not request port " + std::to_string(container_port) + " in its spec");
  if (workload->state != WorkloadState::running)
    fail(OrchestratorErrc::failed, "workload " + id + " is not running (" + std::string(to_string(workload->state)) + ")");
  return {workload->listen_host, container_port};
}

OrchestratorHealth ProcessOrchestrator::health() {
  Lock lock(mutex_);
  OrchestratorHealth health;
  health.up = !closed_ && !tools_.setsid.empty() && !tools_.env.empty();
  if (closed_)
    health.detail = "the process orchestrator has stopped";
  else if (!health.up)
    health.detail = "no setsid (util-linux) or env (coreutils) in /usr/bin: workloads cannot be started";
  bool hardening = !tools_.setpriv.empty();
  health.info = {
      {"backend", "process"},
      {"version", "1.0.0"},
      {"workloads", workloads_.size()},
      {"max_workloads", limits_.max_workloads},
      {"state_dir", records_ ? nlohmann::json(records_->dir().string()) : nlohmann::json(nullptr)},
      {"log_streams", "separate"},
      {"listen_hosts", "127.77.0.0/16, one per workload, in SYNTHORG_LISTEN_HOST"},
      {"isolation",
       {{"process_group", "setsid"},
        {"no_new_privileges", hardening},
        {"user_switch", hardening && tools_.root},
        {"drop_capabilities", !hardening ? "no" : tools_.root ? "inheritable and bounding sets" : "inheritable set"},
        {"memory", tools_.prlimit.empty() ? "no" : "RLIMIT_AS (address space per process)"},
        {"pids", tools_.prlimit.empty() || !tools_.root ? "no" : "RLIMIT_NPROC (per user; only when a user is switched to)"},
        {"environment", "only the spec's env, PATH, HOME and SYNTHORG_LISTEN_HOST"}}},
  };
  // What a spec may ask for and a process here does not get (the kit holds backends to this).
  auto not_isolated = nlohmann::json::array({"read_only_root", "tmpfs", "mounts", "network", "gpu", "cpus", "image"});
  if (!hardening) not_isolated.push_back("no_new_privileges");
  if (!hardening || !tools_.root) {
    not_isolated.push_back("user");               // no user switch without setpriv and root
    not_isolated.push_back("drop_capabilities");  // the bounding set needs root to clear
  }
  health.info["not_isolated"] = std::move(not_isolated);
  // Hardening that specs asked for and this host could not apply, so far.
  auto skipped = nlohmann::json::array();
  for (const auto& note : noted_)
    if (note.rfind("skipped:", 0) == 0) skipped.push_back(note.substr(8));
  health.info["skipped"] = std::move(skipped);
  if (!records_problem_.empty()) health.info["records"] = records_problem_;
  return health;
}

}  // namespace synthorg::orchestrator_process
