#include "process_metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

namespace synthorg::telemetry {
namespace {

struct Figures {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double open_fds = 0;
  double uptime_seconds = 0;  // since the process started, not since the plugin did
};

Figures read_figures() {
  Figures figures;
  // /proc/self/stat: the command may contain spaces and parentheses, so fields count from the
  // last ')'. utime and stime are fields 14 and 15, in clock ticks.
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    auto close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(line.substr(close + 2));
      std::string field;
      double utime = 0, stime = 0, start = 0, ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
      for (int index = 3; fields >> field; ++index) {
        if (index == 14) utime = std::stod(field);
        if (index == 15) stime = std::stod(field);
        if (index == 22) {  // starttime: ticks after boot
          start = std::stod(field);
          break;
        }
      }
      figures.cpu_seconds = (utime + stime) / ticks;
      double since_boot = 0;
      if (std::ifstream uptime("/proc/uptime"); uptime >> since_boot)
        figures.uptime_seconds = std::max(0.0, since_boot - start / ticks);
    }
  }
  std::ifstream statm("/proc/self/statm");
  double size = 0, resident = 0;
  if (statm >> size >> resident) figures.resident_bytes = resident * static_cast<double>(::sysconf(_SC_PAGESIZE));
  std::error_code error;
  for (std::filesystem::directory_iterator it("/proc/self/fd", error), end; !error && it != end; it.increment(error))
    ++figures.open_fds;
  return figures;
}

}  // namespace

Token watch_process(Metrics& metrics) {
  auto cpu = metrics.counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.");
  auto resident = metrics.gauge("process_resident_memory_bytes", "Resident memory size, in bytes.");
  auto fds = metrics.gauge("process_open_fds", "Open file descriptors.");
  auto start_time = metrics.gauge("process_start_time_seconds", "Start time of the process, in Unix seconds.");
  auto uptime = metrics.gauge("synthorg_uptime_seconds", "Seconds since the process started.");
  struct Last {
    std::mutex mutex;
    double cpu = 0;
  };
  auto last = std::make_shared<Last>();
  return metrics.add_collector([=] {
    auto figures = read_figures();
    resident->set(figures.resident_bytes);
    fds->set(figures.open_fds);
    uptime->set(figures.uptime_seconds);
    start_time->set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() -
                    figures.uptime_seconds);
    std::lock_guard lock(last->mutex);
    // A counter: add what was spent since the last scrape.
    if (figures.cpu_seconds > last->cpu) cpu->add(figures.cpu_seconds - last->cpu);
    last->cpu = figures.cpu_seconds;
  });
}

}  // namespace synthorg::telemetry
