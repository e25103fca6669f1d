// The SQL the store sends, built from names that were validated first (collection names and
// field paths are letters, digits, underscores and dots), with every value a parameter.
//
// A document field is read as NULLIF(data #> '{a,b}', 'null'::jsonb): JSON null and a missing
// field are both SQL NULL, as json_extract makes them in store-sqlite. The same expression is
// used in filters, ordering and the indexes, so PostgreSQL can use the index for both.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/services/store.hpp"

namespace synthorg::store_postgres::sql {

using Filters = std::vector<std::pair<std::string, nlohmann::json>>;

inline constexpr const char* columns = "id, version, created_at, updated_at, data::text";
inline constexpr const char* meta_table = "synthorg_collections";

bool is_column(std::string_view field) noexcept;  // id, created_at, updated_at

// "doc_<name>", quoted; throws StoreError(invalid) for a name the store does not accept.
std::string table(std::string_view collection);
// A column, or the NULLIF(data #> ...) expression of a document field.
std::string key(std::string_view field);
// ix_<collection>_<8 hex>; the hash covers uniqueness too, so switching an index between
// unique and not replaces it instead of keeping the old one.
std::string index_name(std::string_view collection, const IndexSpec& index);
std::string create_index(std::string_view collection, const IndexSpec& index);
std::string create_table(std::string_view collection);

// A statement and its text parameters, numbered as they are added.
struct Statement {
  std::string text;
  std::vector<std::string> params;
  std::string bind(std::string value) {
    params.push_back(std::move(value));
    return "$" + std::to_string(params.size());
  }
};

// " WHERE ..." for the filters (empty when there are none). `collection` is for messages.
void append_filters(Statement& statement, std::string_view collection, const Filters& where);
// SELECT of one page: the columns, then the order key as text, limit + 1 rows.
Statement page_query(std::string_view collection, const Query& query,
                     const std::optional<store::CursorPosition>& after);
Statement count_query(std::string_view collection, const Filters& where);

}  // namespace synthorg::store_postgres::sql
