// Backups: taken under write load, verified, refused when damaged, restored whole; and the
// `synthorg backup` command as an operator uses it, including while a server runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <sstream>
#include <fstream>
#include <csignal>
#include <thread>

#include "backup.hpp"
#include "backup_scheduler.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/metrics.hpp"
#include "kernel.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using synthorg::testing::Process;
using synthorg::testing::run_synthorg;
using synthorg::testing::TempDir;

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto plugins = dir.path() / "plugins";
    fs::create_directories(plugins);
    fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / "store-sqlite.so", plugins / "store-sqlite.so");
    config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                           "]\nselect: {store: store-sqlite}\nplugins:\n  store-sqlite:\n"
                                           "    config: {path: " + (dir / "data/s.db").string() +
                                           "}\nsettings:\n  backup:\n    dir: " + (dir / "backups").string() +
                                           "\n    keep: 3\n");
  }
  std::unique_ptr<Kernel> started_store() {
    auto kernel = std::make_unique<Kernel>(load_company_config(config, "/unused"));
    kernel->restrict_to(std::string(Store::service_id));
    kernel->discover();
    kernel->prepare();
    kernel->start();
    return kernel;
  }
  Backups backups(std::int64_t keep = 3) { return Backups(dir / "backups", keep); }
  static std::string message_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const std::exception& error) {
      return error.what();
    }
    ADD_FAILURE() << "expected an error";
    return {};
  }

  TempDir dir;
  fs::path config;
};

TEST_F(BackupTest, ABackupTakenUnderWriteLoadRestoresToAConsistentDatabase) {
  auto kernel = started_store();
  auto store = kernel->registry().get<Store>();
  store->ensure_collection({"load", {{"n"}}, {}});
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int n = 0; !stop; ++n) {
      store->insert("load", {{"n", n}, {"pad", std::string(200, 'p')}}, "w" + std::to_string(n));
      written = n + 1;
    }
  });
  while (written < 500) std::this_thread::yield();
  auto info = backups().create(*store);
  const int at_backup = written;
  while (written < at_backup + 2000) std::this_thread::yield();
  stop = true;
  writer.join();
  auto total = store->count("load");
  ASSERT_GT(total, 2000);

  backups().restore(*store, info.id);
  auto restored = store->count("load");
  EXPECT_GE(restored, 500);
  EXPECT_LT(restored, total) << "the backup is older than the last writes";
  // Inserts were sequential: a consistent snapshot holds exactly the first `restored` of them.
  Query last;
  last.order_by = "n";
  last.descending = true;
  last.limit = 1;
  auto newest = store->query("load", last).documents.at(0);
  EXPECT_EQ(newest.data["n"], restored - 1) << "no gaps: every document before the newest is there";
  EXPECT_NO_THROW(store->insert("load", {{"n", -1}})) << "the store serves after the restore";
}

TEST_F(BackupTest, DamagedBackupsAreRefusedAndTheLiveDataIsUntouched) {
  auto kernel = started_store();
  auto store = kernel->registry().get<Store>();
  store->ensure_collection({"things", {}, {}});
  store->insert("things", {{"v", 1}}, "a");
  auto truncated = backups().create(*store);
  auto tampered = backups().create(*store);
  auto no_manifest = backups().create(*store);
  store->insert("things", {{"v", 2}}, "b");

  auto file = dir / "backups" / truncated.id / truncated.files.at(0).name;
  fs::resize_file(file, fs::file_size(file) / 2);
  auto message = message_of([&] { backups().restore(*store, truncated.id); });
  EXPECT_NE(message.find("truncated or damaged"), std::string::npos) << message;

  auto other = dir / "backups" / tampered.id / tampered.files.at(0).name;
  {
    std::fstream bytes(other, std::ios::in | std::ios::out | std::ios::binary);
    bytes.seekp(100);
    bytes.put('\x5a');
  }
  message = message_of([&] { backups().restore(*store, tampered.id); });
  EXPECT_NE(message.find("does not match its SHA-256"), std::string::npos) << message;

  fs::remove(dir / "backups" / no_manifest.id / "manifest.json");
  message = message_of([&] { backups().restore(*store, no_manifest.id); });
  EXPECT_NE(message.find("manifest.json is missing"), std::string::npos) << message;

  message = message_of([&] { backups().restore(*store, "../../etc"); });
  EXPECT_NE(message.find("not a backup id"), std::string::npos) << message;
  message = message_of([&] { backups().restore(*store, "0123456789ab"); });
  EXPECT_NE(message.find("there is no backup"), std::string::npos) << message;

  EXPECT_EQ(store->count("things"), 2) << "nothing was restored";
  auto listed = backups().list();
  ASSERT_EQ(listed.size(), 3u);
  auto damaged = std::count_if(listed.begin(), listed.end(), [](const BackupInfo& b) { return !b.problem.empty(); });
  EXPECT_EQ(damaged, 1) << "a backup without a manifest is listed as damaged";
}

TEST_F(BackupTest, RetentionKeepsTheNewest) {
  auto kernel = started_store();
  auto store = kernel->registry().get<Store>();
  std::vector<std::string> made;
  for (int i = 0; i < 5; ++i) made.push_back(backups(2).create(*store).id);
  auto listed = backups().list();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id, made[4]);
  EXPECT_EQ(listed[1].id, made[3]);
}

TEST_F(BackupTest, TheCommandCreatesListsAndRestoresWithConfirmation) {
  auto created = run_synthorg({"--config", config.string(), "backup", "create", "--json"});
  ASSERT_EQ(created.exit_code, 0) << created.output;
  auto id = json::parse(created.output.substr(created.output.find('{')))["id"].get<std::string>();
  auto listed = run_synthorg({"--config", config.string(), "backup", "list"});
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_NE(listed.output.find(id), std::string::npos) << listed.output;

  auto unconfirmed = run_synthorg({"--config", config.string(), "backup", "restore", id});
  EXPECT_EQ(unconfirmed.exit_code, 2);
  EXPECT_NE(unconfirmed.output.find("--confirm"), std::string::npos) << unconfirmed.output;
  auto restored = run_synthorg({"--config", config.string(), "backup", "restore", id, "--confirm"});
  EXPECT_EQ(restored.exit_code, 0) << restored.output;
  EXPECT_NE(restored.output.find("restored backup " + id), std::string::npos) << restored.output;
}

TEST_F(BackupTest, RestoreIsRefusedWhileAServerRunsButBackupsWork) {
  auto first = run_synthorg({"--config", config.string(), "backup", "create", "--json"});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto id = json::parse(first.output.substr(first.output.find('{')))["id"].get<std::string>();

  Process server({"--config", config.string(), "serve"});
  ASSERT_TRUE(server.wait_for_output("All plugins started", std::chrono::seconds(20))) << server.output();
  auto during = run_synthorg({"--config", config.string(), "backup", "create"});
  EXPECT_EQ(during.exit_code, 0) << "a backup while serving must work: " << during.output;
  auto refused = run_synthorg({"--config", config.string(), "backup", "restore", id, "--confirm"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.output.find("another synthorg process is using"), std::string::npos) << refused.output;
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(std::chrono::seconds(20)), 0) << server.output();

  auto after = run_synthorg({"--config", config.string(), "backup", "restore", id, "--confirm"});
  EXPECT_EQ(after.exit_code, 0) << "once the server stopped: " << after.output;
}

// Scheduled backups (backup.interval): taken by the running server every interval with
// retention, each an event and the state of the non-critical "backup" health check; a failure
// is an error and a warning, retried, never a crash.
class ScheduledBackupTest : public BackupTest {
 protected:
  std::unique_ptr<Kernel> started_server() {
    auto kernel = std::make_unique<Kernel>(load_company_config(config, "/unused"));
    kernel->discover();
    kernel->prepare();
    kernel->start();
    events_ = kernel->bus().subscribe("backup.*", [this](const Event& event) {
      std::lock_guard lock(mutex_);
      seen_.push_back(event);
    });
    return kernel;
  }
  // Waits until `count` events of `topic` have been seen; returns the last.
  std::optional<Event> wait_for(const std::string& topic, std::size_t count = 1) {
    for (int i = 0; i < 100; ++i) {
      {
        std::lock_guard lock(mutex_);
        std::vector<Event> matching;
        for (const auto& event : seen_)
          if (event.topic == topic) matching.push_back(event);
        if (matching.size() >= count) return matching.back();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return std::nullopt;
  }
  static HealthReport backup_health(Kernel& kernel, bool* critical = nullptr) {
    for (const auto& check : kernel.registry().all<HealthCheck>())
      if (check->name() == "backup") {
        if (critical) *critical = check->critical();
        return check->check();
      }
    ADD_FAILURE() << "no health check named backup";
    return {};
  }

  std::mutex mutex_;
  std::vector<Event> seen_;
  Subscription events_;
};

TEST_F(ScheduledBackupTest, ABackupIsTakenEveryIntervalWithRetentionAnEventAndAHealthReport) {
  synthorg::testing::ScopedEnv every("SYNTHORG_BACKUP_INTERVAL", "1s");
  auto kernel = started_server();
  auto metrics = make_metrics_registry();  // what the telemetry plugin provides in a server
  auto metrics_registration = kernel->registry().provide<Metrics>(metrics);
  auto fourth = wait_for("backup.created", 4);
  ASSERT_TRUE(fourth) << "four scheduled backups within 10 s at 1 s intervals";
  EXPECT_EQ(fourth->payload["scheduled"], true);
  EXPECT_EQ(fourth->payload["backend"], "sqlite");
  auto listed = backups().list();
  EXPECT_EQ(listed.size(), 3u) << "backup.keep: 3";
  EXPECT_TRUE(std::ranges::any_of(listed, [&](const BackupInfo& b) { return b.id == fourth->payload["id"]; }));
  EXPECT_NO_THROW(backups().verify(fourth->payload["id"].get<std::string>()));
  bool critical = true;
  auto health = backup_health(*kernel, &critical);
  EXPECT_TRUE(health.up) << health.detail;
  EXPECT_FALSE(critical) << "a backup problem is a warning: readiness does not depend on it";
  EXPECT_TRUE(health.data.contains("last_success")) << health.data;
  auto text = metrics->render();
  EXPECT_NE(text.find("synthorg_backups_total{result=\"ok\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("synthorg_backup_last_success_timestamp_seconds"), std::string::npos) << text;
}

TEST_F(ScheduledBackupTest, AFailedBackupIsAnErrorAndAWarningAndIsRetriedOnceFixed) {
  std::ofstream(dir / "a-file") << "not a directory";
  std::stringstream read;
  read << std::ifstream(config).rdbuf();
  auto text = read.str();
  auto at = text.find((dir / "backups").string());
  ASSERT_NE(at, std::string::npos);
  text.replace(at, (dir / "backups").string().size(), (dir / "a-file" / "backups").string());
  config = dir.write("company.yaml", text);
  synthorg::testing::ScopedEnv every("SYNTHORG_BACKUP_INTERVAL", "1s");
  auto kernel = started_server();
  auto failed = wait_for("backup.failed");
  ASSERT_TRUE(failed) << "the failure is published";
  EXPECT_NE(failed->payload["error"].get<std::string>().find("backup directory"), std::string::npos) << failed->payload;
  auto health = backup_health(*kernel);
  EXPECT_FALSE(health.up);
  EXPECT_NE(health.detail.find("the next try is at"), std::string::npos) << health.detail;
  // Still serving.
  auto store = kernel->registry().get<Store>();
  store->ensure_collection({"still", {}, {}});
  EXPECT_NO_THROW(store->insert("still", {{"ok", true}}, "one"));

  // Fixed through the settings: the next try succeeds and the warning clears.
  kernel->registry().get<Settings>()->set("backup", "dir", (dir / "backups").string(), "test");
  auto created = wait_for("backup.created");
  ASSERT_TRUE(created) << "a backup once the directory is fixed";
  EXPECT_TRUE(backup_health(*kernel).up) << backup_health(*kernel).detail;
  EXPECT_EQ(backups().list().size(), 1u);
}

TEST_F(ScheduledBackupTest, AnIntervalThatIsNoneIsRefusedAtStartNamingTheVariable) {
  for (const char* bad : {"soon", "5", "1w", "-1h", "1.5h"}) {
    synthorg::testing::ScopedEnv every("SYNTHORG_BACKUP_INTERVAL", bad);
    try {
      started_server();
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::exception& error) {
      EXPECT_NE(std::string(error.what()).find("SYNTHORG_BACKUP_INTERVAL"), std::string::npos) << error.what();
    }
  }
}

TEST(BackupIntervalTest, DurationsOfSecondsToDays) {
  EXPECT_EQ(parse_backup_interval("0"), std::chrono::seconds(0));
  EXPECT_EQ(parse_backup_interval("6h"), std::chrono::hours(6));
  EXPECT_EQ(parse_backup_interval("1d"), std::chrono::hours(24));
  EXPECT_EQ(parse_backup_interval("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(parse_backup_interval("45s"), std::chrono::seconds(45));
  for (const char* bad : {"", "h", "5", "1w", "1h30", "-1h"}) EXPECT_FALSE(parse_backup_interval(bad)) << bad;
}

}  // namespace
}  // namespace synthorg::kernel
