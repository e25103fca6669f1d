// What both Store backends share: names, ids, timestamps, query checks and cursors.
#include "synthorg/services/store.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>

#include <fmt/format.h>

#include "synthorg/crypto.hpp"

namespace synthorg {

std::string_view to_string(StoreErrc code) noexcept {
  switch (code) {
    case StoreErrc::not_found: return "not_found";
    case StoreErrc::conflict: return "conflict";
    case StoreErrc::invalid: return "invalid";
    case StoreErrc::unavailable: return "unavailable";
    case StoreErrc::failed: return "failed";
    case StoreErrc::full: return "full";
  }
  return "failed";
}

namespace store {
namespace {

bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ident_start(char c) { return is_lower(c) || (c >= 'A' && c <= 'Z') || c == '_'; }

// Well-formed UTF-8 without C0 controls or DEL (ids end up in logs and URLs).
bool clean_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x20 || lead == 0x7f) return false;
    std::size_t extra = 0;
    if (lead >= 0xc2 && lead <= 0xdf) extra = 1;
    else if (lead >= 0xe0 && lead <= 0xef) extra = 2;
    else if (lead >= 0xf0 && lead <= 0xf4) extra = 3;
    else if (lead >= 0x80) return false;  // a continuation byte, or an overlong or out-of-range lead
    if (text.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return false;
    i += extra + 1;
  }
  return true;
}

bool scalar(const nlohmann::json& value) {
  return value.is_string() || value.is_number() || value.is_boolean() || value.is_null();
}

bool is_builtin_order(std::string_view field) {
  return field == "id" || field == "created_at" || field == "updated_at";
}

bool indexed(const std::vector<IndexSpec>& indexes, std::string_view field) {
  return std::any_of(indexes.begin(), indexes.end(), [&](const IndexSpec& index) { return index.field == field; });
}

std::string indexed_list(const std::vector<IndexSpec>& indexes) {
  std::string names = "id";
  for (const auto& index : indexes) names += ", " + index.field;
  return names;
}

[[noreturn]] void invalid(const std::string& message) { throw StoreError(StoreErrc::invalid, message); }

std::string fingerprint(const Query& query) {
  nlohmann::json shape = {{"w", nlohmann::json::array()}, {"o", query.order_by}, {"d", query.descending}};
  for (const auto& [field, value] : query.where) shape["w"].push_back({field, value});
  return crypto::to_hex(crypto::sha256(shape.dump()).substr(0, 8));
}

}  // namespace

bool valid_collection_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 48 || !is_lower(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return is_lower(c) || is_digit(c) || c == '_'; });
}

bool valid_field_path(std::string_view field) noexcept {
  if (field.empty() || field.size() > 128) return false;
  bool segment_start = true;
  for (char c : field) {
    if (segment_start) {
      if (!is_ident_start(c)) return false;
      segment_start = false;
    } else if (c == '.') {
      segment_start = true;
    } else if (!is_ident_start(c) && !is_digit(c)) {
      return false;
    }
  }
  return !segment_start;
}

bool valid_document_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= 255 && clean_utf8(id);
}

std::string new_document_id() {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  return fmt::format("{:012x}{}", static_cast<unsigned long long>(millis) & 0xffffffffffffULL,
                     crypto::to_hex(crypto::random_bytes(10)));
}

std::string now_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(millis % 1000));
}

namespace {

// The JSON pointer of the first string (value or key) holding U+0000, or nullopt.
std::optional<std::string> find_nul(const nlohmann::json& value, const std::string& at) {
  if (value.is_string()) {
    if (value.get_ref<const std::string&>().find('\0') != std::string::npos) return at.empty() ? "/" : at;
  } else if (value.is_object()) {
    for (const auto& [key, item] : value.items()) {
      if (key.find('\0') != std::string::npos) return at + "/" + "<key>";
      if (auto found = find_nul(item, at + "/" + key)) return found;
    }
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i)
      if (auto found = find_nul(value[i], at + "/" + std::to_string(i))) return found;
  }
  return std::nullopt;
}

}  // namespace

std::string check_document(std::string_view collection, const nlohmann::json& data) {
  if (!data.is_object())
    invalid(fmt::format("collection '{}': a document must be a JSON object, not {}", collection, data.type_name()));
  std::string text;
  try {
    text = data.dump();
  } catch (const nlohmann::json::type_error&) {
    invalid(fmt::format("collection '{}': the document holds a string that is not valid UTF-8", collection));
  }
  if (text.size() > max_document_bytes)
    invalid(fmt::format("collection '{}': the document is {} bytes; the limit is {} bytes", collection, text.size(),
                        max_document_bytes));
  if (text.find("\\u0000") != std::string::npos)
    if (auto where = find_nul(data, ""))
      invalid(fmt::format("collection '{}': the string at {} contains U+0000, which the store cannot hold",
                          collection, *where));
  return text;
}

std::vector<Migration> check_collection_spec(const CollectionSpec& spec) {
  if (!valid_collection_name(spec.name))
    invalid(fmt::format("'{}' is not a valid collection name: use ^[a-z][a-z0-9_]{{0,47}}$", spec.name));
  std::vector<std::string> fields;
  for (const auto& index : spec.indexes) {
    if (!valid_field_path(index.field) || is_builtin_order(index.field))
      invalid(fmt::format("collection '{}': '{}' cannot be indexed; give a document field path like 'owner' or "
                          "'spec.image'",
                          spec.name, index.field));
    if (std::find(fields.begin(), fields.end(), index.field) != fields.end())
      invalid(fmt::format("collection '{}': '{}' is indexed twice", spec.name, index.field));
    fields.push_back(index.field);
  }
  auto migrations = spec.migrations;
  std::sort(migrations.begin(), migrations.end(), [](const auto& a, const auto& b) { return a.version < b.version; });
  for (std::size_t i = 0; i < migrations.size(); ++i)
    if (migrations[i].version < 1 || (i > 0 && migrations[i].version == migrations[i - 1].version) ||
        !migrations[i].apply)
      invalid(fmt::format("collection '{}': migration versions must be distinct integers from 1 up, each with a body",
                          spec.name));
  return migrations;
}

nlohmann::json indexes_to_json(const std::vector<IndexSpec>& indexes) {
  nlohmann::json declared = nlohmann::json::array();
  for (const auto& index : indexes) declared.push_back({{"field", index.field}, {"unique", index.unique}});
  return declared;
}

void check_filters(std::string_view collection, const std::vector<IndexSpec>& indexes,
                   const std::vector<std::pair<std::string, nlohmann::json>>& where) {
  for (std::size_t i = 0; i < where.size(); ++i) {
    const auto& [field, value] = where[i];
    if (field != "id" && !indexed(indexes, field))
      invalid(fmt::format("collection '{}': cannot filter on '{}', which is not indexed (indexed: {}); "
                          "declare it in the collection's indexes",
                          collection, field, indexed_list(indexes)));
    if (field == "id" && !value.is_string())
      invalid(fmt::format("collection '{}': filter on 'id' must be a string, not {}", collection, value.type_name()));
    if (!scalar(value))
      invalid(fmt::format("collection '{}': filter on '{}' must be a string, number, boolean or null, not {}",
                          collection, field, value.type_name()));
    if (value.is_string() && value.get_ref<const std::string&>().find('\0') != std::string::npos)
      invalid(fmt::format("collection '{}': filter on '{}' contains U+0000, which no stored value can hold",
                          collection, field));
    for (std::size_t j = 0; j < i; ++j)
      if (where[j].first == field)
        invalid(fmt::format("collection '{}': '{}' is filtered twice; give each field once", collection, field));
  }
}

void check_query(std::string_view collection, const std::vector<IndexSpec>& indexes, const Query& query) {
  check_filters(collection, indexes, query.where);
  if (!is_builtin_order(query.order_by) && !indexed(indexes, query.order_by))
    invalid(fmt::format("collection '{}': cannot order by '{}' (possible: created_at, updated_at, {})", collection,
                        query.order_by, indexed_list(indexes)));
  if (query.limit < 1 || query.limit > 1000)
    invalid(fmt::format("collection '{}': limit {} is out of range; use 1 to 1000 and follow the cursor",
                        collection, query.limit));
}

std::string encode_cursor(const Query& query, const CursorPosition& position) {
  nlohmann::json body = {{"q", fingerprint(query)}, {"v", position.value}, {"i", position.id}};
  return crypto::base64url_encode(body.dump());
}

CursorPosition decode_cursor(const Query& query) {
  auto bytes = crypto::base64url_decode(query.cursor);
  nlohmann::json body = bytes ? nlohmann::json::parse(*bytes, nullptr, false) : nlohmann::json();
  if (!body.is_object() || !body.contains("q") || !body.contains("i") || !body.contains("v") ||
      !body["q"].is_string() || !body["i"].is_string() || !scalar(body["v"]))
    invalid("the cursor is not one this store issued; pass next_cursor from the previous page unchanged");
  if (body["q"].get<std::string>() != fingerprint(query))
    invalid("the cursor belongs to a different query; use it with the same filters and order that produced it");
  return {body["v"], body["i"].get<std::string>()};
}

}  // namespace store
}  // namespace synthorg
