// The Store: named collections of JSON documents, on SQLite (store-sqlite) or PostgreSQL
// (store-postgres). Plugins code against this interface only; both backends pass one
// conformance kit (sdk/conformance/store_kit.cpp).
//
// Every call blocks on the database: make it from the Executor's blocking pool
// (Executor::try_post_blocking), never from an I/O thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace synthorg {

enum class StoreErrc {
  not_found,    // no such document (or collection)
  conflict,     // stale version, duplicate id, or a unique index already holds the value
  invalid,      // a bad name, filter, order, cursor or document; the message says which
  unavailable,  // the database cannot be reached or refuses us; retrying later may work
  failed,       // anything else the database reported
  full,         // the database or its disk is full: writes are refused until space is freed; reads go on
};

std::string_view to_string(StoreErrc code) noexcept;

class StoreError : public std::runtime_error {
 public:
  StoreError(StoreErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  StoreErrc code() const noexcept { return code_; }

 private:
  StoreErrc code_;
};

struct Document {
  std::string id;
  std::int64_t version = 0;  // 1 on insert, +1 on every update
  std::string created_at;    // RFC 3339, UTC, milliseconds: 2026-11-23T10:04:05.123Z
  std::string updated_at;
  nlohmann::json data;       // always a JSON object
};

struct IndexSpec {
  std::string field;  // a top-level or dotted path into the document: "owner", "spec.image"
  bool unique = false;
};

class StoreOps;

// One step of a collection's schema; run once, in its own transaction, in version order.
struct Migration {
  int version = 0;  // 1, 2, 3...
  std::string description;
  std::function<void(StoreOps&)> apply;
};

struct CollectionSpec {
  std::string name;  // ^[a-z][a-z0-9_]{0,47}$, unique across plugins: prefix with yours
  std::vector<IndexSpec> indexes;
  std::vector<Migration> migrations;
};

// Equality on indexed fields (and "id"), ordered by one indexed field or by "id",
// "created_at", "updated_at"; ties break on id. Nulls sort first ascending, last descending.
struct Query {
  std::vector<std::pair<std::string, nlohmann::json>> where;  // value: string, number, bool or null
  std::string order_by = "id";
  bool descending = false;
  std::size_t limit = 100;  // 1..1000
  std::string cursor;       // from a previous Page; must be used with the same query
};

struct Page {
  std::vector<Document> documents;
  std::string next_cursor;  // empty on the last page
};

// The document operations, on the store itself (each call its own transaction) or inside
// Store::transaction.
class StoreOps {
 public:
  virtual ~StoreOps() = default;

  // `data` must be an object. An empty id asks the store for a fresh, time-ordered one.
  // Throws conflict if the id exists.
  virtual Document insert(std::string_view collection, const nlohmann::json& data, std::string_view id = {}) = 0;
  virtual std::optional<Document> get(std::string_view collection, std::string_view id) = 0;
  // Compare-and-swap: replaces the data only if the stored version is `expected_version`;
  // otherwise throws conflict (or not_found). Never overwrites a newer write.
  virtual Document update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                          std::int64_t expected_version) = 0;
  // false when there was nothing to remove; conflict when `expected_version` is given and stale.
  virtual bool remove(std::string_view collection, std::string_view id,
                      std::optional<std::int64_t> expected_version = std::nullopt) = 0;
  virtual Page query(std::string_view collection, const Query& query) = 0;
  virtual std::int64_t count(std::string_view collection,
                             const std::vector<std::pair<std::string, nlohmann::json>>& where = {}) = 0;
};

struct StoreInfo {
  std::string backend;   // "sqlite" or "postgres"
  std::string location;  // file path, or the URL without its password
  std::string server_version;
};

// A consistent copy of the whole database, taken while the store keeps serving.
struct Snapshot {
  std::vector<std::filesystem::path> files;  // written into the directory given
  std::string format;                        // "sqlite" or "pg_dump-custom"
};

class Store : public StoreOps {
 public:
  static constexpr std::string_view service_id = "synthorg.Store/1";

  // Creates the collection if missing, creates its declared indexes, and runs the migrations
  // newer than its recorded schema version. Idempotent: a second call changes nothing.
  virtual void ensure_collection(const CollectionSpec& spec) = 0;
  // The schema version recorded for a collection; 0 when it has none.
  virtual int schema_version(std::string_view collection) = 0;

  // Runs `body` in one transaction across collections: commits when it returns, rolls back
  // and rethrows when it throws.
  virtual void transaction(const std::function<void(StoreOps&)>& body) = 0;

  // Cheap round trip to the database; throws StoreError(unavailable) when it fails.
  virtual void ping() = 0;
  virtual StoreInfo info() const = 0;

  // Backup support for the kernel's `synthorg backup`: write a snapshot into `directory`, or
  // replace the whole database with one. Restore is all-or-nothing.
  virtual Snapshot snapshot(const std::filesystem::path& directory) = 0;
  virtual void restore(const Snapshot& snapshot) = 0;
};

namespace store {

// The names and values the kit and both backends agree on.
bool valid_collection_name(std::string_view name) noexcept;
bool valid_field_path(std::string_view field) noexcept;
// Ids: 1..255 bytes of valid UTF-8 without control characters.
bool valid_document_id(std::string_view id) noexcept;
// 12 hex digits of milliseconds since the epoch, then 20 random hex digits: sorts by time.
std::string new_document_id();
// Now, as RFC 3339 UTC with milliseconds.
std::string now_timestamp();

// Documents: a JSON object of valid UTF-8, at most 16 MiB serialised, with no U+0000 in any
// string (PostgreSQL's JSONB cannot hold it, so neither backend accepts it). Returns the
// serialised form; throws StoreError(invalid) saying what is wrong and where.
std::string check_document(std::string_view collection, const nlohmann::json& data);
inline constexpr std::size_t max_document_bytes = 16u << 20;

// Checks a collection spec (name, index fields, migration versions) the same way for every
// backend; throws StoreError(invalid). Returns the migrations sorted by version.
std::vector<Migration> check_collection_spec(const CollectionSpec& spec);
// The declared indexes as backends record them: [{"field": ..., "unique": ...}].
nlohmann::json indexes_to_json(const std::vector<IndexSpec>& indexes);

// Checks a query against a collection's indexes; throws StoreError(invalid) saying what is wrong.
void check_query(std::string_view collection, const std::vector<IndexSpec>& indexes, const Query& query);
void check_filters(std::string_view collection, const std::vector<IndexSpec>& indexes,
                   const std::vector<std::pair<std::string, nlohmann::json>>& where);

// Keyset cursors, opaque to callers: the last row's order value and id, and a fingerprint of
// the query so a cursor cannot be replayed against a different one.
struct CursorPosition {
  nlohmann::json value;
  std::string id;
};
std::string encode_cursor(const Query& query, const CursorPosition& position);
CursorPosition decode_cursor(const Query& query);  // throws StoreError(invalid)

}  // namespace store
}  // namespace synthorg
