// Scheduled backups (setting backup.interval, off by default): the running server takes a
// backup of its Store every interval, with the retention of `synthorg backup create`. Each one is
// an event (backup.created / backup.failed), a metric, and the state of a non-critical health
// check named "backup": a failed backup is an error log and a readiness warning, never a crash.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "synthorg/bus.hpp"
#include "synthorg/log.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/token.hpp"

namespace synthorg::kernel {

// "6h", "1d", "1h30m"; "0" (or "0s"): off. Nullopt for text that is none of these.
std::optional<std::chrono::seconds> parse_backup_interval(std::string_view text);

class BackupScheduler {
 public:
  BackupScheduler(std::shared_ptr<Settings> settings, ServiceRegistry& registry, EventBus& bus);
  ~BackupScheduler();  // stops and joins
  BackupScheduler(const BackupScheduler&) = delete;
  BackupScheduler& operator=(const BackupScheduler&) = delete;

 private:
  class Health;
  using Clock = std::chrono::system_clock;

  void run(std::stop_token stop);
  void take_backup();
  std::chrono::seconds interval() const;

  std::shared_ptr<Settings> settings_;
  ServiceRegistry& registry_;
  EventBus& bus_;
  log::Logger log_{"backup"};
  std::mutex mutex_;
  std::condition_variable_any wake_;
  bool changed_ = false;  // backup.* changed: recompute when the next backup is due
  std::shared_ptr<Health> health_;
  Registration health_registration_;
  Subscription settings_subscription_;
  std::jthread thread_;  // last: stops first
};

}  // namespace synthorg::kernel
