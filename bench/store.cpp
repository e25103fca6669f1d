// The Store's cost on SQLite, measured against the same statements through the raw SQLite C
// API in the same run (issue 3's targets). The Store side is the real product path: the
// store-sqlite plugin file loaded, configured and started as the kernel does it.
//
// Both sides use one file per run in a fresh temporary directory, WAL, synchronous=NORMAL,
// foreign_keys on, the table shape store-sqlite creates, one autocommit transaction per
// single-document insert, and prepared statements reused. Both do the work a caller needs:
//   insert: serialise the JSON object, stamp created_at/updated_at, insert one row;
//   get:    select one row by id and parse its JSON into a Document.
// So the ratio is what the Store adds on top: validation, the collection lookup, locking,
// the statement cache, and copying the Document in and out.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <sqlite3.h>
#include <stdlib.h>

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/log.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/store.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using synthorg::Document;
using synthorg::Store;
using synthorg::StoreOps;

constexpr int kPreloaded = 10'000;  // rows in the table the get benchmarks read from
constexpr int kBulk = 50'000;       // the indexed-insert target

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "synthorg-bench-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// A typical small document (~230 bytes serialised): the shape of a workload record.
json make_document(int i) {
  return {{"owner", "user-" + std::to_string(i % 100)},
          {"status", std::array{"pending", "running", "stopped", "failed"}[i % 4]},
          {"image", "registry.local/synthorg/workload:1.4.2"},
          {"resources", {{"memory_mb", 512}, {"cpus", 0.5}, {"pids", 128}}},
          {"labels", {{"synthorg.managed", "true"}, {"team", "research"}}},
          {"seq", i}};
}

std::string id_of(int i) { return "doc-" + std::to_string(i); }

// A store plugin, loaded from its file and started with a Store registered, as in the kernel.
class PluginStore {
 public:
  explicit PluginStore(const fs::path& database) : PluginStore(SYNTHORG_STORE_SQLITE, {{"path", database.string()}}) {}
  PluginStore(const char* plugin_path, const json& config)
      : executor_(std::make_shared<synthorg::host::ThreadPoolExecutor>(synthorg::host::ExecutorOptions{1, 2, 64})),
        bus_([executor = executor_.get()](std::function<void()> task) { executor->post(std::move(task)); }),
        executor_registration_(registry_.provide<synthorg::Executor>(executor_)) {
    // The plugin's "store open" line would land in the middle of the benchmark table.
    synthorg::log::configure({.level = synthorg::log::Level::warn});
    static std::map<std::string, synthorg::host::PluginFile> files;
    auto found = files.find(plugin_path);
    if (found == files.end()) found = files.emplace(plugin_path, synthorg::host::load_plugin_file(plugin_path)).first;
    const auto& file = found->second;
    instance_ = std::make_unique<synthorg::host::PluginInstance>(
        file, std::make_shared<synthorg::PluginContext>(file.manifest.name, registry_, bus_));
    instance_->configure(config);
    instance_->start();
    store_ = registry_.get<Store>();
  }
  ~PluginStore() {
    store_.reset();
    instance_.reset();  // stops, then destroys
    bus_.shutdown();
    executor_->stop();
  }
  PluginStore(const PluginStore&) = delete;
  PluginStore& operator=(const PluginStore&) = delete;
  Store* operator->() const { return store_.get(); }

 private:
  std::shared_ptr<synthorg::host::ThreadPoolExecutor> executor_;
  synthorg::ServiceRegistry registry_;
  synthorg::EventBus bus_;
  synthorg::Registration executor_registration_;
  std::unique_ptr<synthorg::host::PluginInstance> instance_;
  std::shared_ptr<Store> store_;
};

// The same database through the C API, set up the way store-sqlite sets up its own.
class RawSqlite {
 public:
  explicit RawSqlite(const fs::path& database) {
    check(sqlite3_open_v2(database.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          nullptr));
    sqlite3_busy_timeout(db_, 5000);
    execute("PRAGMA foreign_keys = ON");
    execute("PRAGMA journal_mode = WAL");
    execute("PRAGMA synchronous = NORMAL");
    execute("CREATE TABLE doc_bench (id TEXT PRIMARY KEY, version INTEGER NOT NULL, created_at TEXT NOT NULL, "
            "updated_at TEXT NOT NULL, data TEXT NOT NULL)");
    insert_ = prepare("INSERT INTO doc_bench (id, version, created_at, updated_at, data) VALUES (?, 1, ?, ?, ?)");
    select_ = prepare("SELECT id, version, created_at, updated_at, data FROM doc_bench WHERE id = ?");
  }
  ~RawSqlite() {
    sqlite3_finalize(insert_);
    sqlite3_finalize(select_);
    sqlite3_close(db_);
  }
  RawSqlite(const RawSqlite&) = delete;
  RawSqlite& operator=(const RawSqlite&) = delete;

  void execute(const char* sql) { check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr)); }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* statement = nullptr;
    check(sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr));
    return statement;
  }

  void insert(const std::string& id, const json& data) { insert(insert_, id, data); }
  void insert(sqlite3_stmt* statement, const std::string& id, const json& data) {
    auto text = data.dump();
    auto now = synthorg::store::now_timestamp();
    sqlite3_bind_text(statement, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(statement, 2, now.data(), static_cast<int>(now.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(statement, 3, now.data(), static_cast<int>(now.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(statement, 4, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    int code = sqlite3_step(statement);
    sqlite3_reset(statement);
    if (code != SQLITE_DONE) check(code);
  }

  std::optional<Document> get(const std::string& id) {
    sqlite3_bind_text(select_, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    std::optional<Document> document;
    if (sqlite3_step(select_) == SQLITE_ROW)
      document = Document{column(0), sqlite3_column_int64(select_, 1), column(2), column(3),
                          json::parse(column(4))};
    sqlite3_reset(select_);
    return document;
  }

 private:
  std::string column(int index) const {
    return {reinterpret_cast<const char*>(sqlite3_column_text(select_, index)),
            static_cast<std::size_t>(sqlite3_column_bytes(select_, index))};
  }
  void check(int code) const {
    if (code != SQLITE_OK) throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
};

// ---- single-document insert, autocommit ----

void StoreInsert(benchmark::State& state) {
  TempDir dir;
  PluginStore store(dir / "store.db");
  store->ensure_collection({"bench", {}, {}});
  const auto document = make_document(7);
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(store->insert("bench", document, id_of(i++)));
}

void RawSqliteInsert(benchmark::State& state) {
  TempDir dir;
  RawSqlite raw(dir / "raw.db");
  const auto document = make_document(7);
  int i = 0;
  for (auto _ : state) raw.insert(id_of(i++), document);
}

// ---- get by id from 10,000 rows, JSON parsed ----

// The same pseudo-random ids for both sides.
std::vector<std::string> lookup_order() {
  std::mt19937 random(7);
  std::vector<std::string> ids;
  for (int i = 0; i < 4096; ++i) ids.push_back(id_of(static_cast<int>(random() % kPreloaded)));
  return ids;
}

void StoreGet(benchmark::State& state) {
  TempDir dir;
  PluginStore store(dir / "store.db");
  store->ensure_collection({"bench", {}, {}});
  store->transaction([](StoreOps& ops) {
    for (int i = 0; i < kPreloaded; ++i) ops.insert("bench", make_document(i), id_of(i));
  });
  const auto ids = lookup_order();
  std::size_t next = 0;
  for (auto _ : state) {
    auto document = store->get("bench", ids[next++ & 4095]);
    if (!document) state.SkipWithError("a preloaded document is missing");
    benchmark::DoNotOptimize(document);
  }
}

void RawSqliteGet(benchmark::State& state) {
  TempDir dir;
  RawSqlite raw(dir / "raw.db");
  raw.execute("BEGIN");
  for (int i = 0; i < kPreloaded; ++i) raw.insert(id_of(i), make_document(i));
  raw.execute("COMMIT");
  const auto ids = lookup_order();
  std::size_t next = 0;
  for (auto _ : state) {
    auto document = raw.get(ids[next++ & 4095]);
    if (!document) state.SkipWithError("a preloaded document is missing");
    benchmark::DoNotOptimize(document);
  }
}

// ---- 50,000 inserts in one transaction, two indexed fields ----

std::vector<json> bulk_documents() {
  std::vector<json> documents;
  for (int i = 0; i < 1000; ++i) documents.push_back(make_document(i));
  return documents;
}

void StoreIndexedInsert50k(benchmark::State& state) {
  TempDir dir;
  PluginStore store(dir / "store.db");
  const auto documents = bulk_documents();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto name = "bulk_" + std::to_string(round++);  // an empty collection each time
    store->ensure_collection({name, {{"owner", false}, {"status", false}}, {}});
    state.ResumeTiming();
    store->transaction([&](StoreOps& ops) {
      for (int i = 0; i < kBulk; ++i) ops.insert(name, documents[static_cast<std::size_t>(i % 1000)]);
    });
  }
  state.SetItemsProcessed(state.iterations() * kBulk);
}

// The same 50,000 documents through store-postgres, when bench/run-all gives it a database
// (SYNTHORG_BENCH_POSTGRES_URL); a figure to record, not a target.
void PostgresIndexedInsert50k(benchmark::State& state) {
  const char* url = std::getenv("SYNTHORG_BENCH_POSTGRES_URL");
  if (!url || !*url) {
    state.SkipWithError("set SYNTHORG_BENCH_POSTGRES_URL (bench/run-all does) to measure store-postgres");
    return;
  }
  PluginStore store(SYNTHORG_STORE_POSTGRES, {{"url", url}});
  const auto documents = bulk_documents();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto name = "bulk_" + std::to_string(round++) + "_" + std::to_string(::getpid());
    store->ensure_collection({name, {{"owner", false}, {"status", false}}, {}});
    state.ResumeTiming();
    store->transaction([&](StoreOps& ops) {
      for (int i = 0; i < kBulk; ++i) ops.insert(name, documents[static_cast<std::size_t>(i % 1000)]);
    });
  }
  state.SetItemsProcessed(state.iterations() * kBulk);
}

// The same rows, ids and expression indexes (as store-sqlite declares them) through the C API.
void RawSqliteIndexedInsert50k(benchmark::State& state) {
  TempDir dir;
  RawSqlite raw(dir / "raw.db");
  const auto documents = bulk_documents();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto table = "bulk_" + std::to_string(round++);
    raw.execute(("CREATE TABLE " + table + " (id TEXT PRIMARY KEY, version INTEGER NOT NULL, created_at TEXT NOT "
                 "NULL, updated_at TEXT NOT NULL, data TEXT NOT NULL)").c_str());
    for (const char* field : {"owner", "status"})
      raw.execute(("CREATE INDEX ix_" + table + "_" + field + " ON " + table + " (json_extract(data, '$." + field +
                   "'), id)").c_str());
    auto* insert = raw.prepare(
        ("INSERT INTO " + table + " (id, version, created_at, updated_at, data) VALUES (?, 1, ?, ?, ?)").c_str());
    state.ResumeTiming();
    raw.execute("BEGIN IMMEDIATE");
    for (int i = 0; i < kBulk; ++i)
      raw.insert(insert, synthorg::store::new_document_id(), documents[static_cast<std::size_t>(i % 1000)]);
    raw.execute("COMMIT");
    state.PauseTiming();
    sqlite3_finalize(insert);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kBulk);
}

// Pairs next to each other; bench/run-all interleaves their repetitions and prints the ratios.
BENCHMARK(RawSqliteInsert)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(StoreInsert)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(RawSqliteGet)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(StoreGet)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(RawSqliteIndexedInsert50k)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(StoreIndexedInsert50k)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(PostgresIndexedInsert50k)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace
