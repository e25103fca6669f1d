#include "users.hpp"

#include <algorithm>
#include <cctype>
#include <functional>


namespace synthorg::auth {
namespace {

using nlohmann::json;

User user_from(const Document& document) {
  User user;
  user.id = document.id;
  user.username = document.data.value("username", "");
  user.role = document.data.value("role", "viewer");
  user.created_at = document.created_at;
  user.tokens_valid_after = document.data.value("tokens_valid_after", std::int64_t{0});
  user.disabled = document.data.value("disabled", false);
  user.deleted = document.data.value("deleted", false);
  return user;
}

StoredUser stored_from(const Document& document) {
  return {user_from(document), document.data.value("password_hash", ""), document.version};
}

json new_user_data(std::string_view username, std::string_view role, std::string_view password_hash) {
  return {{"username", username},
          {"role", role},
          {"password_hash", password_hash},
          {"tokens_valid_after", 0},
          {"password_changed_at", store::now_timestamp()}};
}

}  // namespace

json User::to_public_json() const {
  return {{"id", id}, {"username", username}, {"role", role}, {"created_at", created_at}, {"disabled", disabled}};
}

std::optional<std::string> normalise_username(std::string_view name) {
  if (name.empty() || name.size() > 64) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    auto lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool allowed = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9') || lower == '.' || lower == '_' ||
                   lower == '@' || lower == '-';
    if (!allowed || static_cast<unsigned char>(c) >= 0x80) return std::nullopt;
    out += lower;
  }
  if (!std::isalnum(static_cast<unsigned char>(out.front()))) return std::nullopt;
  return out;
}

bool valid_role(std::string_view role) noexcept { return role == "admin" || role == "operator" || role == "viewer"; }

void UserStore::ensure_collections() {
  store_->ensure_collection({std::string(users_collection), {{"username", true}}, {}});
  store_->ensure_collection({std::string(meta_collection), {}, {}});
  store_->ensure_collection({std::string(revoked_collection), {}, {}});
}

std::vector<User> UserStore::load_all() {
  std::vector<User> users;
  Query query;
  query.limit = 1000;
  for (;;) {
    auto page = store_->query(users_collection, query);
    for (const auto& document : page.documents) users.push_back(user_from(document));
    if (page.next_cursor.empty()) break;
    query.cursor = page.next_cursor;
  }
  return users;
}

std::optional<StoredUser> UserStore::find_by_username(std::string_view username) {
  Query query;
  query.where = {{"username", std::string(username)}};
  query.limit = 1;
  auto page = store_->query(users_collection, query);
  if (page.documents.empty()) return std::nullopt;
  return stored_from(page.documents.front());
}

std::optional<StoredUser> UserStore::get(std::string_view id) {
  if (!store::valid_document_id(id)) return std::nullopt;
  auto document = store_->get(users_collection, id);
  if (!document) return std::nullopt;
  return stored_from(*document);
}

User UserStore::create(std::string_view username, std::string_view role, std::string_view password_hash) {
  return user_from(store_->insert(users_collection, new_user_data(username, role, password_hash)));
}

User UserStore::create_first_admin(std::string_view username, std::string_view password_hash) {
  User created;
  store_->transaction([&](StoreOps& ops) {
    try {
      ops.insert(meta_collection, {{"done_at", store::now_timestamp()}, {"username", username}}, "setup");
    } catch (const StoreError& error) {
      if (error.code() == StoreErrc::conflict) throw AlreadySetUp();
      throw;
    }
    if (ops.count(users_collection) > 0) throw AlreadySetUp();
    created = user_from(ops.insert(users_collection, new_user_data(username, "admin", password_hash)));
  });
  return created;
}

User UserStore::set_password(std::string_view id, std::string_view password_hash, std::int64_t tokens_valid_after,
                             std::int64_t expected_version) {
  auto document = store_->get(users_collection, id);
  if (!document) throw StoreError(StoreErrc::not_found, "the user no longer exists");
  auto data = document->data;
  data["password_hash"] = password_hash;
  data["tokens_valid_after"] = tokens_valid_after;
  data["password_changed_at"] = store::now_timestamp();
  return user_from(store_->update(users_collection, id, data, expected_version));
}

std::optional<User> UserStore::modify(std::string_view id, const std::function<void(json&)>& change) {
  if (!store::valid_document_id(id)) return std::nullopt;
  for (;;) {
    auto document = store_->get(users_collection, id);
    if (!document || document->data.value("deleted", false)) return std::nullopt;
    auto data = document->data;
    change(data);
    try {
      return user_from(store_->update(users_collection, id, data, document->version));
    } catch (const StoreError& error) {
      if (error.code() != StoreErrc::conflict) throw;  // changed meanwhile: read it again
    }
  }
}

// Every token issued (iat) up to `now` stops working; never moves the line back.
static void revoke_until(json& data, std::int64_t now) {
  data["tokens_valid_after"] = std::max(data.value("tokens_valid_after", std::int64_t{0}), now + 1);
}

std::optional<User> UserStore::set_disabled(std::string_view id, bool disabled, std::int64_t now) {
  return modify(id, [&](json& data) {
    data["disabled"] = disabled;
    if (disabled) revoke_until(data, now);
  });
}

std::optional<User> UserStore::revoke_tokens(std::string_view id, std::int64_t now) {
  return modify(id, [&](json& data) { revoke_until(data, now); });
}

std::optional<User> UserStore::remove(std::string_view id, std::int64_t now) {
  return modify(id, [&](json& data) {
    data["deleted"] = true;
    data["deleted_at"] = store::now_timestamp();
    data["username"] = "deleted:" + std::string(id);  // frees the name; no valid username has ':'
    data["password_hash"] = "";
    revoke_until(data, now);
  });
}

std::pair<std::vector<User>, std::string> UserStore::list(std::size_t limit, const std::string& cursor) {
  Query query;
  query.order_by = "created_at";
  query.limit = limit;
  query.cursor = cursor;
  auto page = store_->query(users_collection, query);
  std::vector<User> users;
  for (const auto& document : page.documents)
    if (!document.data.value("deleted", false)) users.push_back(user_from(document));
  return {std::move(users), page.next_cursor};
}

void UserStore::save_revocation(const Revocation& revocation) {
  try {
    store_->insert(revoked_collection, {{"expires", revocation.expires}}, revocation.key);
  } catch (const StoreError& error) {
    if (error.code() != StoreErrc::conflict) throw;  // logged out twice: already there
  }
}

std::vector<Revocation> UserStore::load_revocations(std::int64_t now) {
  std::vector<Revocation> live;
  std::vector<std::string> expired;
  Query query;
  query.limit = 1000;
  for (;;) {
    auto page = store_->query(revoked_collection, query);
    for (const auto& document : page.documents) {
      auto expires = document.data.value("expires", std::int64_t{0});
      if (expires <= now) expired.push_back(document.id);
      else live.push_back({document.id, expires});
    }
    if (page.next_cursor.empty()) break;
    query.cursor = page.next_cursor;
  }
  for (const auto& id : expired) store_->remove(revoked_collection, id);
  return live;
}

}  // namespace synthorg::auth
