// Sessions: issuing tokens, and deciding from memory alone whether a token still stands. The
// Authenticator runs on every protected request on an I/O thread, so nothing here touches the
// Store; the routes persist revocations and keep this cache current.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "jwt.hpp"
#include "synthorg/services/http.hpp"
#include "users.hpp"

namespace synthorg::auth {

std::int64_t unix_now();

// The token of a request: the Authorization bearer credentials when that header uses the
// Bearer scheme, else the synthorg_session cookie; empty when neither.
std::string_view token_from(const HttpRequest& request);

// Tokens whose `sub` is no user of ours: another issuer's (PondPilot's auth signs with the same
// secret). Refused unless the operator accepts them; then their role is capped at max_role.
struct ExternalTokens {
  bool accept = false;
  std::string max_role = "viewer";
};

class Sessions {
 public:
  Sessions(JwtCodec codec, std::chrono::seconds ttl, ExternalTokens external = {})
      : codec_(std::move(codec)), ttl_(ttl), external_(std::move(external)) {}

  struct Issued {
    std::string token;
    std::int64_t issued_at = 0;
    std::int64_t expires_at = 0;
  };
  // sub, role, iat, exp, jti. iat is never before the user's tokens_valid_after, so a token
  // issued in the same second as a password change is not born revoked.
  Issued issue(const User& user, std::int64_t now) const;

  // Signature and claims, then the denylist, the user's state (disabled, deleted) and
  // tokens_valid_after. For a known user the role is capped at the user's current one; a token of
  // an unknown `sub` follows ExternalTokens (without a role it is a viewer).
  // `why`, when given, receives the reason for a refusal (for the debug log).
  std::optional<Principal> authenticate(std::string_view token, std::int64_t now, std::string* why = nullptr) const;

  // The identity of one token for the denylist: its jti when it has one, else its signature.
  // A hex digest, so foreign jti values of any shape make safe document ids.
  static std::string revocation_key(const nlohmann::json& claims, std::string_view token);
  // Until when a revocation must be kept: exp plus the leeway verification allows.
  std::int64_t revocation_expiry(const nlohmann::json& claims, std::int64_t now) const;

  void remember(const User& user);
  std::optional<User> user(std::string_view id) const;
  bool has_users() const;
  void revoke(const Revocation& revocation, std::int64_t now);
  void revoke_all_before(std::string_view user_id, std::int64_t tokens_valid_after);
  std::size_t revoked_count() const;

  std::chrono::seconds ttl() const noexcept { return ttl_; }

  // One-time tickets for WebSocket clients that cannot send headers (browsers): 30 s, single
  // use, in memory only (a restart voids them, which costs a client one retry).
  static constexpr std::int64_t ticket_seconds = 30;
  std::string issue_ticket(const Principal& principal, std::int64_t now) const;
  std::optional<Principal> redeem_ticket(std::string_view ticket, std::int64_t now) const;

 private:
  JwtCodec codec_;
  std::chrono::seconds ttl_;
  ExternalTokens external_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, User> users_;
  std::unordered_map<std::string, std::int64_t> revoked_;  // key -> kept until
  std::int64_t next_purge_ = 0;
  struct Ticket {
    Principal principal;
    std::int64_t expires_at = 0;
  };
  mutable std::mutex tickets_mutex_;
  mutable std::unordered_map<std::string, Ticket> tickets_;
};

class SessionAuthenticator final : public Authenticator {
 public:
  explicit SessionAuthenticator(std::shared_ptr<const Sessions> sessions) : sessions_(std::move(sessions)) {}
  std::optional<Principal> authenticate(const HttpRequest& request) const override;

 private:
  std::shared_ptr<const Sessions> sessions_;
};

}  // namespace synthorg::auth
