#include "connection.hpp"

#include <unistd.h>

#include <fmt/format.h>

namespace synthorg::store_sqlite {

StoreErrc classify(int code) noexcept {
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT: return StoreErrc::conflict;
    case SQLITE_FULL: return StoreErrc::full;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_PERM: return StoreErrc::unavailable;
    default: return StoreErrc::failed;
  }
}

namespace {

// What an operator should do about the errors they can fix.
std::string_view advice(int code) {
  switch (code & 0xff) {
    case SQLITE_NOTADB: return " (fix: the file is not an SQLite database; move it aside or point SYNTHORG_DB_PATH elsewhere)";
    case SQLITE_CORRUPT: return " (fix: restore the latest backup with `synthorg backup restore`)";
    case SQLITE_FULL:
      return " (fix: free disk space, raise max_size_mb in store-sqlite's config, or remove old documents)";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
      return " (fix: make the directory and file writable by the user synthorg runs as, or set SYNTHORG_DB_PATH)";
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return " (another writer held the database longer than busy_timeout; retry)";
    default: return "";
  }
}

}  // namespace

Connection::Connection(const ConnectionOptions& options) : path_(options.path) {
  int flags = SQLITE_OPEN_NOMUTEX | (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int code = sqlite3_open_v2(options.path.c_str(), &db_, flags, nullptr);
  if (code != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(code);
    sqlite3_close(db_);
    db_ = nullptr;
    throw StoreError(classify(code),
                     fmt::format("cannot open SQLite database {}: {}{}", path_.string(), message, advice(code)));
  }
  // SQLite quietly falls back to read-only when it may not write the file; a server opened
  // like that would start and then fail every write. Refuse now, while the reason is plain.
  if (!options.read_only && sqlite3_db_readonly(db_, "main") == 1) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw StoreError(StoreErrc::unavailable,
                     fmt::format("the SQLite database {} is read-only for this user (uid {}) (fix: make the file "
                                 "and its directory writable by the user synthorg runs as, or set SYNTHORG_DB_PATH)",
                                 path_.string(), ::getuid()));
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, options.busy_timeout_ms);
  try {
    // The first statement reads the header: this is where "not a database" shows up.
    execute("PRAGMA foreign_keys = ON");
    if (!options.read_only) {
      execute("PRAGMA journal_mode = WAL");
      execute("PRAGMA synchronous = " + options.synchronous);  // from a fixed enumeration
      if (options.max_pages > 0) execute(fmt::format("PRAGMA max_page_count = {}", options.max_pages));
    }
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Connection::~Connection() {
  clear_cache();
  if (db_) sqlite3_close(db_);
}

void Connection::clear_cache() {
  for (auto& [sql, statement] : statements_) sqlite3_finalize(statement);
  statements_.clear();
}

void Connection::fail(int code, std::string_view what) const {
  throw StoreError(classify(code), fmt::format("SQLite {} at {}: {}{}", what, path_.string(),
                                               db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(code), advice(code)));
}

Statement Connection::prepare(const std::string& sql) {
  auto found = statements_.find(sql);
  if (found != statements_.end()) return Statement(found->second);
  sqlite3_stmt* statement = nullptr;
  int code = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &statement,
                                nullptr);
  if (code != SQLITE_OK) fail(code, "could not prepare a statement");
  statements_.emplace(sql, statement);
  return Statement(statement);
}

void Connection::execute(const std::string& sql) {
  char* error = nullptr;
  int code = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (code != SQLITE_OK) {
    std::string message = error ? error : sqlite3_errstr(code);
    sqlite3_free(error);
    throw StoreError(classify(code), fmt::format("SQLite failed at {}: {}{}", path_.string(), message, advice(code)));
  }
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(statement_, index, value);
  return *this;
}

Statement& Statement::bind_json(int index, const nlohmann::json& value) {
  if (value.is_string()) return bind(index, value.get_ref<const std::string&>());
  if (value.is_boolean()) return bind(index, std::int64_t{value.get<bool>() ? 1 : 0});
  if (value.is_number_integer() && !(value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX))
    return bind(index, value.get<std::int64_t>());
  if (value.is_number()) {
    sqlite3_bind_double(statement_, index, value.get<double>());
    return *this;
  }
  sqlite3_bind_null(statement_, index);
  return *this;
}

bool Statement::step() {
  int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  sqlite3* db = sqlite3_db_handle(statement_);
  throw StoreError(classify(code), fmt::format("SQLite at {}: {}{}", sqlite3_db_filename(db, "main"),
                                               sqlite3_errmsg(db), advice(code)));
}

std::string Statement::text(int column) const {
  auto* bytes = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
  return bytes ? std::string(bytes, static_cast<std::size_t>(sqlite3_column_bytes(statement_, column))) : std::string();
}

nlohmann::json Statement::json_scalar(int column) const {
  switch (sqlite3_column_type(statement_, column)) {
    case SQLITE_INTEGER: return sqlite3_column_int64(statement_, column);
    case SQLITE_FLOAT: return sqlite3_column_double(statement_, column);
    case SQLITE_TEXT: return text(column);
    default: return nullptr;
  }
}

}  // namespace synthorg::store_sqlite
