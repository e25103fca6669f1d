// libFuzzer target: arbitrary bytes as a Store keyset-paging cursor through decode_cursor
// (sdk/src/store.cpp), which both Store backends call on the cursor a client sends back. First as
// they come; then base64url-encoded, so the fuzzer works on the JSON inside; then, when that JSON
// is an object, with the query's fingerprint put in, so it gets past the fingerprint check. Only
// StoreError(invalid) may come out, and a position that decodes must encode to a cursor that
// decodes to the same position.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "synthorg/crypto.hpp"
#include "synthorg/services/store.hpp"

namespace {

using namespace synthorg;

const Query& query() {
  static const Query instance = [] {
    Query q;
    q.where = {{"owner", "alice"}};
    q.order_by = "updated_at";
    q.descending = true;
    return q;
  }();
  return instance;
}

// The fingerprint, as the store writes it into a cursor of this query.
const std::string& fingerprint() {
  static const std::string q =
      nlohmann::json::parse(*crypto::base64url_decode(store::encode_cursor(query(), {nullptr, "x"})))["q"];
  return q;
}

void check(std::string cursor) {
  Query q = query();
  q.cursor = std::move(cursor);
  std::optional<store::CursorPosition> position;
  try {
    position = store::decode_cursor(q);
  } catch (const StoreError& e) {
    if (e.code() != StoreErrc::invalid) __builtin_trap();
    return;
  }
  q.cursor = store::encode_cursor(q, *position);
  auto again = store::decode_cursor(q);
  if (again.value != position->value || again.id != position->id) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  check(input);
  check(crypto::base64url_encode(input));
  auto body = nlohmann::json::parse(input, nullptr, false);
  if (!body.is_object()) return 0;
  body["q"] = fingerprint();
  check(crypto::base64url_encode(body.dump()));
  return 0;
}
