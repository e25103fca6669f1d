// What survives the kernel: one small file per running workload in a state directory, so that a
// kernel killed without a stop (kill -9, the OOM killer, a power cut of the service manager)
// leaves a trail, and the next start finds the processes of its previous life and stops them, as
// the Docker backend finds its labelled containers. A child process has no label to list it by.
//
// A process is named by pid + start time (field 22 of /proc/PID/stat) + boot id, never by pid
// alone: a pid reused by an unrelated process after a reboot or a wrap-around never matches. Each
// record also names the kernel that wrote it, so a second kernel sharing the directory leaves a
// live kernel's workloads alone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace synthorg::orchestrator_process {

struct ProcessIdentity {
  pid_t pid = 0;
  std::uint64_t start_ticks = 0;  // since boot, in clock ticks
  std::string boot_id;
  bool operator==(const ProcessIdentity&) const = default;
};

// The identity of the process `pid` now; nullopt when there is none (or it cannot be read).
std::optional<ProcessIdentity> identify(pid_t pid);
// True when the process named by `identity` is still there (a zombie counts as gone).
bool still_running(const ProcessIdentity& identity);

class WorkloadRecords {
 public:
  struct Orphan {
    std::string id;
    std::string name;
    ProcessIdentity process;
  };

  // Creates `dir` (mode 0700) when missing; throws std::runtime_error naming it when it cannot.
  explicit WorkloadRecords(std::filesystem::path dir);

  const std::filesystem::path& dir() const noexcept { return dir_; }
  // Written before spawn() returns; replaced atomically. Throws std::runtime_error.
  void add(const std::string& id, const std::string& name, pid_t pid);
  void remove(const std::string& id) noexcept;
  // Workloads of kernels that are no longer running whose process still runs. Records whose
  // process has gone, and unreadable ones, are deleted on the way (`dropped` counts them).
  std::vector<Orphan> orphans(std::size_t& dropped);

 private:
  std::filesystem::path path_of(const std::string& id) const;

  std::filesystem::path dir_;
  ProcessIdentity self_;
};

}  // namespace synthorg::orchestrator_process
