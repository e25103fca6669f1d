#include "postgres_store.hpp"

#include <algorithm>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/prepared_statement>
#include <pqxx/result>
#include <pqxx/transaction>

#include "sql.hpp"

namespace synthorg::store_postgres {
namespace {

using Filters = std::vector<std::pair<std::string, nlohmann::json>>;

// Set while this thread runs a transaction body or a migration, so a call on the Store itself
// (instead of the StoreOps it was given) fails clearly instead of waiting for a connection the
// body may hold.
thread_local const PostgresStore* transaction_owner = nullptr;

class TransactionMarker {
 public:
  explicit TransactionMarker(const PostgresStore* store) : previous_(std::exchange(transaction_owner, store)) {}
  ~TransactionMarker() { transaction_owner = previous_; }
  TransactionMarker(const TransactionMarker&) = delete;
  TransactionMarker& operator=(const TransactionMarker&) = delete;

 private:
  const PostgresStore* previous_;
};

// Advisory lock class for schema changes: two servers ensuring the same collection at once
// would otherwise race in CREATE TABLE IF NOT EXISTS (which is not safe under concurrency).
constexpr const char* kLockCollection = "SELECT pg_advisory_xact_lock(1937337972, hashtext($1))";
constexpr const char* kLockMeta = "SELECT pg_advisory_xact_lock(1937337972, 0)";

[[noreturn]] void fail(StoreErrc code, const std::string& message) { throw StoreError(code, message); }

void check_id(std::string_view collection, std::string_view id) {
  if (!store::valid_document_id(id))
    fail(StoreErrc::invalid, fmt::format("collection '{}': a document id must be 1 to 255 bytes of UTF-8 without "
                                         "control characters",
                                         collection));
}

std::string context_of(std::string_view collection) { return fmt::format("collection '{}'", collection); }

Document read_document(const pqxx::row& row) {
  return {row[0].as<std::string>(), row[1].as<std::int64_t>(), row[2].as<std::string>(), row[3].as<std::string>(),
          nlohmann::json::parse(row[4].c_str())};
}

bool has_unique(const std::vector<IndexSpec>& indexes) {
  return std::any_of(indexes.begin(), indexes.end(), [](const IndexSpec& index) { return index.unique; });
}

}  // namespace

// The document operations on one transaction: an autocommit one for a single call, or the
// open transaction of Store::transaction or a migration.
class PostgresStore::Ops final : public StoreOps {
 public:
  Ops(PostgresStore& store, pqxx::transaction_base& tx, ConnectionPool::Lease& lease, bool in_transaction)
      : store_(store), tx_(tx), lease_(lease), in_transaction_(in_transaction) {}

  Document insert(std::string_view collection, const nlohmann::json& data, std::string_view id) override {
    auto table = sql::table(collection);
    auto text = store::check_document(collection, data);
    std::string new_id = id.empty() ? store::new_document_id() : std::string(id);
    check_id(collection, new_id);
    auto indexes = indexes_of(collection);
    auto now = store::now_timestamp();
    // ON CONFLICT on the id only: a clash there is an answer, not an error that would abort
    // the surrounding transaction. A unique index clash still raises unique_violation.
    auto statement = fmt::format("INSERT INTO {} (id, version, created_at, updated_at, data) "
                                 "VALUES ($1, 1, $2, $2, $3::jsonb) ON CONFLICT (id) DO NOTHING",
                                 table);
    auto result = write(collection, indexes, [&] { return tx_.exec_params(statement, new_id, now, text); });
    if (result.affected_rows() == 0)
      fail(StoreErrc::conflict,
           fmt::format("collection '{}': a document with id '{}' already exists", collection, new_id));
    return {new_id, 1, now, now, data};
  }

  std::optional<Document> get(std::string_view collection, std::string_view id) override {
    auto table = sql::table(collection);
    indexes_of(collection);
    if (!store::valid_document_id(id)) return std::nullopt;  // nothing stored can have it
    auto result = run(collection, [&] {
      return tx_.exec_params(fmt::format("SELECT {} FROM {} WHERE id = $1", sql::columns, table), std::string(id));
    });
    if (result.empty()) return std::nullopt;
    return read_document(result[0]);
  }

  Document update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                  std::int64_t expected_version) override {
    auto table = sql::table(collection);
    auto text = store::check_document(collection, data);
    auto indexes = indexes_of(collection);
    if (!store::valid_document_id(id))
      fail(StoreErrc::not_found, fmt::format("collection '{}' has no document '{}'", collection, id));
    auto now = store::now_timestamp();
    auto statement = fmt::format("UPDATE {} SET data = $1::jsonb, version = version + 1, updated_at = $2 "
                                 "WHERE id = $3 AND version = $4 RETURNING version, created_at",
                                 table);
    auto result = write(collection, indexes,
                        [&] { return tx_.exec_params(statement, text, now, std::string(id), expected_version); });
    if (result.empty()) explain_missed_write(collection, table, id, expected_version);
    return {std::string(id), result[0][0].as<std::int64_t>(), result[0][1].as<std::string>(), now, data};
  }

  bool remove(std::string_view collection, std::string_view id, std::optional<std::int64_t> expected_version) override {
    auto table = sql::table(collection);
    indexes_of(collection);
    if (!store::valid_document_id(id)) return false;
    if (!expected_version) {
      auto result = run(collection, [&] {
        return tx_.exec_params(fmt::format("DELETE FROM {} WHERE id = $1", table), std::string(id));
      });
      return result.affected_rows() > 0;
    }
    auto result = run(collection, [&] {
      return tx_.exec_params(fmt::format("DELETE FROM {} WHERE id = $1 AND version = $2", table), std::string(id),
                             *expected_version);
    });
    if (result.affected_rows() > 0) return true;
    if (!current_version(collection, table, id)) return false;
    explain_missed_write(collection, table, id, *expected_version);
  }

  Page query(std::string_view collection, const Query& query) override {
    sql::table(collection);
    auto indexes = indexes_of(collection);
    store::check_query(collection, indexes, query);
    std::optional<store::CursorPosition> after;
    if (!query.cursor.empty()) after = store::decode_cursor(query);
    auto statement = sql::page_query(collection, query, after);
    auto result = run(collection, [&] {
      return tx_.exec_params(statement.text, pqxx::prepare::make_dynamic_params(statement.params));
    });

    const bool json_key = !sql::is_column(query.order_by);
    Page page;
    page.documents.reserve(std::min<std::size_t>(result.size(), query.limit));
    nlohmann::json last_key;
    for (const auto& row : result) {
      if (page.documents.size() == query.limit) {
        page.next_cursor = store::encode_cursor(query, {last_key, page.documents.back().id});
        break;
      }
      page.documents.push_back(read_document(row));
      if (row[5].is_null()) last_key = nullptr;
      else if (json_key) last_key = nlohmann::json::parse(row[5].c_str());
      else last_key = row[5].as<std::string>();
    }
    return page;
  }

  std::int64_t count(std::string_view collection, const Filters& where) override {
    sql::table(collection);
    store::check_filters(collection, indexes_of(collection), where);
    auto statement = sql::count_query(collection, where);
    auto result = run(collection, [&] {
      return tx_.exec_params(statement.text, pqxx::prepare::make_dynamic_params(statement.params));
    });
    return result[0][0].as<std::int64_t>();
  }

 private:
  // libpqxx's exceptions as StoreError; a table that vanished is forgotten from the cache.
  template <class F>
  auto run(std::string_view collection, F&& work) -> decltype(work()) {
    try {
      return work();
    } catch (const pqxx::pqxx_exception&) {
      auto error = lease_.translate(context_of(collection));
      if (error.code() == StoreErrc::not_found) store_.forget(collection);
      throw error;
    }
  }

  // A write that a unique index may refuse. Inside a transaction it runs under a savepoint,
  // so the caller can catch the conflict and carry on (as SQLite allows) instead of finding
  // the whole transaction aborted.
  template <class F>
  pqxx::result write(std::string_view collection, const std::vector<IndexSpec>& indexes, F&& statement) {
    const bool savepoint = in_transaction_ && has_unique(indexes);
    return run(collection, [&] {
      if (savepoint) tx_.exec0("SAVEPOINT synthorg_write");
      try {
        auto result = statement();
        if (savepoint) tx_.exec0("RELEASE SAVEPOINT synthorg_write");
        return result;
      } catch (const pqxx::unique_violation& e) {
        if (savepoint) tx_.exec0("ROLLBACK TO SAVEPOINT synthorg_write; RELEASE SAVEPOINT synthorg_write");
        throw unique_conflict(collection, indexes, e.what());
      }
    });
  }

  // PostgreSQL names the index in the message (its DETAIL line quotes the value; not used).
  StoreError unique_conflict(std::string_view collection, const std::vector<IndexSpec>& indexes,
                             std::string_view message) {
    for (const auto& index : indexes)
      if (index.unique && message.find("\"" + sql::index_name(collection, index) + "\"") != std::string_view::npos)
        return StoreError(StoreErrc::conflict,
                          fmt::format("collection '{}': another document already has this '{}' (a unique index)",
                                      collection, index.field));
    return StoreError(StoreErrc::conflict,
                      fmt::format("collection '{}': {}", collection, first_line(message)));
  }

  std::vector<IndexSpec> indexes_of(std::string_view collection) {
    return run(collection, [&] { return store_.indexes_of(tx_, collection); });
  }

  std::optional<std::int64_t> current_version(std::string_view collection, const std::string& table,
                                              std::string_view id) {
    auto result = run(collection, [&] {
      return tx_.exec_params(fmt::format("SELECT version FROM {} WHERE id = $1", table), std::string(id));
    });
    if (result.empty()) return std::nullopt;
    return result[0][0].as<std::int64_t>();
  }

  [[noreturn]] void explain_missed_write(std::string_view collection, const std::string& table, std::string_view id,
                                         std::int64_t expected_version) {
    auto version = current_version(collection, table, id);
    if (!version) fail(StoreErrc::not_found, fmt::format("collection '{}' has no document '{}'", collection, id));
    fail(StoreErrc::conflict, fmt::format("collection '{}': document '{}' is at version {}, not {}; re-read it and "
                                          "retry",
                                          collection, id, *version, expected_version));
  }

  PostgresStore& store_;
  pqxx::transaction_base& tx_;
  ConnectionPool::Lease& lease_;
  const bool in_transaction_;
};

PostgresStore::PostgresStore(StoreOptions options, log::Logger log)
    : options_(std::move(options)),
      log_(std::move(log)),
      pool_(options_.connection, options_.pool_size, options_.acquire_timeout, log_),
      server_lock_(pool_.settings(), log_) {
  try {
    create_meta_table();
    server_lock_.acquire_shared();
  } catch (const StoreError& error) {
    // At start there is no next call to retry on: say what to fix instead.
    std::string message = error.what();
    const std::string retry = "; the store retries on the next call";
    if (auto at = message.find(retry); at != std::string::npos)
      message.replace(at, retry.size(), " (fix: start PostgreSQL, or correct the host and port in "
                                        "SYNTHORG_DATABASE_URL)");
    throw StoreError(error.code(), message);
  }
}

PostgresStore::~PostgresStore() = default;

void PostgresStore::create_meta_table() {
  auto held = pool_.acquire();
  held.guarded("creating the metadata table", [&] {
    pqxx::work tx(held.connection());
    tx.exec(kLockMeta);
    tx.exec0(fmt::format("CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, schema_version INT NOT NULL, "
                         "indexes JSONB NOT NULL, updated_at TEXT NOT NULL)",
                         sql::meta_table));
    // "15.18 (Debian 15.18-0+deb12u1)": the number is what matters.
    auto version = tx.exec1("SHOW server_version")[0].as<std::string>();
    server_version_ = version.substr(0, version.find(' '));
    tx.commit();
  });
}

void PostgresStore::refuse_nested() const {
  if (transaction_owner == this)
    fail(StoreErrc::invalid, "nested call on the Store inside a transaction; use the StoreOps passed to the "
                             "transaction body");
}

ConnectionPool::Lease PostgresStore::lease() {
  refuse_nested();
  return pool_.acquire();
}

template <class F>
auto PostgresStore::autocommit(std::string_view collection, F&& work) {
  auto held = lease();
  return held.guarded(context_of(collection), [&] {
    pqxx::nontransaction tx(held.connection());
    Ops ops(*this, tx, held, false);
    return work(ops);
  });
}

std::vector<IndexSpec> PostgresStore::indexes_of(pqxx::transaction_base& tx, std::string_view collection) {
  {
    std::shared_lock lock(collections_mutex_);
    auto found = collections_.find(collection);
    if (found != collections_.end()) return found->second;
  }
  auto result = tx.exec_params(fmt::format("SELECT indexes::text FROM {} WHERE name = $1", sql::meta_table),
                               std::string(collection));
  if (result.empty())
    fail(StoreErrc::not_found, fmt::format("collection '{}' does not exist; call ensure_collection first", collection));
  std::vector<IndexSpec> indexes;
  for (const auto& item : nlohmann::json::parse(result[0][0].c_str()))
    indexes.push_back({item.at("field").get<std::string>(), item.at("unique").get<bool>()});
  remember(std::string(collection), indexes);
  return indexes;
}

void PostgresStore::remember(const std::string& collection, std::vector<IndexSpec> indexes) {
  std::unique_lock lock(collections_mutex_);
  collections_[collection] = std::move(indexes);
}

void PostgresStore::forget(std::string_view collection) {
  std::unique_lock lock(collections_mutex_);
  if (auto found = collections_.find(collection); found != collections_.end()) collections_.erase(found);
}

void PostgresStore::forget_all() {
  std::unique_lock lock(collections_mutex_);
  collections_.clear();
}

Document PostgresStore::insert(std::string_view collection, const nlohmann::json& data, std::string_view id) {
  return autocommit(collection, [&](Ops& ops) { return ops.insert(collection, data, id); });
}

std::optional<Document> PostgresStore::get(std::string_view collection, std::string_view id) {
  return autocommit(collection, [&](Ops& ops) { return ops.get(collection, id); });
}

Document PostgresStore::update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                               std::int64_t expected_version) {
  return autocommit(collection, [&](Ops& ops) { return ops.update(collection, id, data, expected_version); });
}

bool PostgresStore::remove(std::string_view collection, std::string_view id,
                           std::optional<std::int64_t> expected_version) {
  return autocommit(collection, [&](Ops& ops) { return ops.remove(collection, id, expected_version); });
}

Page PostgresStore::query(std::string_view collection, const Query& query) {
  return autocommit(collection, [&](Ops& ops) { return ops.query(collection, query); });
}

std::int64_t PostgresStore::count(std::string_view collection, const Filters& where) {
  return autocommit(collection, [&](Ops& ops) { return ops.count(collection, where); });
}

void PostgresStore::transaction(const std::function<void(StoreOps&)>& body) {
  auto held = lease();
  held.guarded("transaction", [&] {
    pqxx::work tx(held.connection());
    {
      TransactionMarker marker(this);
      Ops ops(*this, tx, held, true);
      body(ops);
    }
    tx.commit();
  });
  // A body that throws leaves through here too: pqxx::work rolls back when it goes out of
  // scope uncommitted, and the exception goes on to the caller unchanged.
}

void PostgresStore::ensure_collection(const CollectionSpec& spec) {
  sql::table(spec.name);
  auto migrations = store::check_collection_spec(spec);
  auto declared = store::indexes_to_json(spec.indexes);

  const auto context = context_of(spec.name);
  const auto table_name = "doc_" + spec.name;
  auto held = lease();
  try {
    int recorded = held.guarded(context, [&] {
      pqxx::work tx(held.connection());
      tx.exec_params(kLockCollection, spec.name);
      tx.exec0(sql::create_table(spec.name));
      std::set<std::string> wanted;
      for (const auto& index : spec.indexes) {
        wanted.insert(sql::index_name(spec.name, index));
        tx.exec0(sql::create_index(spec.name, index));
      }
      auto existing = tx.exec_params("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                                     "AND tablename = $1 AND indexname LIKE 'ix\\_%'",
                                     table_name);
      for (const auto& row : existing)
        if (auto name = row[0].as<std::string>(); !wanted.contains(name))
          tx.exec0(fmt::format("DROP INDEX IF EXISTS \"{}\"", name));
      tx.exec_params0(fmt::format("INSERT INTO {0} (name, schema_version, indexes, updated_at) "
                                  "VALUES ($1, 0, $2::jsonb, $3) ON CONFLICT (name) DO UPDATE SET indexes = "
                                  "excluded.indexes, updated_at = excluded.updated_at "
                                  "WHERE {0}.indexes IS DISTINCT FROM excluded.indexes",
                                  sql::meta_table),
                      spec.name, declared.dump(), store::now_timestamp());
      auto version = tx.exec_params1(fmt::format("SELECT schema_version FROM {} WHERE name = $1", sql::meta_table),
                                     spec.name)[0]
                         .as<int>();
      tx.commit();
      return version;
    });
    remember(spec.name, spec.indexes);

    for (const auto& migration : migrations) {
      if (migration.version <= recorded) continue;
      held.guarded(context, [&] {
        pqxx::work tx(held.connection());
        tx.exec_params(kLockCollection, spec.name);
        // Another server may have run it while we waited for the lock.
        recorded = tx.exec_params1(fmt::format("SELECT schema_version FROM {} WHERE name = $1", sql::meta_table),
                                   spec.name)[0]
                       .as<int>();
        if (recorded >= migration.version) return;
        {
          TransactionMarker marker(this);
          Ops ops(*this, tx, held, true);
          migration.apply(ops);
        }
        tx.exec_params0(fmt::format("UPDATE {} SET schema_version = $1, updated_at = $2 WHERE name = $3",
                                    sql::meta_table),
                        migration.version, store::now_timestamp(), spec.name);
        tx.commit();
        recorded = migration.version;
        log_.info("Migrated a collection", {{"collection", spec.name}, {"version", migration.version},
                                            {"description", migration.description}});
      });
    }
  } catch (...) {
    forget(spec.name);  // whatever was cached for it may describe a schema that rolled back
    throw;
  }
}

int PostgresStore::schema_version(std::string_view collection) {
  if (!store::valid_collection_name(collection)) return 0;
  auto held = lease();
  return held.guarded(context_of(collection), [&] {
    pqxx::nontransaction tx(held.connection());
    auto result = tx.exec_params(fmt::format("SELECT schema_version FROM {} WHERE name = $1", sql::meta_table),
                                 std::string(collection));
    return result.empty() ? 0 : result[0][0].as<int>();
  });
}

void PostgresStore::ping() {
  refuse_nested();
  try {
    server_lock_.ping();
  } catch (const StoreError& error) {
    if (error.code() == StoreErrc::unavailable) throw;
    throw StoreError(StoreErrc::unavailable, error.what());
  }
}

StoreInfo PostgresStore::info() const {
  return {"postgres", options_.connection.location(), server_version_};
}

}  // namespace synthorg::store_postgres
