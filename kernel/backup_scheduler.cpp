#include "backup_scheduler.hpp"

#include <ctime>
#include <cstdio>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "backup.hpp"
#include "synthorg/config_map.hpp"
#include "synthorg/services/metrics.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::kernel {
namespace {

using nlohmann::json;

// What a failed backup waits before the next try, at most: an interval of a day should not
// leave a full disk unnoticed-and-unretried for a day.
constexpr std::chrono::seconds kRetryAfterFailure{600};
// How often a server with scheduling off looks again (a change of the setting wakes it sooner).
constexpr std::chrono::seconds kIdleRecheck{3600};

std::string rfc3339(std::chrono::system_clock::time_point when) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(when)));
}

// A backup's created_at (2026-12-07T20:22:39.123Z), or nullopt.
std::optional<std::chrono::system_clock::time_point> parse_created_at(const std::string& text) {
  std::tm utc{};
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &utc.tm_year, &utc.tm_mon, &utc.tm_mday, &utc.tm_hour,
                  &utc.tm_min, &utc.tm_sec) != 6)
    return std::nullopt;
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(timegm(&utc));
}

}  // namespace

std::optional<std::chrono::seconds> parse_backup_interval(std::string_view text) {
  if (text == "0") return std::chrono::seconds(0);
  if (text.find("ms") != std::string_view::npos) return std::nullopt;  // whole seconds at least
  auto parsed = parse_duration(text);
  if (!parsed) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::seconds>(*parsed);
}

class BackupScheduler::Health final : public HealthCheck {
 public:
  std::string name() const override { return "backup"; }
  bool critical() const override { return false; }  // a warning: the server goes on serving
  HealthReport check() override {
    std::lock_guard lock(mutex_);
    return report_;
  }
  void set(HealthReport report) {
    std::lock_guard lock(mutex_);
    report_ = std::move(report);
  }

 private:
  std::mutex mutex_;
  HealthReport report_{true, "", json::object()};
};

BackupScheduler::BackupScheduler(std::shared_ptr<Settings> settings, ServiceRegistry& registry, EventBus& bus)
    : settings_(std::move(settings)), registry_(registry), bus_(bus), health_(std::make_shared<Health>()) {
  health_registration_ = registry_.provide<HealthCheck>(health_);
  settings_subscription_ = bus_.subscribe(std::string(SettingChanged::topic), [this](const Event& event) {
    if (event.payload.value("namespace", "") != "backup") return;
    {
      std::lock_guard lock(mutex_);
      changed_ = true;
    }
    wake_.notify_all();
  });
  thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

BackupScheduler::~BackupScheduler() {
  settings_subscription_.reset();
  thread_.request_stop();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::chrono::seconds BackupScheduler::interval() const {
  // The setting's pattern has already refused anything else.
  return parse_backup_interval(settings_->get("backup", "interval").value.get<std::string>())
      .value_or(std::chrono::seconds(0));
}

void BackupScheduler::run(std::stop_token stop) {
  pthread_setname_np(pthread_self(), "synthorg-backup");
  // The first backup is due one interval after the newest one on disk, so that a server
  // restarted more often than its interval still takes them.
  std::optional<Clock::time_point> last;
  try {
    Backups backups(settings_->get("backup", "dir").value.get<std::string>(), 0);
    for (const auto& backup : backups.list())
      if (backup.problem.empty()) {
        last = parse_created_at(backup.created_at);
        break;
      }
  } catch (const std::exception&) {
    // No directory yet, or an unreadable one: the first backup will say so.
  }
  auto started = Clock::now();
  while (!stop.stop_requested()) {
    {
      std::lock_guard lock(mutex_);
      changed_ = false;  // before reading the settings: a change from now on wakes the wait below
    }
    auto every = interval();
    Clock::time_point due = every.count() == 0 ? Clock::now() + kIdleRecheck : last.value_or(started) + every;
    if (every.count() > 0) log_.info("Next scheduled backup", {{"at", rfc3339(std::max(due, Clock::now()))},
                                                                {"interval_s", static_cast<std::int64_t>(every.count())}});
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, stop, due, [this] { return changed_; });
      if (stop.stop_requested()) return;
      if (changed_) continue;  // the interval (or dir, keep) changed: recompute
    }
    if (interval().count() == 0) continue;
    bool ok = false;
    auto began = Clock::now();
    try {
      take_backup();
      ok = true;
    } catch (const std::exception& error) {
      auto retry = began + std::min<Clock::duration>(every, kRetryAfterFailure);
      log_.error("Scheduled backup failed", {{"error", error.what()}, {"retry_at", rfc3339(retry)}});
      bus_.publish("backup.failed", {{"error", error.what()}, {"scheduled", true}, {"retry_at", rfc3339(retry)}});
      health_->set({false,
                    fmt::format("the scheduled backup at {} failed: {}; the next try is at {}", rfc3339(began),
                                error.what(), rfc3339(retry)),
                    {{"last_failure", rfc3339(began)}}});
      if (auto metrics = registry_.get<Metrics>())
        metrics->counter("synthorg_backups_total", "Backups taken by the schedule, by result", {{"result", "failed"}})
            ->add();
      // Retried sooner than a whole interval: pretend the last one was that much earlier.
      last = retry - every;
    }
    if (ok) last = began;
  }
}

void BackupScheduler::take_backup() {
  auto store = registry_.get<Store>();
  if (!store) throw BackupError("no Store is running to back up");
  auto began = std::chrono::steady_clock::now();
  Backups backups(settings_->get("backup", "dir").value.get<std::string>(),
                  settings_->get("backup", "keep").value.get<std::int64_t>());
  auto info = backups.create(*store);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  log_.info("Scheduled backup created", {{"id", info.id}, {"bytes", info.bytes()}, {"ms", ms},
                                         {"dir", backups.directory().string()}});
  auto event = info.to_json();
  event["scheduled"] = true;
  event["ms"] = ms;
  bus_.publish("backup.created", event);
  health_->set({true, "", {{"last_success", info.created_at}, {"last_id", info.id}}});
  if (auto metrics = registry_.get<Metrics>()) {
    metrics->counter("synthorg_backups_total", "Backups taken by the schedule, by result", {{"result", "ok"}})->add();
    metrics->gauge("synthorg_backup_last_success_timestamp_seconds", "When the last scheduled backup was taken")
        ->set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count()));
    metrics->gauge("synthorg_backup_last_bytes", "Size of the last scheduled backup")->set(static_cast<double>(info.bytes()));
  }
}

}  // namespace synthorg::kernel
