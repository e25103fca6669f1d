#include "workload_records.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace synthorg::orchestrator_process {
namespace {

std::string read_small_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::string& boot_id() {
  static const std::string id = [] {
    auto text = read_small_file("/proc/sys/kernel/random/boot_id");
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }();
  return id;
}

// /proc/PID/stat: "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the
// fields are counted after the last ')'. Field 3 is the state, field 22 the start time.
std::optional<std::pair<char, std::uint64_t>> state_and_start(pid_t pid) {
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  char state = 0;
  for (int index = 3; fields >> field; ++index) {
    if (index == 3) state = field.empty() ? 0 : field.front();
    if (index == 22) {
      try {
        return std::pair{state, static_cast<std::uint64_t>(std::stoull(field))};
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

[[noreturn]] void cannot(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error("cannot " + what + " " + path.string() + ": " + std::strerror(errno) +
                           "; set orchestrator-process's state_dir to a directory this user may write");
}

}  // namespace

std::optional<ProcessIdentity> identify(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto found = state_and_start(pid);
  if (!found) return std::nullopt;
  return ProcessIdentity{pid, found->second, boot_id()};
}

bool still_running(const ProcessIdentity& identity) {
  if (identity.boot_id != boot_id()) return false;
  auto found = state_and_start(identity.pid);
  return found && found->second == identity.start_ticks && found->first != 'Z' && found->first != 'X';
}

WorkloadRecords::WorkloadRecords(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::error_code error;
  std::filesystem::create_directories(dir_, error);
  if (error) {
    errno = error.value();
    cannot("create the workload state directory", dir_);
  }
  ::chmod(dir_.c_str(), 0700);  // pids and names only, but nobody else's business
  if (::access(dir_.c_str(), W_OK | X_OK) != 0) cannot("write to the workload state directory", dir_);
  auto self = identify(::getpid());
  if (!self) cannot("read this process's own start time from", "/proc/self/stat");
  self_ = *self;
}

std::filesystem::path WorkloadRecords::path_of(const std::string& id) const { return dir_ / (id + ".json"); }

void WorkloadRecords::add(const std::string& id, const std::string& name, pid_t pid) {
  auto process = identify(pid);
  if (!process) throw std::runtime_error("workload process " + std::to_string(pid) + " is gone before it was recorded");
  nlohmann::json record = {
      {"id", id},
      {"name", name},
      {"pid", process->pid},
      {"start_ticks", process->start_ticks},
      {"boot_id", process->boot_id},
      {"owner", {{"pid", self_.pid}, {"start_ticks", self_.start_ticks}}},
  };
  auto path = path_of(id);
  auto temporary = path;
  temporary += ".tmp";
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) cannot("write the workload record", temporary);
  auto text = record.dump() + "\n";
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written || ::rename(temporary.c_str(), path.c_str()) != 0) {
    ::unlink(temporary.c_str());
    cannot("write the workload record", path);
  }
}

void WorkloadRecords::remove(const std::string& id) noexcept { ::unlink(path_of(id).c_str()); }

std::vector<WorkloadRecords::Orphan> WorkloadRecords::orphans(std::size_t& dropped) {
  std::vector<Orphan> found;
  dropped = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, error)) {
    if (entry.path().extension() != ".json") continue;
    try {
      auto record = nlohmann::json::parse(read_small_file(entry.path()));
      ProcessIdentity owner{record.at("owner").at("pid").get<pid_t>(),
                            record.at("owner").at("start_ticks").get<std::uint64_t>(),
                            record.at("boot_id").get<std::string>()};
      if (still_running(owner)) continue;  // its kernel still runs and answers for it
      Orphan orphan{record.at("id").get<std::string>(), record.value("name", ""),
                    {record.at("pid").get<pid_t>(), record.at("start_ticks").get<std::uint64_t>(),
                     record.at("boot_id").get<std::string>()}};
      if (still_running(orphan.process)) {
        found.push_back(std::move(orphan));
        continue;
      }
    } catch (const std::exception&) {
      // Unreadable (cut short by a crash while it was written): nothing to act on.
    }
    std::filesystem::remove(entry.path(), error);
    ++dropped;
  }
  return found;
}

}  // namespace synthorg::orchestrator_process
