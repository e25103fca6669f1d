// store-sqlite on bad input: files that are not databases, directories it cannot write, a full
// database, a second user of the same file, corrupt snapshots, and a backup under write load.
// The plugin is loaded from its real file, as the kernel loads it; what every Store must do is
// the conformance kit's job (sdk/conformance/store_kit.cpp), not this file's.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/store.hpp"
#include "test_support.hpp"

namespace synthorg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using synthorg::testing::TempDir;
using namespace std::chrono_literals;

// Loaded once per process and never unloaded, as the kernel does.
const host::PluginFile& store_sqlite() {
  static const host::PluginFile file = host::load_plugin_file(SYNTHORG_STORE_SQLITE);
  return file;
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// Zero-padded, so ids sort in the order they were written.
std::string fmt_id(int i) {
  char id[16];
  std::snprintf(id, sizeof id, "w-%08d", i);
  return id;
}

using synthorg::testing::ScopedEnv;

// The immutable attribute (chattr +i) makes a directory or file unwritable even for root, which
// chmod does not. Needs CAP_LINUX_IMMUTABLE and a file system that supports it (ext4, xfs,
// btrfs; not tmpfs): `applied()` says whether it took.
class Immutable {
 public:
  explicit Immutable(const fs::path& path) : path_(path) { applied_ = set(true); }
  ~Immutable() {
    if (applied_) set(false);  // or TempDir cannot remove it
  }
  Immutable(const Immutable&) = delete;
  Immutable& operator=(const Immutable&) = delete;
  bool applied() const noexcept { return applied_; }

 private:
  bool set(bool on) {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false;
    int flags = 0;
    bool done = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (done) {
      flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
      done = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    ::close(fd);
    return done;
  }

  fs::path path_;
  bool applied_ = false;
};

// A raw, read-only look at a database file, independent of the plugin.
class RawDatabase {
 public:
  explicit RawDatabase(const fs::path& file) {
    if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
      throw std::runtime_error("cannot open " + file.string() + ": " + sqlite3_errmsg(db_));
  }
  ~RawDatabase() { sqlite3_close(db_); }
  RawDatabase(const RawDatabase&) = delete;
  RawDatabase& operator=(const RawDatabase&) = delete;

  // Every row of a one-column query, as text.
  std::vector<std::string> column(const std::string& sql) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK)
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    std::vector<std::string> rows;
    int code;
    while ((code = sqlite3_step(statement)) == SQLITE_ROW)
      rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0)));
    sqlite3_finalize(statement);
    if (code != SQLITE_DONE) throw std::runtime_error(sql + ": " + sqlite3_errstr(code));
    return rows;
  }
  std::int64_t count(const std::string& collection) {
    return std::stoll(column("SELECT count(*) FROM \"doc_" + collection + "\"").at(0));
  }
  std::string integrity() {
    auto rows = column("PRAGMA integrity_check");
    std::string all;
    for (const auto& row : rows) all += row + "\n";
    return rows == std::vector<std::string>{"ok"} ? "ok" : all;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStoreTest()
      : executor_(std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{1, 2, 64})),
        bus_([executor = executor_.get()](std::function<void()> task) { executor->post(std::move(task)); }),
        executor_registration_(registry_.provide<Executor>(executor_)) {}

  ~SqliteStoreTest() override {
    instances_.clear();
    bus_.shutdown();
    executor_->stop();
  }

  // A configured instance, not started. Stopped and destroyed with the fixture.
  host::PluginInstance& configured(const json& config) {
    auto context = std::make_shared<PluginContext>("store-sqlite", registry_, bus_);
    instances_.push_back(std::make_unique<host::PluginInstance>(store_sqlite(), context));
    instances_.back()->configure(config);
    return *instances_.back();
  }
  std::shared_ptr<Store> start(const json& config) {
    configured(config).start();
    auto store = registry_.get<Store>();
    if (!store) throw std::logic_error("store-sqlite started without registering a Store");
    return store;
  }
  // Why a start fails: host::PluginFailed carries the plugin's own message across the C ABI
  // (the StoreErrc stays behind it), and nothing may be left registered.
  std::string start_failure(const json& config) {
    auto& instance = configured(config);
    try {
      instance.start();
    } catch (const host::PluginFailed& error) {
      EXPECT_FALSE(registry_.has(Store::service_id)) << "a failed start left the Store registered";
      return error.what();
    }
    ADD_FAILURE() << "store-sqlite started with " << config.dump();
    return {};
  }
  static json at(const fs::path& file) { return {{"path", file.string()}}; }

  static StoreError error_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const StoreError& error) {
      return error;
    }
    ADD_FAILURE() << "expected a StoreError";
    return StoreError(StoreErrc::failed, "(none)");
  }

  TempDir dir_;
  // Whatever the CI environment says, these tests choose their own database files.
  ScopedEnv no_db_path_{"SYNTHORG_DB_PATH", nullptr};
  std::shared_ptr<host::ThreadPoolExecutor> executor_;
  ServiceRegistry registry_;
  EventBus bus_;
  Registration executor_registration_;
  std::vector<std::unique_ptr<host::PluginInstance>> instances_;
};

TEST_F(SqliteStoreTest, AFileThatIsNotSqliteIsRefusedAndLeftUntouched) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "company_name: not a database, line " + std::to_string(i) + "\n";
  auto file = dir_ / "synthorg.db";
  write_bytes(file, text);

  auto reason = start_failure(at(file));
  EXPECT_TRUE(contains(reason, file.string())) << "names the file: " << reason;
  EXPECT_TRUE(contains(reason, "not an SQLite database")) << reason;
  EXPECT_TRUE(contains(reason, "fix:")) << "says what to do: " << reason;
  EXPECT_TRUE(contains(reason, "SYNTHORG_DB_PATH")) << reason;

  EXPECT_EQ(read_bytes(file), text) << "the operator's file must not be changed";
  EXPECT_FALSE(fs::exists(dir_ / "synthorg.db-wal"));
  EXPECT_FALSE(fs::exists(dir_ / "synthorg.db-journal"));
}

TEST_F(SqliteStoreTest, AnEmptyFileIsAFreshDatabase) {
  // SQLite treats a zero-length file as an empty database; touch(1) before the first start
  // (a common way to pre-create a volume's file) must not be refused.
  auto file = dir_ / "synthorg.db";
  write_bytes(file, "");
  auto store = start(at(file));
  store->ensure_collection({"t_empty", {}, {}});
  EXPECT_EQ(store->insert("t_empty", {{"a", 1}}).version, 1);
}

TEST_F(SqliteStoreTest, ADirectoryItCannotWriteIsRefused) {
  auto locked = dir_ / "locked";
  fs::create_directories(locked);
  fs::path file = locked / "synthorg.db";
  std::optional<Immutable> immutable;
  if (::geteuid() == 0) {
    // Root ignores mode bits (chmod 0555 stops nothing), so use the immutable attribute,
    // which the kernel enforces for root too. Where it cannot be set (no CAP_LINUX_IMMUTABLE,
    // or tmpfs), put the database under a regular file: that fails for every user as well.
    immutable.emplace(locked);
    if (!immutable->applied()) {
      auto blocker = dir_.write("a-regular-file", "x");
      file = blocker / "synthorg.db";
    }
  } else {
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  }

  auto reason = start_failure(at(file));
  EXPECT_TRUE(contains(reason, file.parent_path().string())) << "names the directory: " << reason;
  EXPECT_TRUE(contains(reason, "fix:")) << reason;
  EXPECT_TRUE(contains(reason, "writable")) << reason;
  EXPECT_TRUE(contains(reason, "SYNTHORG_DB_PATH")) << reason;
  EXPECT_FALSE(fs::exists(file));

  if (::geteuid() != 0) fs::permissions(locked, fs::perms::owner_all);
}

TEST_F(SqliteStoreTest, ADatabaseFileItCannotWriteIsRefused) {
  // SQLite quietly opens a file it may not write read-only; a server that starts like that
  // fails on every write later. It must refuse at start instead.
  auto file = dir_ / "synthorg.db";
  {
    auto store = start(at(file));
    store->ensure_collection({"t_ro", {}, {}});
    store->insert("t_ro", {{"a", 1}}, "one");
    store.reset();
    instances_.back()->stop();
  }
  std::optional<Immutable> immutable;
  if (::geteuid() == 0) {
    immutable.emplace(file);
    if (!immutable->applied()) GTEST_SKIP() << "root, and the immutable attribute cannot be set here";
  } else {
    fs::permissions(file, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  }
  auto before = read_bytes(file);
  auto reason = start_failure(at(file));
  EXPECT_TRUE(contains(reason, file.string())) << reason;
  EXPECT_TRUE(contains(reason, "read-only")) << reason;
  EXPECT_TRUE(contains(reason, "fix:")) << reason;
  EXPECT_EQ(read_bytes(file), before);
  if (::geteuid() != 0) fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(SqliteStoreTest, AFullDatabaseRefusesWritesKeepsServingAndRecovers) {
  auto file = dir_ / "full.db";
  auto store = start({{"path", file.string()}, {"max_size_mb", 1}});
  store->ensure_collection({"t_full", {{"owner", false}}, {}});
  const std::string blob(16 * 1024, 'x');  // ~2 MiB in 128 documents: twice the limit

  std::optional<StoreError> refused;
  int written = 0;
  std::string refused_id;
  for (int i = 0; i < 128 && !refused; ++i) {
    auto id = "doc-" + std::to_string(i);
    try {
      store->insert("t_full", {{"owner", "o" + std::to_string(i % 3)}, {"blob", blob}}, id);
      ++written;
    } catch (const StoreError& error) {
      refused = error;
      refused_id = id;
    }
  }
  ASSERT_TRUE(refused) << "2 MiB went into a 1 MiB database";
  EXPECT_GT(written, 20) << "refused long before the limit";
  EXPECT_EQ(refused->code(), StoreErrc::full) << refused->what();
  std::string message = refused->what();
  EXPECT_TRUE(contains(message, "full")) << message;
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "max_size_mb")) << message;
  EXPECT_TRUE(contains(message, "free disk space")) << message;

  // Nothing of the refused write, everything before it, and reads go on.
  EXPECT_FALSE(store->get("t_full", refused_id)) << "the refused insert is readable";
  EXPECT_EQ(store->count("t_full"), written);
  ASSERT_TRUE(store->get("t_full", "doc-0"));
  EXPECT_EQ(store->get("t_full", "doc-0")->data.at("blob"), blob);
  Query by_owner;
  by_owner.where = {{"owner", "o1"}};
  by_owner.limit = 1000;
  EXPECT_EQ(store->query("t_full", by_owner).documents.size(), static_cast<std::size_t>((written + 1) / 3));

  // A transaction that cannot fit leaves nothing behind either.
  auto before = store->count("t_full");
  auto in_transaction = error_of([&] {
    store->transaction([&](StoreOps& ops) {
      for (int i = 0; i < 128; ++i) ops.insert("t_full", {{"blob", blob}}, "tx-" + std::to_string(i));
    });
  });
  EXPECT_EQ(in_transaction.code(), StoreErrc::full) << in_transaction.what();
  EXPECT_EQ(store->count("t_full"), before);
  EXPECT_FALSE(store->get("t_full", "tx-0"));

  // Removing documents frees pages that writes then reuse.
  for (int i = 0; i < written / 2; ++i) ASSERT_TRUE(store->remove("t_full", "doc-" + std::to_string(i)));
  EXPECT_NO_THROW(store->insert("t_full", {{"owner", "o9"}, {"blob", blob}}, refused_id));
  EXPECT_TRUE(store->get("t_full", refused_id));
  EXPECT_EQ(RawDatabase(file).integrity(), "ok");
}

// Every process using the file holds <path>.lock shared (a server and `synthorg backup
// create` may run side by side); a restore needs it alone. An flock() belongs to an open file
// description, so a second instance in this process behaves as a second process would.
TEST_F(SqliteStoreTest, ASecondUserOfTheFileIsAllowedButBlocksARestore) {
  auto file = dir_ / "shared.db";
  auto first = start(at(file));
  first->ensure_collection({"t_shared", {}, {}});
  first->insert("t_shared", {{"a", 1}}, "kept");
  auto snapshot_dir = dir_ / "snap";
  fs::create_directories(snapshot_dir);
  auto snapshot = first->snapshot(snapshot_dir);
  first->insert("t_shared", {{"a", 2}}, "after-snapshot");

  configured(at(file)).start();
  auto second = registry_.all<Store>().back();
  ASSERT_NE(second, first);
  EXPECT_EQ(second->count("t_shared"), 2) << "both see one database";

  auto refused = error_of([&] { second->restore(snapshot); });
  EXPECT_EQ(refused.code(), StoreErrc::conflict) << refused.what();
  std::string message = refused.what();
  EXPECT_TRUE(contains(message, "another synthorg process is using")) << message;
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "stop it")) << "says what to do: " << message;
  EXPECT_EQ(first->count("t_shared"), 2) << "the refused restore changed the data";
  EXPECT_TRUE(first->get("t_shared", "after-snapshot"));

  // The refused restore must not have cost the second user its own shared lock (on Linux a
  // failed flock() upgrade drops the lock it held): with the first user gone, a third one
  // must still be refused, because the second is still serving.
  first.reset();
  instances_.front()->stop();
  configured(at(file)).start();
  std::shared_ptr<Store> third;
  for (auto& store : registry_.all<Store>())
    if (store != second) third = store;
  ASSERT_TRUE(third);
  auto still_refused = error_of([&] { third->restore(snapshot); });
  EXPECT_EQ(still_refused.code(), StoreErrc::conflict) << still_refused.what();

  // Alone, a restore goes through.
  second.reset();
  instances_[1]->stop();
  EXPECT_NO_THROW(third->restore(snapshot));
  EXPECT_EQ(third->count("t_shared"), 1);
  EXPECT_FALSE(third->get("t_shared", "after-snapshot"));
}

TEST_F(SqliteStoreTest, AStartDuringARestoreInAnotherProcessIsRefused) {
  auto file = dir_ / "restoring.db";
  {
    auto store = start(at(file));
    store.reset();
    instances_.back()->stop();
  }
  // What a restore in another process holds while it copies pages in.
  int fd = ::open((file.string() + ".lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto reason = start_failure(at(file));
  EXPECT_TRUE(contains(reason, "restore")) << reason;
  EXPECT_TRUE(contains(reason, file.string())) << reason;
  EXPECT_TRUE(contains(reason, "start again")) << "says what to do: " << reason;
  ::close(fd);
  EXPECT_NO_THROW(start(at(file)));
}

TEST_F(SqliteStoreTest, DbPathFromTheEnvironmentWinsOverTheConfig) {
  auto configured_file = dir_ / "from-config.db";
  auto env_file = dir_ / "volume" / "from-env.db";  // its directory does not exist yet
  ScopedEnv env("SYNTHORG_DB_PATH", env_file.c_str());
  auto store = start(at(configured_file));
  EXPECT_EQ(store->info().backend, "sqlite");
  EXPECT_EQ(store->info().location, env_file.string());
  store->ensure_collection({"t_env", {}, {}});
  store->insert("t_env", {{"a", 1}}, "here");
  EXPECT_TRUE(fs::exists(env_file));
  EXPECT_FALSE(fs::exists(configured_file));
  EXPECT_EQ(RawDatabase(env_file).count("t_env"), 1);
}

TEST_F(SqliteStoreTest, HealthCheckReportsTheStoreUp) {
  auto store = start(at(dir_ / "health.db"));
  std::shared_ptr<HealthCheck> check;
  for (auto& candidate : registry_.all<HealthCheck>())
    if (candidate->name() == "store") check = candidate;
  ASSERT_TRUE(check) << "no HealthCheck named \"store\"";
  EXPECT_TRUE(check->critical()) << "readiness depends on the store";
  auto report = check->check();
  EXPECT_TRUE(report.up) << report.detail;
  EXPECT_TRUE(report.detail.empty()) << report.detail;
  EXPECT_EQ(report.data.value("backend", ""), "sqlite");
  check.reset();
  store.reset();
  instances_.back()->stop();
  EXPECT_FALSE(registry_.has(HealthCheck::service_id)) << "the health check outlived stop()";
}

class SqliteSnapshotTest : public SqliteStoreTest {
 protected:
  void SetUp() override {
    store_ = start(at(dir_ / "live.db"));
    store_->ensure_collection({"t_live", {{"n", false}}, {}});
    const std::string filler(2000, 'f');  // enough pages that a truncated copy loses real data
    store_->transaction([&](StoreOps& ops) {
      for (int i = 0; i < 200; ++i) ops.insert("t_live", {{"n", i}, {"filler", filler}}, "live-" + std::to_string(i));
    });
    fs::create_directories(dir_ / "snap");
    snapshot_ = store_->snapshot(dir_ / "snap");
  }
  void TearDown() override { store_.reset(); }

  // The live data, as the store and as the file see it, must be what SetUp wrote.
  void expect_live_data_untouched() {
    EXPECT_EQ(store_->count("t_live"), 200);
    auto document = store_->get("t_live", "live-7");
    ASSERT_TRUE(document);
    EXPECT_EQ(document->data.at("n"), 7);
    EXPECT_EQ(RawDatabase(dir_ / "live.db").integrity(), "ok");
  }
  void expect_refused(const Snapshot& snapshot, std::string_view why) {
    SCOPED_TRACE(why);
    auto error = error_of([&] { store_->restore(snapshot); });
    EXPECT_EQ(error.code(), StoreErrc::invalid) << error.what();
    std::string message = error.what();
    if (!snapshot.files.empty() && snapshot.format == "sqlite") {
      EXPECT_TRUE(contains(message, snapshot.files.front().string())) << "names the file: " << message;
    }
    EXPECT_TRUE(contains(message, "not touched")) << "says the live data is safe: " << message;
    expect_live_data_untouched();
  }

  std::shared_ptr<Store> store_;
  Snapshot snapshot_;
};

TEST_F(SqliteSnapshotTest, RestoreRefusesCorruptSnapshotsAndKeepsTheLiveData) {
  ASSERT_EQ(snapshot_.format, "sqlite");
  ASSERT_EQ(snapshot_.files.size(), 1u);
  auto bytes = read_bytes(snapshot_.files.front());
  ASSERT_GT(bytes.size(), 100'000u);
  // Change the live data after the snapshot, so a restore that went through would show.
  store_->remove("t_live", "live-199");
  store_->insert("t_live", {{"n", 7000}}, "live-199");

  auto truncated = dir_ / "truncated.sqlite";
  write_bytes(truncated, bytes.substr(0, bytes.size() / 2));
  expect_refused({{truncated}, "sqlite"}, "truncated to half");

  auto header_only = dir_ / "header-only.sqlite";
  write_bytes(header_only, bytes.substr(0, 60));
  expect_refused({{header_only}, "sqlite"}, "truncated inside the header");

  std::mt19937 random(42);
  std::string noise(64 * 1024, '\0');
  for (auto& byte : noise) byte = static_cast<char>(random());
  auto random_file = dir_ / "random.sqlite";
  write_bytes(random_file, noise);
  expect_refused({{random_file}, "sqlite"}, "random bytes");

  expect_refused({{dir_ / "absent.sqlite"}, "sqlite"}, "a file that is not there");
  expect_refused({{snapshot_.files.front()}, "pg_dump-custom"}, "another backend's format");
  expect_refused({{}, "sqlite"}, "no file");

  // An SQLite database that synthorg did not write.
  auto foreign = dir_ / "foreign.sqlite";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE songs (title TEXT)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  expect_refused({{foreign}, "sqlite"}, "not a synthorg database");

  EXPECT_EQ(store_->get("t_live", "live-199")->data.at("n"), 7000);
  EXPECT_EQ(read_bytes(snapshot_.files.front()), bytes) << "a refused restore changed the snapshot";

  // The intact snapshot still restores.
  store_->restore(snapshot_);
  EXPECT_EQ(store_->get("t_live", "live-199")->data.at("n"), 199);
}

TEST_F(SqliteSnapshotTest, ASnapshotUnderWriteLoadRestoresToAConsistentDatabase) {
  store_->ensure_collection({"t_load", {{"writer", false}}, {}});
  std::atomic<int> written{0};
  std::string writer_error;
  // jthread: a failed assertion below stops and joins it instead of terminating the process.
  std::jthread writer([&](std::stop_token stop) {
    try {
      for (int i = 0; !stop.stop_requested(); ++i) {
        store_->insert("t_load", {{"writer", "w"}, {"i", i}, {"pad", std::string(300, 'p')}}, fmt_id(i));
        ++written;
      }
    } catch (const std::exception& error) {
      writer_error = error.what();
    }
  });
  auto wait_for = [&](int count) {
    for (auto deadline = std::chrono::steady_clock::now() + 30s;
         written < count && writer_error.empty() && std::chrono::steady_clock::now() < deadline;)
      std::this_thread::sleep_for(1ms);
  };
  wait_for(300);
  auto during = dir_ / "during";
  fs::create_directories(during);
  const int before_snapshot = written;
  auto snapshot = store_->snapshot(during);
  const int after_snapshot = written;
  wait_for(after_snapshot + 200);  // the writer went on after the snapshot was taken
  writer.request_stop();
  writer.join();
  ASSERT_TRUE(writer_error.empty()) << "a write failed while the snapshot was taken: " << writer_error;
  const int total = written;
  ASSERT_GT(total, after_snapshot) << "no write ran after the snapshot; the test proves nothing";

  // What the snapshot holds, read by SQLite itself: a consistent prefix of the writes.
  std::int64_t in_snapshot = 0;
  std::vector<std::string> snapshot_ids;
  {
    RawDatabase raw(snapshot.files.front());
    EXPECT_EQ(raw.integrity(), "ok");
    in_snapshot = raw.count("t_load");
    snapshot_ids = raw.column("SELECT id FROM \"doc_t_load\" ORDER BY id");
    EXPECT_EQ(raw.count("t_live"), 200);
  }
  EXPECT_GE(in_snapshot, before_snapshot);
  EXPECT_LE(in_snapshot, after_snapshot);
  ASSERT_EQ(static_cast<std::int64_t>(snapshot_ids.size()), in_snapshot);
  for (std::int64_t i = 0; i < in_snapshot; ++i)
    ASSERT_EQ(snapshot_ids[static_cast<std::size_t>(i)], fmt_id(static_cast<int>(i))) << "a gap in the writes";

  // Restore while a reader keeps reading: it sees the old database or the new one, no mix,
  // and no error.
  std::set<std::int64_t> counts_seen;
  std::string reader_error;
  std::jthread reader([&](std::stop_token restored) {
    try {
      for (bool last = false; !last;) {
        last = restored.stop_requested();  // one more read once the restore is done
        counts_seen.insert(store_->count("t_load"));
      }
    } catch (const std::exception& error) {
      reader_error = error.what();
    }
  });
  store_->restore(snapshot);
  reader.request_stop();
  reader.join();
  EXPECT_TRUE(reader_error.empty()) << "a read failed during the restore: " << reader_error;
  for (auto seen : counts_seen) EXPECT_TRUE(seen == total || seen == in_snapshot) << "a reader saw " << seen;

  EXPECT_EQ(store_->count("t_load"), in_snapshot);
  EXPECT_EQ(store_->count("t_live"), 200);
  EXPECT_EQ(RawDatabase(dir_ / "live.db").integrity(), "ok");
  Query everything;
  everything.limit = 1000;
  std::vector<std::string> restored_ids;
  for (;;) {
    auto page = store_->query("t_load", everything);
    for (auto& document : page.documents) restored_ids.push_back(document.id);
    if (page.next_cursor.empty()) break;
    everything.cursor = page.next_cursor;
  }
  EXPECT_EQ(restored_ids, snapshot_ids);
  // And it takes writes again, indexes included.
  store_->insert("t_load", {{"writer", "after"}}, "after-restore");
  Query after;
  after.where = {{"writer", "after"}};
  EXPECT_EQ(store_->query("t_load", after).documents.size(), 1u);
}

}  // namespace
}  // namespace synthorg
