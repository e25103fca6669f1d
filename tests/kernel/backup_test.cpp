// Backups: taken under write load, verified, refused when damaged, restored whole; and the
// `synthorg backup` command as an operator uses it, including while a server runs.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <csignal>
#include <thread>

#include "backup.hpp"
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

}  // namespace
}  // namespace synthorg::kernel
