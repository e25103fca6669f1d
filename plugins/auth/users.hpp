// The users collection and the revoked-token collection in the Store. Every call blocks on the
// database: make them from the blocking pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/services/store.hpp"

namespace synthorg::auth {

inline constexpr std::string_view users_collection = "auth_users";
// One document, "setup", written in the same transaction as the first admin: setup can succeed
// once, even when two requests race.
inline constexpr std::string_view meta_collection = "auth_meta";
// Logged-out tokens until their exp, so a restart does not bring them back.
inline constexpr std::string_view revoked_collection = "auth_revoked_tokens";

struct User {
  std::string id;
  std::string username;  // lower case
  std::string role;      // admin, operator or viewer
  std::string created_at;
  // Seconds since the epoch: tokens of this user issued (iat) before this are revoked. Raised by
  // change-password. 0: none revoked.
  std::int64_t tokens_valid_after = 0;
  // An admin disabled the account: no sign-in, and every token refused, until enabled again.
  bool disabled = false;
  // Deleted: the record stays, without a password and with its username freed, so that its
  // tokens are still known to be this user's and refused (never taken for another issuer's).
  bool deleted = false;

  nlohmann::json to_public_json() const;  // id, username, role, created_at, disabled: never the hash
};

struct StoredUser {
  User user;
  std::string password_hash;
  std::int64_t version = 0;
};

struct Revocation {
  std::string key;  // a hex digest (Sessions::revocation_key), also the document id
  std::int64_t expires = 0;
};

// Setup was already done, or users exist: the caller answers 409.
class AlreadySetUp : public std::runtime_error {
 public:
  AlreadySetUp() : std::runtime_error("the first admin already exists") {}
};

// 1..64 characters of [a-z0-9._@-], starting with a letter or digit, after lower-casing.
// Returns the normalised name, or nullopt.
std::optional<std::string> normalise_username(std::string_view name);
bool valid_role(std::string_view role) noexcept;

class UserStore {
 public:
  explicit UserStore(std::shared_ptr<Store> store) : store_(std::move(store)) {}

  void ensure_collections();
  std::vector<User> load_all();
  std::optional<StoredUser> find_by_username(std::string_view username);
  std::optional<StoredUser> get(std::string_view id);
  // Throws StoreError(conflict) when the username is taken.
  User create(std::string_view username, std::string_view role, std::string_view password_hash);
  // The first admin; throws AlreadySetUp when setup ran before or any user exists.
  User create_first_admin(std::string_view username, std::string_view password_hash);
  // Compare-and-swap on `expected_version`; throws StoreError(conflict) when the user changed
  // meanwhile.
  User set_password(std::string_view id, std::string_view password_hash, std::int64_t tokens_valid_after,
                    std::int64_t expected_version);
  // Sets `disabled` (and, disabling, tokens_valid_after to now: tokens stay dead once re-enabled).
  // nullopt when there is no such user (or it was deleted).
  std::optional<User> set_disabled(std::string_view id, bool disabled, std::int64_t now);
  // Every token of the user issued up to now stops working. nullopt when there is no such user.
  std::optional<User> revoke_tokens(std::string_view id, std::int64_t now);
  // Marks the user deleted: password removed, username freed. nullopt when there is none.
  std::optional<User> remove(std::string_view id, std::int64_t now);
  // Oldest first, deleted users left out.
  std::pair<std::vector<User>, std::string> list(std::size_t limit, const std::string& cursor);

  void save_revocation(const Revocation& revocation);
  // The revocations still in force at `now`; the expired ones are removed on the way.
  std::vector<Revocation> load_revocations(std::int64_t now);

 private:
  // Read, change, compare-and-swap, again on a conflict; nullopt for no such (or a deleted) user.
  std::optional<User> modify(std::string_view id, const std::function<void(nlohmann::json&)>& change);
  std::shared_ptr<Store> store_;
};

}  // namespace synthorg::auth
