// The Orchestrator contract, implemented with local child processes. Each workload is one
// process (and its process group) started through launcher.hpp's wrappers; its stdout and
// stderr are read into a bounded buffer, and its exit is noticed through a pidfd, all
// asynchronously on the kernel's io_context: the plugin starts no threads of its own.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "launcher.hpp"
#include "log_buffer.hpp"
#include "workload_records.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_process {

struct Limits {
  std::size_t max_workloads = 64;        // held at once, running or exited and not yet removed
  std::size_t log_buffer_bytes = 1 << 20;  // per workload
  std::filesystem::path state_dir;          // workload records (workload_records.hpp); empty: none
  // The command run in an image's place when a spec gives none (a process has no image).
  std::map<std::string, std::vector<std::string>> images;
};

class ProcessOrchestrator final : public Orchestrator, public std::enable_shared_from_this<ProcessOrchestrator> {
 public:
  ProcessOrchestrator(Limits limits, HostTools tools, boost::asio::io_context& io, log::Logger log);
  ~ProcessOrchestrator() override;

  // Kills and reaps every workload; every call afterwards throws unavailable. Idempotent.
  void shutdown();
  // Stops the workload processes a previous kernel left running when it died without a stop,
  // found through the state directory's records; returns how many. Blocks up to a few seconds.
  std::size_t stop_orphans();

  std::string backend() const override { return "process"; }
  WorkloadStatus spawn(const WorkloadSpec& spec) override;
  WorkloadStatus inspect(const std::string& id) override;
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override;
  void stop(const std::string& id, std::chrono::seconds grace) override;
  void remove(const std::string& id) override;
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override;
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override;
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override;
  OrchestratorHealth health() override;

 private:
  struct Output {
    Output(boost::asio::io_context& io, int fd, std::size_t max_line) : pipe(io, fd), lines(max_line) {}
    boost::asio::posix::stream_descriptor pipe;
    LineSplitter lines;
    std::array<char, 8192> buffer{};
    bool open = true;
  };

  struct Workload {
    std::string id;
    WorkloadSpec spec;
    std::string name;
    std::string listen_host;
    LaunchPlan plan;
    pid_t pid = 0;
    WorkloadState state = WorkloadState::running;
    std::optional<int> exit_code;
    std::string created_at, finished_at;
    std::chrono::steady_clock::time_point exited_at;
    bool removed = false;
    LogBuffer logs;
    std::unique_ptr<Output> out, err;
    std::unique_ptr<boost::asio::posix::stream_descriptor> exit_watch;  // the pidfd

    explicit Workload(std::size_t log_bytes) : logs(log_bytes) {}
  };
  using WorkloadPtr = std::shared_ptr<Workload>;
  using Lock = std::unique_lock<std::mutex>;

  WorkloadPtr find(const Lock& lock, const std::string& id) const;  // throws not_found, unavailable
  WorkloadStatus status_of(const Workload& workload) const;
  std::string allocate_listen_host();
  void read_output(const WorkloadPtr& workload, Output& output, LogStream stream);
  void watch_exit(const WorkloadPtr& workload);
  // Reaps the workload if it has exited; `block` waits for it (after SIGKILL only).
  bool reap(Workload& workload, bool block);
  void signal(const Workload& workload, int signal_number) const;
  void close_descriptors(Workload& workload);
  bool output_done(const Workload& workload) const;
  void note_once(const std::string& key, const std::string& message, log::Level level);

  const Limits limits_;
  const HostTools tools_;
  boost::asio::io_context& io_;
  log::Logger log_;

  mutable std::mutex mutex_;
  std::condition_variable_any changed_;  // any workload changed: output, exit, removal
  std::map<std::string, WorkloadPtr> workloads_;
  std::set<std::string> listen_hosts_;
  std::uint32_t next_host_;
  std::uint64_t sequence_ = 0;
  bool closed_ = false;
  std::set<std::string> noted_;
  std::optional<WorkloadRecords> records_;
  std::string records_problem_;  // why there are no records, when state_dir was set
};

}  // namespace synthorg::orchestrator_process
