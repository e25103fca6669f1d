#include "sqlite_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "synthorg/crypto.hpp"

namespace synthorg::store_sqlite {
namespace {

using Filters = std::vector<std::pair<std::string, nlohmann::json>>;

// Set while this thread runs a transaction body, so a call on the Store itself (instead of
// the StoreOps it was given) fails clearly instead of deadlocking on the writer.
thread_local const SqliteStore* transaction_owner = nullptr;

constexpr const char* kColumns = "id, version, created_at, updated_at, data";

[[noreturn]] void fail(StoreErrc code, const std::string& message) { throw StoreError(code, message); }

std::string table_of(std::string_view collection) {
  if (!store::valid_collection_name(collection))
    fail(StoreErrc::invalid, fmt::format("'{}' is not a valid collection name: use ^[a-z][a-z0-9_]{{0,47}}$",
                                         collection));
  return fmt::format("\"doc_{}\"", collection);
}

// The SQL expression for a field: a column for the built-in ones, json_extract otherwise.
// Paths were validated (letters, digits, underscores, dots), so they are safe inside quotes.
std::string key_of(std::string_view field) {
  if (field == "id" || field == "created_at" || field == "updated_at") return std::string(field);
  return fmt::format("json_extract(data, '$.{}')", field);
}

std::string index_name(std::string_view collection, const IndexSpec& index) {
  auto digest = crypto::to_hex(crypto::sha256(index.field + (index.unique ? "!unique" : "")).substr(0, 4));
  return fmt::format("ix_{}_{}", collection, digest);
}

Document read_document(const Statement& row) {
  return {row.text(0), row.integer(1), row.text(2), row.text(3), nlohmann::json::parse(row.text(4))};
}

void check_id(std::string_view collection, std::string_view id) {
  if (!store::valid_document_id(id))
    fail(StoreErrc::invalid, fmt::format("collection '{}': a document id must be 1 to 255 bytes of UTF-8 without "
                                         "control characters",
                                         collection));
}

// "a = ?" for each filter, in order; nulls match missing fields and JSON null alike.
std::string where_clause(const Filters& where) {
  std::string sql;
  for (const auto& [field, value] : where) {
    sql += sql.empty() ? " WHERE " : " AND ";
    sql += key_of(field) + (value.is_null() ? " IS NULL" : " = ?");
  }
  return sql;
}

int bind_filters(Statement& statement, const Filters& where) {
  int index = 1;
  for (const auto& [field, value] : where)
    if (!value.is_null()) statement.bind_json(index++, value);
  return index;
}

// A snapshot file opened read-only and checked by SQLite itself, so that a truncated, damaged
// or foreign file is refused before the live database is touched.
std::unique_ptr<sqlite3, int (*)(sqlite3*)> open_snapshot(const std::filesystem::path& file) {
  auto refuse = [&](const std::string& why) {
    fail(StoreErrc::invalid,
         fmt::format("cannot restore from {}: {}; the live database was not touched", file.string(), why));
  };
  std::error_code error;
  if (!std::filesystem::is_regular_file(file, error)) refuse("there is no such file");
  sqlite3* raw = nullptr;
  int code = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, &sqlite3_close);
  if (code != SQLITE_OK) refuse(fmt::format("SQLite cannot open it ({})", sqlite3_errstr(code)));
  // Every row of a one-column query; the first SQLite error refuses the file.
  auto rows = [&](const char* sql) {
    sqlite3_stmt* statement = nullptr;
    std::vector<std::string> out;
    int status = sqlite3_prepare_v2(db.get(), sql, -1, &statement, nullptr);
    if (status == SQLITE_OK)
      while ((status = sqlite3_step(statement)) == SQLITE_ROW)
        out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0)));
    std::string message = sqlite3_errmsg(db.get());
    sqlite3_finalize(statement);
    if (status == SQLITE_NOTADB) refuse("it is not an SQLite database (is it truncated, or some other file?)");
    if (status != SQLITE_DONE) refuse(fmt::format("SQLite cannot read it ({}): it is truncated or damaged", message));
    return out;
  };
  auto problems = rows("PRAGMA integrity_check(5)");
  if (problems != std::vector<std::string>{"ok"})
    refuse(fmt::format("it fails SQLite's integrity check ({})", problems.empty() ? "no answer" : problems.front()));
  if (rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'synthorg_collections'").empty())
    refuse("it is an SQLite database, but not one synthorg wrote");
  return db;
}

}  // namespace

// The document operations on one connection: the writer inside transactions, or whichever
// connection a single call was given.
class SqliteStore::Ops final : public StoreOps {
 public:
  Ops(SqliteStore& store, Connection& connection) : store_(store), connection_(connection) {}

  Document insert(std::string_view collection, const nlohmann::json& data, std::string_view id) override {
    auto table = table_of(collection);
    auto text = store::check_document(collection, data);
    std::string new_id = id.empty() ? store::new_document_id() : std::string(id);
    check_id(collection, new_id);
    auto indexes = store_.indexes_of(connection_, collection);
    auto now = store::now_timestamp();
    auto statement = connection_.prepare(fmt::format("INSERT INTO {} ({}) VALUES (?, 1, ?, ?, ?)", table, kColumns));
    statement.bind(1, new_id).bind(2, now).bind(3, now).bind(4, text);
    try {
      statement.step();
    } catch (const StoreError& error) {
      if (error.code() == StoreErrc::conflict) explain_conflict(collection, table, indexes, new_id, error);
      throw;
    }
    return {new_id, 1, now, now, data};
  }

  std::optional<Document> get(std::string_view collection, std::string_view id) override {
    auto table = table_of(collection);
    store_.indexes_of(connection_, collection);
    auto statement = connection_.prepare(fmt::format("SELECT {} FROM {} WHERE id = ?", kColumns, table));
    statement.bind(1, id);
    if (!statement.step()) return std::nullopt;
    return read_document(statement);
  }

  Document update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                  std::int64_t expected_version) override {
    auto table = table_of(collection);
    auto text = store::check_document(collection, data);
    auto indexes = store_.indexes_of(connection_, collection);
    auto now = store::now_timestamp();
    auto statement = connection_.prepare(fmt::format(
        "UPDATE {} SET data = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ? "
        "RETURNING version, created_at",
        table));
    statement.bind(1, text).bind(2, now).bind(3, id).bind(4, expected_version);
    bool updated = false;
    Document document{std::string(id), 0, {}, now, data};
    try {
      updated = statement.step();
      if (updated) {
        document.version = statement.integer(0);
        document.created_at = statement.text(1);
        statement.step();  // finish the statement so the write is complete
      }
    } catch (const StoreError& error) {
      if (error.code() == StoreErrc::conflict) explain_conflict(collection, table, indexes, {}, error);
      throw;
    }
    if (!updated) explain_missed_write(collection, table, id, expected_version);
    return document;
  }

  bool remove(std::string_view collection, std::string_view id, std::optional<std::int64_t> expected_version) override {
    auto table = table_of(collection);
    store_.indexes_of(connection_, collection);
    if (!expected_version) {
      auto statement = connection_.prepare(fmt::format("DELETE FROM {} WHERE id = ?", table));
      statement.bind(1, id).step();
      return connection_.changes() > 0;
    }
    auto statement = connection_.prepare(fmt::format("DELETE FROM {} WHERE id = ? AND version = ?", table));
    statement.bind(1, id).bind(2, *expected_version).step();
    if (connection_.changes() > 0) return true;
    if (!current_version(table, id)) return false;
    explain_missed_write(collection, table, id, *expected_version);
  }

  Page query(std::string_view collection, const Query& query) override {
    auto table = table_of(collection);
    auto indexes = store_.indexes_of(connection_, collection);
    store::check_query(collection, indexes, query);
    std::optional<store::CursorPosition> after;
    if (!query.cursor.empty()) after = store::decode_cursor(query);

    const bool by_id = query.order_by == "id";
    const std::string key = key_of(query.order_by);
    const char* direction = query.descending ? "DESC" : "ASC";
    std::string sql = fmt::format("SELECT {}, {} FROM {}{}", kColumns, key, table, where_clause(query.where));
    if (after) {
      sql += query.where.empty() ? " WHERE " : " AND ";
      const char* beyond = query.descending ? "<" : ">";
      if (by_id) {
        sql += fmt::format("id {} ?", beyond);
      } else if (after->value.is_null()) {
        sql += query.descending ? fmt::format("({} IS NULL AND id < ?)", key)
                                : fmt::format("(({0} IS NULL AND id > ?) OR {0} IS NOT NULL)", key);
      } else {
        sql += fmt::format("({0} {1} ? OR ({0} = ? AND id {1} ?){2})", key, beyond,
                           query.descending ? fmt::format(" OR {} IS NULL", key) : "");
      }
    }
    sql += by_id ? fmt::format(" ORDER BY id {} LIMIT ?", direction)
                 : fmt::format(" ORDER BY {0} {1}, id {1} LIMIT ?", key, direction);

    auto statement = connection_.prepare(sql);
    int index = bind_filters(statement, query.where);
    if (after) {
      if (by_id) {
        statement.bind(index++, after->id);
      } else if (after->value.is_null()) {
        statement.bind(index++, after->id);
      } else {
        statement.bind_json(index, after->value).bind_json(index + 1, after->value).bind(index + 2, after->id);
        index += 3;
      }
    }
    statement.bind(index, static_cast<std::int64_t>(query.limit + 1));

    Page page;
    nlohmann::json last_key;
    while (statement.step()) {
      if (page.documents.size() == query.limit) {
        page.next_cursor = store::encode_cursor(query, {last_key, page.documents.back().id});
        break;
      }
      page.documents.push_back(read_document(statement));
      last_key = statement.json_scalar(5);
    }
    return page;
  }

  std::int64_t count(std::string_view collection, const Filters& where) override {
    auto table = table_of(collection);
    store::check_filters(collection, store_.indexes_of(connection_, collection), where);
    auto statement = connection_.prepare(fmt::format("SELECT count(*) FROM {}{}", table, where_clause(where)));
    bind_filters(statement, where);
    statement.step();
    return statement.integer(0);
  }

 private:
  std::optional<std::int64_t> current_version(const std::string& table, std::string_view id) {
    auto statement = connection_.prepare(fmt::format("SELECT version FROM {} WHERE id = ?", table));
    statement.bind(1, id);
    if (!statement.step()) return std::nullopt;
    return statement.integer(0);
  }

  [[noreturn]] void explain_missed_write(std::string_view collection, const std::string& table, std::string_view id,
                                         std::int64_t expected_version) {
    auto version = current_version(table, id);
    if (!version) fail(StoreErrc::not_found, fmt::format("collection '{}' has no document '{}'", collection, id));
    fail(StoreErrc::conflict, fmt::format("collection '{}': document '{}' is at version {}, not {}; re-read it and "
                                          "retry",
                                          collection, id, *version, expected_version));
  }

  // Turns SQLite's "UNIQUE constraint failed" into which id or field clashed.
  [[noreturn]] void explain_conflict(std::string_view collection, const std::string& table,
                                     const std::vector<IndexSpec>& indexes, const std::string& new_id,
                                     const StoreError& error) {
    std::string message = error.what();
    for (const auto& index : indexes)
      if (message.find(index_name(collection, index)) != std::string::npos)
        fail(StoreErrc::conflict, fmt::format("collection '{}': another document already has this '{}' (a unique "
                                              "index)",
                                              collection, index.field));
    if (!new_id.empty() && current_version(table, new_id))
      fail(StoreErrc::conflict,
           fmt::format("collection '{}': a document with id '{}' already exists", collection, new_id));
    throw error;
  }

  SqliteStore& store_;
  Connection& connection_;
};

// A reader connection borrowed from the pool for one call.
class SqliteStore::ReaderLease {
 public:
  ReaderLease(SqliteStore& store, std::unique_ptr<Connection> connection)
      : store_(store), connection_(std::move(connection)) {}
  ReaderLease(ReaderLease&&) = default;
  ~ReaderLease() {
    if (!connection_) return;
    std::lock_guard lock(store_.readers_mutex_);
    store_.idle_readers_.push_back(std::move(connection_));
    store_.reader_returned_.notify_one();
  }
  Connection& operator*() const { return *connection_; }

 private:
  SqliteStore& store_;
  std::unique_ptr<Connection> connection_;
};

SqliteStore::SqliteStore(StoreOptions options) : options_(std::move(options)) {
  auto lock_path = options_.connection.path.string() + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    fail(StoreErrc::unavailable, fmt::format("cannot create {}: {} (fix: make the directory writable by the user "
                                             "synthorg runs as, or set SYNTHORG_DB_PATH)",
                                             lock_path, std::strerror(errno)));
  if (::flock(lock_fd_, LOCK_SH | LOCK_NB) != 0) {
    ::close(lock_fd_);
    fail(StoreErrc::unavailable, fmt::format("a restore of {} is in progress in another process; start again when "
                                             "it has finished",
                                             options_.connection.path.string()));
  }
  try {
    writer_ = std::make_unique<Connection>(options_.connection);
  } catch (...) {
    ::close(lock_fd_);
    throw;
  }
  writer_->execute(
      "CREATE TABLE IF NOT EXISTS synthorg_collections ("
      " name TEXT PRIMARY KEY, schema_version INTEGER NOT NULL, indexes TEXT NOT NULL, updated_at TEXT NOT NULL)");
}

SqliteStore::~SqliteStore() {
  writer_.reset();
  idle_readers_.clear();
  ::close(lock_fd_);
}

std::unique_lock<std::mutex> SqliteStore::lock_writer() {
  if (transaction_owner == this)
    fail(StoreErrc::invalid, "nested call on the Store inside a transaction; use the StoreOps passed to the "
                             "transaction body");
  return std::unique_lock(writer_mutex_);
}

SqliteStore::ReaderLease SqliteStore::lease_reader() {
  if (transaction_owner == this)
    fail(StoreErrc::invalid, "nested call on the Store inside a transaction; use the StoreOps passed to the "
                             "transaction body");
  std::unique_lock lock(readers_mutex_);
  if (idle_readers_.empty() && open_readers_ < options_.readers) {
    ++open_readers_;
    lock.unlock();
    auto reader_options = options_.connection;
    reader_options.read_only = true;
    try {
      return ReaderLease(*this, std::make_unique<Connection>(reader_options));
    } catch (...) {
      std::lock_guard relock(readers_mutex_);
      --open_readers_;
      throw;
    }
  }
  // Bounded like a write: a health check or request must not hang behind a pool in use.
  if (!reader_returned_.wait_for(lock, std::chrono::milliseconds(options_.connection.busy_timeout_ms),
                                 [&] { return !idle_readers_.empty(); }))
    fail(StoreErrc::unavailable, fmt::format("all {} reader connections stayed busy for {} ms; raise readers or "
                                             "retry",
                                             options_.readers, options_.connection.busy_timeout_ms));
  auto connection = std::move(idle_readers_.back());
  idle_readers_.pop_back();
  return ReaderLease(*this, std::move(connection));
}

std::vector<IndexSpec> SqliteStore::indexes_of(Connection& connection, std::string_view collection) {
  {
    std::shared_lock lock(collections_mutex_);
    auto found = collections_.find(collection);
    if (found != collections_.end()) return found->second;
  }
  auto statement = connection.prepare("SELECT indexes FROM synthorg_collections WHERE name = ?");
  statement.bind(1, collection);
  if (!statement.step())
    fail(StoreErrc::not_found, fmt::format("collection '{}' does not exist; call ensure_collection first",
                                           collection));
  std::vector<IndexSpec> indexes;
  for (const auto& item : nlohmann::json::parse(statement.text(0)))
    indexes.push_back({item.at("field").get<std::string>(), item.at("unique").get<bool>()});
  std::unique_lock lock(collections_mutex_);
  collections_[std::string(collection)] = indexes;
  return indexes;
}

void SqliteStore::forget_collections() {
  std::unique_lock lock(collections_mutex_);
  collections_.clear();
}

Document SqliteStore::insert(std::string_view collection, const nlohmann::json& data, std::string_view id) {
  auto lock = lock_writer();
  return Ops(*this, *writer_).insert(collection, data, id);
}

std::optional<Document> SqliteStore::get(std::string_view collection, std::string_view id) {
  auto reader = lease_reader();
  return Ops(*this, *reader).get(collection, id);
}

Document SqliteStore::update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                             std::int64_t expected_version) {
  auto lock = lock_writer();
  return Ops(*this, *writer_).update(collection, id, data, expected_version);
}

bool SqliteStore::remove(std::string_view collection, std::string_view id,
                         std::optional<std::int64_t> expected_version) {
  auto lock = lock_writer();
  return Ops(*this, *writer_).remove(collection, id, expected_version);
}

Page SqliteStore::query(std::string_view collection, const Query& query) {
  auto reader = lease_reader();
  return Ops(*this, *reader).query(collection, query);
}

std::int64_t SqliteStore::count(std::string_view collection, const Filters& where) {
  auto reader = lease_reader();
  return Ops(*this, *reader).count(collection, where);
}

void SqliteStore::transaction(const std::function<void(StoreOps&)>& body) {
  auto lock = lock_writer();
  writer_->execute("BEGIN IMMEDIATE");
  transaction_owner = this;
  try {
    Ops ops(*this, *writer_);
    body(ops);
    transaction_owner = nullptr;
    writer_->execute("COMMIT");
  } catch (...) {
    transaction_owner = nullptr;
    // COMMIT can fail too (disk full); either way nothing of the body may remain.
    if (!sqlite3_get_autocommit(writer_->handle())) sqlite3_exec(writer_->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void SqliteStore::ensure_collection(const CollectionSpec& spec) {
  auto table = table_of(spec.name);
  auto migrations = store::check_collection_spec(spec);
  auto declared = store::indexes_to_json(spec.indexes);

  auto lock = lock_writer();
  transaction_owner = this;
  auto run = [&](const std::function<void()>& step) {
    writer_->execute("BEGIN IMMEDIATE");
    try {
      step();
      writer_->execute("COMMIT");
    } catch (...) {
      if (!sqlite3_get_autocommit(writer_->handle()))
        sqlite3_exec(writer_->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  };
  auto recorded_version = [&] {
    auto statement = writer_->prepare("SELECT schema_version FROM synthorg_collections WHERE name = ?");
    statement.bind(1, spec.name);
    return statement.step() ? statement.integer(0) : 0;
  };
  try {
    run([&] {
      writer_->execute(fmt::format("CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                                   "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, data TEXT NOT NULL)",
                                   table));
      std::set<std::string> wanted;
      for (const auto& index : spec.indexes) {
        auto name = index_name(spec.name, index);
        wanted.insert(name);
        writer_->execute(fmt::format("CREATE {}INDEX IF NOT EXISTS \"{}\" ON {} ({}{})", index.unique ? "UNIQUE " : "",
                                     name, table, key_of(index.field), index.unique ? "" : ", id"));
      }
      std::vector<std::string> stale;
      auto existing = writer_->prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?");
      existing.bind(1, fmt::format("doc_{}", spec.name));
      while (existing.step())
        if (auto name = existing.text(0); name.starts_with("ix_") && !wanted.contains(name)) stale.push_back(name);
      for (const auto& name : stale) writer_->execute(fmt::format("DROP INDEX \"{}\"", name));
      auto upsert = writer_->prepare(
          "INSERT INTO synthorg_collections (name, schema_version, indexes, updated_at) VALUES (?, 0, ?, ?) "
          "ON CONFLICT (name) DO UPDATE SET indexes = excluded.indexes, updated_at = excluded.updated_at");
      upsert.bind(1, spec.name).bind(2, declared.dump()).bind(3, store::now_timestamp()).step();
      std::unique_lock cache(collections_mutex_);
      collections_[spec.name] = spec.indexes;
    });
    for (const auto& migration : migrations) {
      run([&] {
        if (recorded_version() >= migration.version) return;
        Ops ops(*this, *writer_);
        migration.apply(ops);
        auto bump = writer_->prepare("UPDATE synthorg_collections SET schema_version = ?, updated_at = ? WHERE name = ?");
        bump.bind(1, std::int64_t{migration.version}).bind(2, store::now_timestamp()).bind(3, spec.name).step();
      });
    }
  } catch (...) {
    transaction_owner = nullptr;
    forget_collections();  // a rolled-back index change must not linger in the cache
    throw;
  }
  transaction_owner = nullptr;
}

int SqliteStore::schema_version(std::string_view collection) {
  auto reader = lease_reader();
  auto statement = (*reader).prepare("SELECT schema_version FROM synthorg_collections WHERE name = ?");
  statement.bind(1, collection);
  return statement.step() ? static_cast<int>(statement.integer(0)) : 0;
}

void SqliteStore::ping() {
  auto reader = lease_reader();
  auto statement = (*reader).prepare("SELECT count(*) FROM synthorg_collections");
  statement.step();
}

StoreInfo SqliteStore::info() const {
  return {"sqlite", options_.connection.path.string(), sqlite3_libversion()};
}

Snapshot SqliteStore::snapshot(const std::filesystem::path& directory) {
  // VACUUM INTO reads one consistent snapshot (a WAL read transaction), so writers go on.
  auto target = directory / "database.sqlite";
  std::filesystem::remove(target);
  auto reader = lease_reader();
  auto statement = (*reader).prepare("VACUUM INTO ?");
  statement.bind(1, target.string()).step();
  return {{target}, "sqlite"};
}

void SqliteStore::restore(const Snapshot& snapshot) {
  if (snapshot.format != "sqlite")
    fail(StoreErrc::invalid, fmt::format("store-sqlite cannot restore a '{}' snapshot: another backend made it; "
                                         "restore it with that backend, or use a backup taken with store-sqlite; "
                                         "the live database was not touched",
                                         snapshot.format));
  if (snapshot.files.size() != 1)
    fail(StoreErrc::invalid, fmt::format("a store-sqlite snapshot is one file, this one lists {}; the live "
                                         "database was not touched",
                                         snapshot.files.size()));
  const auto& file = snapshot.files.front();
  auto source = open_snapshot(file);
  auto lock = lock_writer();
  // Only when no other process has the database open: a running server would keep serving
  // what it cached, and its next write would land on the restored file.
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    // Linux drops the shared lock before it tries the exclusive one, and a failed try does not
    // give it back: take it again, or another process could restore under this live server.
    ::flock(lock_fd_, LOCK_SH);
    fail(StoreErrc::conflict, fmt::format("another synthorg process is using {} (a running server?); stop it "
                                          "before restoring, or restore through that server's API",
                                          options_.connection.path.string()));
  }
  struct BackToShared {
    int fd;
    ~BackToShared() { ::flock(fd, LOCK_SH); }
  } back_to_shared{lock_fd_};
  // The backup API copies every page inside one write transaction on the destination:
  // readers see the old database or the new one, never a mix.
  writer_->clear_cache();
  sqlite3_backup* backup = sqlite3_backup_init(writer_->handle(), "main", source.get(), "main");
  if (!backup) writer_->fail(sqlite3_errcode(writer_->handle()), "could not start the restore");
  int code = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (code != SQLITE_DONE) writer_->fail(code, "restore failed; the live database was not changed");
  forget_collections();
  std::lock_guard readers(readers_mutex_);
  for (auto& reader : idle_readers_) reader->clear_cache();
}

}  // namespace synthorg::store_sqlite
