// A thin RAII layer over one sqlite3 connection: prepared statements cached by SQL text,
// errors turned into StoreError with the database's own words.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "synthorg/services/store.hpp"

namespace synthorg::store_sqlite {

struct ConnectionOptions {
  std::filesystem::path path;
  bool read_only = false;
  int busy_timeout_ms = 5000;
  std::string synchronous = "normal";
  std::int64_t max_pages = 0;  // 0: no cap
};

// One prepared statement, reset and cleared when the holder goes out of scope.
class Statement {
 public:
  explicit Statement(sqlite3_stmt* statement) : statement_(statement) {}
  Statement(Statement&& other) noexcept : statement_(std::exchange(other.statement_, nullptr)) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    if (!statement_) return;
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }

  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::int64_t value);
  // A JSON scalar as SQLite sees json_extract's result: bool as 0/1, null as NULL.
  Statement& bind_json(int index, const nlohmann::json& value);
  // SQLITE_ROW -> true, SQLITE_DONE -> false; anything else throws.
  bool step();
  std::string text(int column) const;
  std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
  bool is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }
  // A column read back as the JSON scalar it holds.
  nlohmann::json json_scalar(int column) const;

 private:
  sqlite3_stmt* statement_;
};

class Connection {
 public:
  explicit Connection(const ConnectionOptions& options);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Prepared once per SQL text and kept for the connection's life.
  Statement prepare(const std::string& sql);
  void execute(const std::string& sql);  // for statements without results
  std::int64_t changes() const { return sqlite3_changes64(db_); }
  sqlite3* handle() const noexcept { return db_; }
  void clear_cache();

  // The database's error as a StoreError, with `what` saying what we were doing.
  [[noreturn]] void fail(int code, std::string_view what) const;

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

// Maps an SQLite result code to the Store's error kinds.
StoreErrc classify(int code) noexcept;

}  // namespace synthorg::store_sqlite
