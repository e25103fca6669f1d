#include "sql.hpp"

#include <fmt/format.h>

#include "synthorg/crypto.hpp"

namespace synthorg::store_postgres::sql {
namespace {

[[noreturn]] void invalid(const std::string& message) { throw StoreError(StoreErrc::invalid, message); }

// "spec.image" -> '{spec,image}': a text[] literal for #>. Segments are identifiers.
std::string path_literal(std::string_view field) {
  std::string literal = "'{";
  for (char c : field) literal += c == '.' ? ',' : c;
  return literal + "}'";
}

std::string json_param(std::string_view collection, std::string_view field, const nlohmann::json& value) {
  try {
    return value.dump();
  } catch (const nlohmann::json::type_error&) {
    invalid(fmt::format("collection '{}': filter on '{}' holds a string that is not valid UTF-8", collection, field));
  }
}

[[noreturn]] void foreign_cursor() {
  invalid("the cursor is not one this store issued; pass next_cursor from the previous page unchanged");
}

// Rows after the cursor in the page order: keys compared as (key, id) rows, with NULL keys
// first when ascending and last when descending, as ORDER BY puts them.
std::string after_cursor(Statement& statement, const Query& query, const store::CursorPosition& after) {
  if (!store::valid_document_id(after.id) ||
      (after.value.is_string() && after.value.get_ref<const std::string&>().find('\0') != std::string::npos))
    foreign_cursor();
  const bool descending = query.descending;
  const char* beyond = descending ? "<" : ">";
  if (query.order_by == "id") return fmt::format("id {} {}", beyond, statement.bind(after.id));
  if (is_column(query.order_by)) {
    if (!after.value.is_string()) foreign_cursor();
    auto value = statement.bind(after.value.get<std::string>());
    return fmt::format("({}, id) {} ({}, {})", query.order_by, beyond, value, statement.bind(after.id));
  }
  auto k = key(query.order_by);
  if (after.value.is_null()) {
    auto id = statement.bind(after.id);
    return descending ? fmt::format("({} IS NULL AND id < {})", k, id)
                      : fmt::format("(({0} IS NULL AND id > {1}) OR {0} IS NOT NULL)", k, id);
  }
  auto value = statement.bind(after.value.dump());
  auto id = statement.bind(after.id);
  return descending ? fmt::format("(({0}, id) < ({1}::jsonb, {2}) OR {0} IS NULL)", k, value, id)
                    : fmt::format("({}, id) > ({}::jsonb, {})", k, value, id);
}

}  // namespace

bool is_column(std::string_view field) noexcept {
  return field == "id" || field == "created_at" || field == "updated_at";
}

std::string table(std::string_view collection) {
  if (!store::valid_collection_name(collection))
    invalid(fmt::format("'{}' is not a valid collection name: use ^[a-z][a-z0-9_]{{0,47}}$", collection));
  return fmt::format("\"doc_{}\"", collection);
}

std::string key(std::string_view field) {
  if (is_column(field)) return std::string(field);
  return fmt::format("NULLIF(data #> {}, 'null'::jsonb)", path_literal(field));
}

std::string index_name(std::string_view collection, const IndexSpec& index) {
  auto digest = crypto::to_hex(crypto::sha256(index.field + (index.unique ? "!unique" : "")).substr(0, 4));
  return fmt::format("ix_{}_{}", collection, digest);
}

std::string create_table(std::string_view collection) {
  // Collation "C" on the text columns: ids and timestamps sort by their bytes, as in SQLite,
  // whatever the database's locale.
  return fmt::format("CREATE TABLE IF NOT EXISTS {} (id TEXT COLLATE \"C\" PRIMARY KEY, version BIGINT NOT NULL, "
                     "created_at TEXT COLLATE \"C\" NOT NULL, updated_at TEXT COLLATE \"C\" NOT NULL, "
                     "data JSONB NOT NULL)",
                     table(collection));
}

std::string create_index(std::string_view collection, const IndexSpec& index) {
  // NULLS FIRST matches the ascending page order; scanned backwards it gives the descending one.
  return fmt::format("CREATE {}INDEX IF NOT EXISTS \"{}\" ON {} (({}) NULLS FIRST{})", index.unique ? "UNIQUE " : "",
                     index_name(collection, index), table(collection), key(index.field), index.unique ? "" : ", id");
}

void append_filters(Statement& statement, std::string_view collection, const Filters& where) {
  bool first = true;
  for (const auto& [field, value] : where) {
    statement.text += first ? " WHERE " : " AND ";
    first = false;
    if (field == "id") {
      // No stored id can be invalid, and PostgreSQL would reject the bytes instead of not matching.
      const auto& id = value.get_ref<const std::string&>();
      statement.text += store::valid_document_id(id) ? "id = " + statement.bind(id) : "FALSE";
    } else if (value.is_null()) {
      statement.text += key(field) + " IS NULL";
    } else {
      statement.text += fmt::format("{} = {}::jsonb", key(field), statement.bind(json_param(collection, field, value)));
    }
  }
}

Statement page_query(std::string_view collection, const Query& query,
                     const std::optional<store::CursorPosition>& after) {
  const bool by_id = query.order_by == "id";
  const auto k = key(query.order_by);
  Statement statement;
  statement.text = fmt::format("SELECT {}, {} FROM {}", columns, is_column(query.order_by) ? k : "(" + k + ")::text",
                               table(collection));
  append_filters(statement, collection, query.where);
  if (after)
    statement.text += (query.where.empty() ? " WHERE " : " AND ") + after_cursor(statement, query, *after);
  const char* direction = query.descending ? "DESC" : "ASC";
  if (by_id)
    statement.text += fmt::format(" ORDER BY id {}", direction);
  else if (is_column(query.order_by))
    statement.text += fmt::format(" ORDER BY {0} {1}, id {1}", k, direction);
  else
    statement.text += fmt::format(" ORDER BY {0} {1} NULLS {2}, id {1}", k, direction,
                                  query.descending ? "LAST" : "FIRST");
  statement.text += fmt::format(" LIMIT {}", query.limit + 1);
  return statement;
}

Statement count_query(std::string_view collection, const Filters& where) {
  Statement statement;
  statement.text = "SELECT count(*) FROM " + table(collection);
  append_filters(statement, collection, where);
  return statement;
}

}  // namespace synthorg::store_postgres::sql
