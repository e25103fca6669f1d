// store-postgres against a real PostgreSQL (scripts/services starts one on 127.0.0.1:5432):
// what the conformance kit cannot see through the Store interface alone — configuration and
// connection errors, secrets kept out of messages, the pool, reconnection, the server lock,
// snapshots. The shared behaviour is the kit's (conformance.store-postgres).
//
// Environment:
//   SYNTHORG_TEST_POSTGRES_URL  admin URL of a role with CREATEDB (default
//                               postgres://synthorg:synthorg@127.0.0.1:5432/postgres); SSL off.
//   SYNTHORG_TEST_NO_POSTGRES=1 skip these tests; otherwise an unreachable server fails them.
//   SYNTHORG_TEST_PG_RESTART=1  also run PostgresRestart, which restarts the server with
//                               `pg_ctlcluster 15 main` (root, or sudo -n). ctest runs it as its
//                               own serial test (store.postgres_restart) with this set, since a
//                               restart would break every other test using the server meanwhile.
// Each test process makes its own database, synthorg_test_<pid>_<random>, and drops it after.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <thread>

#include <Poco/URI.h>
#include <fmt/format.h>
#include <pqxx/pqxx>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/store.hpp"
#include "http_client.hpp"
#include "test_support.hpp"

namespace synthorg::store_postgres {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const char* env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

bool env_is(const char* name, const char* wanted) { return std::string(env_or(name, "")) == wanted; }

std::string without_password(const Poco::URI& uri) {
  auto user = uri.getUserInfo().substr(0, uri.getUserInfo().find(':'));
  return fmt::format("postgres://{}@{}:{}{}", user, uri.getHost(), uri.getPort(), uri.getPath());
}

// The server under test, and a database of this process's own on it.
struct TestDatabase {
  Poco::URI admin;
  std::string name;
  std::string error;  // why the server could not be used

  TestDatabase() : admin(env_or("SYNTHORG_TEST_POSTGRES_URL", "postgres://synthorg:synthorg@127.0.0.1:5432/postgres")) {
    if (admin.getPort() == 0) admin.setPort(5432);
    std::mt19937_64 random{std::random_device{}()};
    name = fmt::format("synthorg_test_{}_{:08x}", ::getpid(), static_cast<std::uint32_t>(random()));
    try {
      run(fmt::format("CREATE DATABASE {}", name));
    } catch (const std::exception& e) {
      error = fmt::format("PostgreSQL at {} cannot be used: {}\nStart it with scripts/services (or set "
                          "SYNTHORG_TEST_NO_POSTGRES=1 to skip the PostgreSQL tests)",
                          without_password(admin), e.what());
    }
  }
  ~TestDatabase() {
    if (!error.empty()) return;
    try {
      run(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", name));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "could not drop the test database %s: %s\n", name.c_str(), e.what());
    }
  }

  // libpq takes the URL itself; the SSL mode goes on as a parameter here, in the tests only.
  std::string conninfo(const std::string& database) const {
    Poco::URI uri(admin);
    uri.setPath("/" + database);
    return uri.toString() + "?sslmode=disable&connect_timeout=5";
  }
  void run(const std::string& statement, const std::string& database = {}) const {
    pqxx::connection connection(conninfo(database.empty() ? admin.getPath().substr(1) : database));
    pqxx::nontransaction tx(connection);
    tx.exec(statement);
  }
  pqxx::result query(const std::string& statement) const {
    pqxx::connection connection(conninfo(name));
    pqxx::nontransaction tx(connection);
    return tx.exec(statement);
  }
  // The URL the plugin is given: the test database, optionally with another password or port.
  std::string url(std::optional<std::string> password = std::nullopt, std::optional<int> port = std::nullopt) const {
    Poco::URI uri(admin);
    uri.setPath("/" + name);
    if (password) uri.setUserInfo(uri.getUserInfo().substr(0, uri.getUserInfo().find(':')) + ":" + *password);
    if (port) uri.setPort(static_cast<unsigned short>(*port));
    return uri.toString();
  }
  std::string user() const { return admin.getUserInfo().substr(0, admin.getUserInfo().find(':')); }
  std::string password() const {
    auto colon = admin.getUserInfo().find(':');
    return colon == std::string::npos ? std::string() : admin.getUserInfo().substr(colon + 1);
  }
  std::string endpoint() const { return fmt::format("{}:{}", admin.getHost(), admin.getPort()); }
};

const host::PluginFile& plugin_file() {
  static const host::PluginFile file = host::load_plugin_file(SYNTHORG_PLUGIN_BUILD_DIR "/store-postgres.so");
  return file;
}

// What the kernel gives a plugin: registry, bus, Executor.
struct TestHost {
  std::shared_ptr<host::ThreadPoolExecutor> executor =
      std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{1, 2, 64});
  ServiceRegistry registry;
  EventBus bus{[executor = executor.get()](std::function<void()> task) { executor->post(std::move(task)); }};
  Registration executor_registration = registry.provide<Executor>(executor);

  ~TestHost() {
    bus.shutdown();
    executor->stop();
  }
  std::unique_ptr<host::PluginInstance> configured(const json& config) {
    auto instance = std::make_unique<host::PluginInstance>(
        plugin_file(), std::make_shared<PluginContext>("store-postgres", registry, bus));
    instance->configure(config);
    return instance;
  }
  std::unique_ptr<host::PluginInstance> started(const json& config) {
    auto instance = configured(config);
    instance->start();
    return instance;
  }
};

class PostgresTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!env_is("SYNTHORG_TEST_NO_POSTGRES", "1")) database_ = new TestDatabase();
  }
  static void TearDownTestSuite() {
    delete database_;
    database_ = nullptr;
  }
  void SetUp() override {
    if (!database_) GTEST_SKIP() << "SYNTHORG_TEST_NO_POSTGRES=1";
    if (!database_->error.empty()) GTEST_FAIL() << database_->error;
    ::unsetenv("SYNTHORG_DATABASE_URL");
    ::setenv("SYNTHORG_POSTGRES_SSL_MODE", "disable", 1);
  }

  const TestDatabase& db() const { return *database_; }
  json config(const std::string& url) const { return {{"url", url}}; }
  std::shared_ptr<Store> store() const { return host_.registry.get<Store>(); }

  // The reason a lifecycle call failed (PluginFailed carries the plugin's own message).
  static std::string failure_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const std::exception& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected the call to fail";
    return {};
  }
  static StoreError store_error_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const StoreError& e) {
      return e;
    }
    ADD_FAILURE() << "expected a StoreError";
    return StoreError(StoreErrc::failed, "none");
  }

  static TestDatabase* database_;
  TestHost host_;
};

TestDatabase* PostgresTest::database_ = nullptr;

// Runs a command that may start the server, which must not inherit our descriptors: started
// under `flock build.lock ...`, it would hold that lock for as long as it runs.
int run_detached(const std::string& command) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(entry.path().filename().c_str());
    if (fd > 2) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
  }
  return std::system((command + " </dev/null").c_str());
}

TEST_F(PostgresTest, AUrlWithQueryParametersIsRefusedAtConfigure) {
  const std::string secret = "s3cret-in-url";
  auto url = "postgres://synthorg:" + secret + "@127.0.0.1:5432/app?sslmode=disable";
  ::setenv("SYNTHORG_DATABASE_URL", url.c_str(), 1);
  auto error = failure_of([&] { host_.configured(json::object()); });
  EXPECT_NE(error.find("query parameters are not accepted in SYNTHORG_DATABASE_URL; set SSL mode with "
                       "SYNTHORG_POSTGRES_SSL_MODE"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find(secret), std::string::npos) << "the password leaked: " << error;

  ::unsetenv("SYNTHORG_DATABASE_URL");
  error = failure_of([&] { host_.configured(config("postgresql://u:" + secret + "@db/app?")); });
  EXPECT_NE(error.find("query parameters are not accepted"), std::string::npos) << "an empty query too: " << error;
  EXPECT_EQ(error.find(secret), std::string::npos) << error;
}

TEST_F(PostgresTest, OtherBadUrlsAreRefusedWithoutQuotingThePassword) {
  for (const std::string url : {"mysql://u:pw-1@h/db", "postgres://u:pw-2@h:99999/db", "postgres://u:p@w-3@h/db",
                                "postgres://u:pw-4@h/db/extra", "postgres://u:pw#5@h/db"}) {
    auto error = failure_of([&] { host_.configured(config(url)); });
    EXPECT_FALSE(error.empty()) << url;
    for (const char* secret : {"pw-1", "pw-2", "@w-3", "pw-4", "pw#5"})
      EXPECT_EQ(error.find(secret), std::string::npos) << "for " << url << ": " << error;
  }
  auto error = failure_of([&] { host_.configured(config("")); });
  EXPECT_NE(error.find("set SYNTHORG_DATABASE_URL"), std::string::npos) << error;
}

TEST_F(PostgresTest, AnUnknownSslModeIsRefusedWithTheValidOnes) {
  ::setenv("SYNTHORG_POSTGRES_SSL_MODE", "prefer", 1);
  auto error = failure_of([&] { host_.configured(config(db().url())); });
  EXPECT_NE(error.find("SYNTHORG_POSTGRES_SSL_MODE='prefer' is not a valid SSL mode; use one of: disable, require, "
                       "verify-ca, verify-full"),
            std::string::npos)
      << error;
}

// A full disk under PostgreSQL (SQLSTATE 53100, disk_full) is StoreErrc::full, which every route
// answers 507 store_full (tested end to end on SQLite, FullStoreTest): the collection's table is
// moved into a tablespace on a 1 MiB tmpfs and filled. Reads go on.
TEST_F(PostgresTest, AFullDiskIsStoreFullAndReadsGoOn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to mount a 1 MiB tmpfs and create a tablespace as postgres";
  // Under the server's own home: a directory postgres can reach (a test temp dir is root's, 0700).
  std::filesystem::path where = fmt::format("/var/lib/postgresql/synthorg-full-{}", ::getpid());
  std::error_code created;
  if (!std::filesystem::create_directories(where, created))
    GTEST_SKIP() << "cannot create " << where << ": " << created.message() << " (PostgreSQL from Debian's package "
                 << "keeps its home there)";
  if (std::system(("mount -t tmpfs -o size=1m tmpfs " + where.string() + " 2>/dev/null").c_str()) != 0) {
    std::filesystem::remove(where);
    GTEST_SKIP() << "cannot mount a tmpfs here (a container without CAP_SYS_ADMIN)";
  }
  const auto space = fmt::format("synthorg_full_{}", ::getpid());
  auto as_postgres = [](const std::string& statement, const std::string& database) {
    return std::system(fmt::format("cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d {} -c \"{}\" >&2",
                                   database, statement)
                           .c_str());
  };
  struct Cleanup {
    std::function<void()> run;
    ~Cleanup() { run(); }
  } cleanup{[&] {
    as_postgres(fmt::format("DROP TABLE IF EXISTS doc_fill"), db().name);
    as_postgres(fmt::format("DROP TABLESPACE IF EXISTS {}", space), "postgres");
    std::system(("umount " + where.string()).c_str());
    std::filesystem::remove(where);
  }};
  ASSERT_EQ(std::system(("chown postgres:postgres " + where.string()).c_str()), 0);
  ASSERT_EQ(as_postgres(fmt::format("CREATE TABLESPACE {} LOCATION '{}'", space, where.string()), "postgres"), 0);

  auto instance = host_.configured(config(db().url()));
  instance->start();
  auto s = store();
  s->ensure_collection({"fill", {}, {}});
  ASSERT_EQ(as_postgres(fmt::format("ALTER TABLE doc_fill SET TABLESPACE {}", space), db().name), 0);
  std::mt19937 random{7};
  std::string error;
  StoreErrc code = StoreErrc::failed;
  int inserted = 0;
  for (int i = 0; i < 5000 && error.empty(); ++i) {
    std::string pad(3000, ' ');
    for (char& c : pad) c = static_cast<char>('a' + random() % 26);  // incompressible enough: TOAST gains little
    try {
      s->insert("fill", {{"pad", pad}}, "k" + std::to_string(i));
      ++inserted;
    } catch (const StoreError& full) {
      code = full.code();
      error = full.what();
    }
  }
  EXPECT_EQ(code, StoreErrc::full) << "after " << inserted << " documents: " << error;
  EXPECT_GT(inserted, 10);
  EXPECT_EQ(s->count("fill"), inserted) << "what was written stays, what was refused is not half there";
  instance->stop();
}

TEST_F(PostgresTest, TheDefaultSslModeRequiresTls) {
  ::unsetenv("SYNTHORG_POSTGRES_SSL_MODE");
  auto instance = host_.configured(config(db().url()));
  auto error = failure_of([&] { instance->start(); });
  // The test server (Debian's default cluster) may or may not offer TLS; without it the
  // message says how to proceed, and with it the store simply works.
  if (!error.empty()) {
    EXPECT_NE(error.find("SYNTHORG_POSTGRES_SSL_MODE=disable"), std::string::npos) << error;
  }
}

TEST_F(PostgresTest, AWrongPasswordFailsStartWithAClearMessage) {
  const std::string wrong = "not-the-password-4711";
  auto instance = host_.configured(config(db().url(wrong)));
  auto error = failure_of([&] { instance->start(); });
  EXPECT_NE(error.find(fmt::format("PostgreSQL refused the password for user '{}' at {} (fix: check "
                                   "SYNTHORG_DATABASE_URL)",
                                   db().user(), db().endpoint())),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find(wrong), std::string::npos) << "the password leaked: " << error;
  EXPECT_EQ(store(), nullptr) << "a failed start registers nothing";
}

TEST_F(PostgresTest, AnUnreachableServerFailsStart) {
  int port = synthorg::testing::free_port();
  auto instance = host_.configured(config(db().url("unreachable-pw-42", port)));
  auto started = std::chrono::steady_clock::now();
  auto error = failure_of([&] { instance->start(); });
  EXPECT_NE(error.find(fmt::format("PostgreSQL at {}:{} is unreachable: ", db().admin.getHost(), port)),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find("unreachable-pw-42"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << "connect_timeout bounds the attempt";
}

TEST_F(PostgresTest, AMissingDatabaseIsNamed) {
  Poco::URI uri(db().url());
  uri.setPath("/synthorg_no_such_database");
  auto instance = host_.configured(config(uri.toString()));
  auto error = failure_of([&] { instance->start(); });
  EXPECT_NE(error.find("has no database 'synthorg_no_such_database'"), std::string::npos) << error;
}

TEST_F(PostgresTest, TheEnvironmentUrlWinsAndItsPasswordIsDecoded) {
  // "%73" is 's': the password reaches libpq URL-decoded.
  auto password = db().password();
  ASSERT_FALSE(password.empty());
  auto encoded = fmt::format("%{:02X}{}", static_cast<unsigned char>(password[0]), password.substr(1));
  auto url = db().url(encoded);
  ::setenv("SYNTHORG_DATABASE_URL", url.c_str(), 1);
  auto instance = host_.started(config(db().url(std::nullopt, synthorg::testing::free_port())));
  ASSERT_NE(store(), nullptr);
  auto info = store()->info();
  EXPECT_EQ(info.backend, "postgres");
  EXPECT_EQ(info.location, fmt::format("postgres://{}@{}/{}", db().user(), db().endpoint(), db().name));
  EXPECT_EQ(info.location.find(":" + password + "@"), std::string::npos) << info.location;
  EXPECT_FALSE(info.server_version.empty());
  instance->stop();
}

TEST_F(PostgresTest, TheHealthCheckReportsTheServer) {
  auto instance = host_.started(config(db().url()));
  auto checks = host_.registry.all<HealthCheck>();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0]->name(), "store");
  auto report = checks[0]->check();
  EXPECT_TRUE(report.up) << report.detail;
  EXPECT_EQ(report.data.value("backend", ""), "postgres");
  EXPECT_EQ(report.data.dump().find(":" + db().password() + "@"), std::string::npos) << report.data.dump();
  instance->stop();
  EXPECT_TRUE(host_.registry.all<HealthCheck>().empty()) << "stop releases the health check";
}

TEST_F(PostgresTest, TablesAndIndexesHaveTheDocumentedShape) {
  auto instance = host_.started(config(db().url()));
  store()->ensure_collection({"shape", {{"owner", false}, {"spec.image", false}, {"email", true}}, {}});
  auto columns = db().query("SELECT column_name, data_type, collation_name FROM information_schema.columns "
                            "WHERE table_name = 'doc_shape' ORDER BY ordinal_position");
  ASSERT_EQ(columns.size(), 5u);
  EXPECT_EQ(columns[0][0].as<std::string>(), "id");
  EXPECT_EQ(columns[0][2].as<std::string>(""), "C") << "ids sort bytewise, as in SQLite";
  EXPECT_EQ(columns[4][1].as<std::string>(), "jsonb");
  auto indexes = db().query("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'doc_shape' AND "
                            "indexname LIKE 'ix\\_%' ORDER BY indexname");
  ASSERT_EQ(indexes.size(), 3u);
  int unique = 0;
  for (const auto& row : indexes) {
    EXPECT_TRUE(row[0].as<std::string>().starts_with("ix_shape_"));
    EXPECT_EQ(row[0].as<std::string>().size(), std::string("ix_shape_").size() + 8);
    unique += row[1].as<std::string>().starts_with("CREATE UNIQUE INDEX");
  }
  EXPECT_EQ(unique, 1);

  // The filter and order expressions are the indexed ones, so PostgreSQL can use the index.
  for (int i = 0; i < 200; ++i) store()->insert("shape", {{"owner", "o" + std::to_string(i % 7)}, {"n", i}});
  db().query("ANALYZE doc_shape");
  auto plan = db().query("SET enable_seqscan = off; EXPLAIN SELECT id FROM doc_shape WHERE NULLIF(data #> '{owner}', "
                         "'null'::jsonb) = '\"o3\"'::jsonb ORDER BY NULLIF(data #> '{owner}', 'null'::jsonb) ASC "
                         "NULLS FIRST, id ASC LIMIT 11");
  std::string text;
  for (const auto& row : plan) text += row[0].as<std::string>() + "\n";
  EXPECT_NE(text.find("Index"), std::string::npos) << text;
  EXPECT_EQ(text.find("Sort"), std::string::npos) << "the index gives the order\n" << text;

  // Dropping a declared index drops it from the table.
  store()->ensure_collection({"shape", {{"owner", false}}, {}});
  EXPECT_EQ(db().query("SELECT 1 FROM pg_indexes WHERE tablename = 'doc_shape' AND indexname LIKE 'ix\\_%'").size(),
            1u);
  instance->stop();
}

TEST_F(PostgresTest, AnExhaustedPoolFailsAsUnavailableAfterTheTimeout) {
  auto instance = host_.started({{"url", db().url()}, {"pool_size", 1}, {"statement_timeout", "1s"}});
  auto store = this->store();
  store->ensure_collection({"pool", {}, {}});
  std::atomic<bool> inside{false}, done{false};
  std::thread holder([&] {
    store->transaction([&](StoreOps& ops) {
      ops.insert("pool", {{"held", true}});
      inside = true;
      while (!done) std::this_thread::sleep_for(10ms);
    });
  });
  while (!inside) std::this_thread::sleep_for(5ms);
  auto started = std::chrono::steady_clock::now();
  auto report = host_.registry.get<HealthCheck>()->check();
  EXPECT_TRUE(report.up) << "busy is not down: " << report.detail;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms) << "the health check does not wait for the pool";
  started = std::chrono::steady_clock::now();
  auto error = store_error_of([&] { store->count("pool", {}); });
  done = true;
  holder.join();
  EXPECT_EQ(error.code(), StoreErrc::unavailable);
  EXPECT_NE(std::string(error.what()).find("stayed busy"), std::string::npos) << error.what();
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
  EXPECT_EQ(store->count("pool", {}), 1) << "the pool serves again once the connection is back";
  instance->stop();
}

// PostgreSQL aborts a transaction at its first error; the store keeps a refused write from
// doing that, so a body can catch the conflict and go on, as it can on SQLite.
TEST_F(PostgresTest, ATransactionGoesOnAfterACaughtConflict) {
  auto instance = host_.started(config(db().url()));
  auto store = this->store();
  store->ensure_collection({"users", {{"email", true}}, {}});
  store->insert("users", {{"email", "a@example.com"}}, "a");
  store->transaction([&](StoreOps& ops) {
    auto clash = store_error_of([&] { ops.insert("users", {{"email", "a@example.com"}}, "b"); });
    EXPECT_EQ(clash.code(), StoreErrc::conflict);
    EXPECT_STREQ(clash.what(), "collection 'users': another document already has this 'email' (a unique index)");
    EXPECT_EQ(store_error_of([&] { ops.insert("users", {{"email", "c@example.com"}}, "a"); }).code(),
              StoreErrc::conflict);
    EXPECT_EQ(store_error_of([&] { ops.update("users", "a", {{"email", "x"}}, 7); }).code(), StoreErrc::conflict);
    ops.insert("users", {{"email", "b@example.com"}}, "b");
  });
  EXPECT_EQ(store->count("users", {}), 2);
  EXPECT_EQ(store->get("users", "b")->data["email"], "b@example.com");
  instance->stop();
}

TEST_F(PostgresTest, TwoServersEnsureTheSameCollectionAtOnce) {
  auto first = host_.started(config(db().url()));
  TestHost other_host;
  auto second = other_host.started(config(db().url()));
  auto stores = std::vector<std::shared_ptr<Store>>{store(), other_host.registry.get<Store>()};
  int applied = 0;
  std::mutex mutex;
  CollectionSpec spec{"race",
                      {{"owner", false}, {"key", true}},
                      {{1, "seed", [&](StoreOps& ops) {
                          ops.insert("race", {{"owner", "seed"}}, "seed");
                          std::lock_guard lock(mutex);
                          ++applied;
                        }}}};
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&, i] {
      try {
        stores[i % 2]->ensure_collection(spec);
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(applied, 1) << "the migration ran once across both servers";
  EXPECT_EQ(store()->schema_version("race"), 1);
  EXPECT_EQ(store()->count("race", {}), 1);
  second->stop();
  first->stop();
}

TEST_F(PostgresTest, SnapshotAndRestoreRoundTrip) {
  auto instance = host_.started(config(db().url()));
  auto store = this->store();
  store->ensure_collection({"notes", {{"owner", false}}, {{1, "first", [](StoreOps&) {}}}});
  auto kept = store->insert("notes", {{"owner", "ana"}, {"text", "kept"}}, "kept");
  auto changed = store->insert("notes", {{"owner", "ben"}, {"text", "before"}}, "changed");
  store->insert("notes", {{"owner", "cy"}, {"text", "removed later"}}, "removed");

  synthorg::testing::TempDir dir;
  Snapshot snapshot;
  try {
    snapshot = store->snapshot(dir.path());
  } catch (const StoreError& e) {
    if (std::string(e.what()).find("pg_dump is not installed") != std::string::npos)
      GTEST_SKIP() << e.what();
    throw;
  }
  EXPECT_EQ(snapshot.format, "pg_dump-custom");
  ASSERT_EQ(snapshot.files.size(), 1u);
  EXPECT_EQ(snapshot.files[0], dir.path() / "database.pgdump");

  store->update("notes", "changed", {{"owner", "ben"}, {"text", "after"}}, 1);
  store->remove("notes", "removed");
  store->insert("notes", {{"owner", "dee"}}, "added");
  store->ensure_collection({"later", {}, {}});
  store->insert("later", {{"x", 1}});

  // Another live server holds the shared lock: restore refuses and changes nothing.
  {
    TestHost other_host;
    auto other = other_host.started(config(db().url()));
    auto error = store_error_of([&] { store->restore(snapshot); });
    EXPECT_EQ(error.code(), StoreErrc::conflict);
    EXPECT_STREQ(error.what(), "another synthorg server is using this database; stop it before restoring");
    EXPECT_EQ(store->count("notes", {}), 3);
    other->stop();
  }

  // A damaged archive is refused before anything is touched.
  auto garbage = dir.write("garbage.pgdump", "this is not an archive");
  auto error = store_error_of([&] { store->restore({{garbage}, "pg_dump-custom"}); });
  EXPECT_EQ(error.code(), StoreErrc::invalid) << error.what();
  EXPECT_EQ(store->count("notes", {}), 3);
  EXPECT_EQ(store_error_of([&] { store->restore({{garbage}, "sqlite"}); }).code(), StoreErrc::invalid);
  // A truncated one gets past the header check and fails inside pg_restore's transaction.
  auto truncated = dir.path() / "truncated.pgdump";
  std::filesystem::copy_file(snapshot.files[0], truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) * 2 / 3);
  error = store_error_of([&] { store->restore({{truncated}, "pg_dump-custom"}); });
  EXPECT_TRUE(error.code() == StoreErrc::invalid || error.code() == StoreErrc::failed) << error.what();
  EXPECT_EQ(store->count("notes", {}), 3) << "the live data is untouched: " << error.what();
  EXPECT_EQ(store->get("notes", "changed")->data["text"], "after");
  EXPECT_EQ(store->count("later", {}), 1);

  ASSERT_NO_THROW(store->restore(snapshot));
  EXPECT_EQ(store->count("notes", {}), 3);
  auto got = store->get("notes", "kept");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->data, kept.data);
  EXPECT_EQ(got->created_at, kept.created_at);
  EXPECT_EQ(store->get("notes", "changed")->data["text"], "before");
  EXPECT_EQ(store->get("notes", "changed")->version, 1);
  EXPECT_TRUE(store->get("notes", "removed"));
  EXPECT_FALSE(store->get("notes", "added"));
  EXPECT_EQ(store->schema_version("notes"), 1);
  EXPECT_EQ(store_error_of([&] { store->count("later", {}); }).code(), StoreErrc::not_found)
      << "a collection made after the snapshot is gone";
  EXPECT_EQ(store->query("notes", {.where = {{"owner", "ben"}}}).documents.size(), 1u) << "indexes came back too";

  // The server lock is ours again: another server can still start beside us.
  TestHost third_host;
  EXPECT_NO_THROW(third_host.started(config(db().url()))->stop());
  instance->stop();
}

// Restarts the shared server: opt-in (see the top of the file), and run alone by ctest.
TEST_F(PostgresTest, PostgresRestart) {
  if (!env_is("SYNTHORG_TEST_PG_RESTART", "1"))
    GTEST_SKIP() << "restarts the server; set SYNTHORG_TEST_PG_RESTART=1 (ctest runs it as store.postgres_restart)";
  const std::string ctl = ::geteuid() == 0 ? "pg_ctlcluster 15 main" : "sudo -n pg_ctlcluster 15 main";
  auto instance = host_.started({{"url", db().url()}, {"connect_timeout", "2s"}});
  auto store = this->store();
  auto health = host_.registry.get<HealthCheck>();
  store->ensure_collection({"restart", {}, {}});
  store->insert("restart", {{"n", 1}}, "one");

  auto eventually = [](const std::function<void()>& call) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      try {
        call();
        return true;
      } catch (const StoreError&) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(250ms);
      }
    }
  };

  // A restart: idle connections are found dead and replaced, without a failed call.
  ASSERT_EQ(run_detached(ctl + " restart"), 0);
  ASSERT_TRUE(eventually([&] { store->ping(); })) << "the server did not come back";
  EXPECT_TRUE(store->get("restart", "one"));
  EXPECT_NO_THROW(store->insert("restart", {{"n", 2}}, "two"));

  // Down: calls fail as unavailable and say so; the health check reports it.
  ASSERT_EQ(run_detached(ctl + " stop"), 0);
  auto error = store_error_of([&] { store->get("restart", "one"); });
  EXPECT_EQ(error.code(), StoreErrc::unavailable);
  EXPECT_NE(std::string(error.what()).find(fmt::format("PostgreSQL at {} is unreachable: ", db().endpoint())),
            std::string::npos)
      << error.what();
  EXPECT_NE(std::string(error.what()).find("the store retries on the next call"), std::string::npos) << error.what();
  EXPECT_FALSE(health->check().up);

  // Up again: the same store serves, no restart of the kernel needed.
  ASSERT_EQ(run_detached(ctl + " start"), 0);
  ASSERT_TRUE(eventually([&] { store->ping(); }));
  EXPECT_EQ(store->count("restart", {}), 2);
  EXPECT_TRUE(health->check().up);
  instance->stop();
}

}  // namespace
}  // namespace synthorg::store_postgres
