#include "sessions.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <mutex>

#include "synthorg/crypto.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto end = header.find(';');
    auto pair = trim(header.substr(0, end));
    auto equals = pair.find('=');
    if (equals != std::string_view::npos && trim(pair.substr(0, equals)) == name) {
      auto value = trim(pair.substr(equals + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      return value;
    }
    if (end == std::string_view::npos) break;
    header.remove_prefix(end + 1);
  }
  return {};
}

}  // namespace

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view token_from(const HttpRequest& request) {
  auto authorization = trim(request.header("authorization"));
  auto space = authorization.find(' ');
  if (space != std::string_view::npos && iequals(authorization.substr(0, space), "bearer"))
    return trim(authorization.substr(space + 1));
  return cookie_value(request.header("cookie"), session_cookie);
}

Sessions::Issued Sessions::issue(const User& user, std::int64_t now) const {
  std::int64_t valid_after = user.tokens_valid_after;
  if (auto cached = this->user(user.id)) valid_after = std::max(valid_after, cached->tokens_valid_after);
  Issued issued;
  issued.issued_at = std::max(now, valid_after);
  issued.expires_at = issued.issued_at + ttl_.count();
  json claims = {{"sub", user.id},
                 {"role", user.role},
                 {"iat", issued.issued_at},
                 {"exp", issued.expires_at},
                 {"jti", crypto::base64url_encode(crypto::random_bytes(16))}};
  issued.token = codec_.sign(claims);
  return issued;
}

std::optional<Principal> Sessions::authenticate(std::string_view token, std::int64_t now, std::string* why) const {
  auto refuse = [why](std::string_view reason) -> std::optional<Principal> {
    if (why) *why = reason;
    return std::nullopt;
  };
  auto verified = codec_.verify(token, now);
  if (!verified) return refuse(to_string(verified.error));
  auto& claims = verified.claims;
  auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty())
    return refuse("no sub claim");
  // A token that never expires could only be revoked one by one: we do not accept any.
  if (!claims.contains("exp")) return refuse("no exp claim");
  std::string role = "viewer";  // tokens from elsewhere (PondPilot style) carry no role
  if (auto at = claims.find("role"); at != claims.end()) {
    if (!at->is_string() || !valid_role(at->get_ref<const std::string&>())) return refuse("unknown role");
    role = at->get<std::string>();
  }
  std::shared_lock lock(mutex_);
  // Hashing the key costs more than the lookup: skip both while nobody has logged out.
  if (!revoked_.empty() && revoked_.contains(revocation_key(claims, token))) return refuse("revoked (logged out)");
  if (auto user = users_.find(sub->get_ref<const std::string&>()); user == users_.end()) {
    if (!external_.accept) return refuse("unknown user (another issuer's tokens are not accepted here)");
    if (!role_at_least(external_.max_role, role)) role = external_.max_role;
  } else {
    if (user->second.deleted) return refuse("the user was deleted");
    if (user->second.disabled) return refuse("the user is disabled");
    if (user->second.tokens_valid_after > 0) {
      auto iat = claims.find("iat");
      if (iat == claims.end() || iat->get<double>() < static_cast<double>(user->second.tokens_valid_after))
        return refuse("revoked (password changed)");
    }
    // A role taken away applies at once, however long the token has left.
    if (!role_at_least(user->second.role, role)) role = user->second.role;
  }
  lock.unlock();
  return Principal{sub->get<std::string>(), std::move(role), std::move(claims)};
}

std::string Sessions::revocation_key(const json& claims, std::string_view token) {
  if (auto jti = claims.find("jti"); jti != claims.end() && jti->is_string() && !jti->get_ref<const std::string&>().empty())
    return crypto::to_hex(crypto::sha256("jti:" + jti->get<std::string>()));
  auto dot = token.rfind('.');
  return crypto::to_hex(crypto::sha256("sig:" + std::string(token.substr(dot == std::string_view::npos ? 0 : dot + 1))));
}

std::int64_t Sessions::revocation_expiry(const json& claims, std::int64_t now) const {
  double exp = claims.contains("exp") && claims["exp"].is_number() ? claims["exp"].get<double>() : static_cast<double>(now);
  // Past 2^53 a double no longer holds whole seconds; such a token is as good as eternal anyway.
  exp = std::min(std::ceil(exp), 9.0e15);
  return static_cast<std::int64_t>(exp) + codec_.leeway().count() + 1;
}

void Sessions::remember(const User& user) {
  std::unique_lock lock(mutex_);
  auto& cached = users_[user.id];
  // A slower reader may bring an older copy: a revocation once made is never undone by it.
  auto valid_after = std::max(cached.tokens_valid_after, user.tokens_valid_after);
  cached = user;
  cached.tokens_valid_after = valid_after;
}

std::optional<User> Sessions::user(std::string_view id) const {
  std::shared_lock lock(mutex_);
  auto at = users_.find(std::string(id));
  if (at == users_.end()) return std::nullopt;
  return at->second;
}

bool Sessions::has_users() const {
  std::shared_lock lock(mutex_);
  return !users_.empty();
}

void Sessions::revoke(const Revocation& revocation, std::int64_t now) {
  std::unique_lock lock(mutex_);
  revoked_[revocation.key] = revocation.expires;
  // Expired entries go at most once a minute: a token past its exp fails on exp alone.
  if (now >= next_purge_) {
    std::erase_if(revoked_, [now](const auto& entry) { return entry.second <= now; });
    next_purge_ = now + 60;
  }
}

void Sessions::revoke_all_before(std::string_view user_id, std::int64_t tokens_valid_after) {
  std::unique_lock lock(mutex_);
  if (auto at = users_.find(std::string(user_id)); at != users_.end())
    at->second.tokens_valid_after = std::max(at->second.tokens_valid_after, tokens_valid_after);
}

std::size_t Sessions::revoked_count() const {
  std::shared_lock lock(mutex_);
  return revoked_.size();
}

std::string Sessions::issue_ticket(const Principal& principal, std::int64_t now) const {
  auto ticket = crypto::to_hex(crypto::random_bytes(24));
  std::lock_guard lock(tickets_mutex_);
  std::erase_if(tickets_, [now](const auto& entry) { return entry.second.expires_at < now; });
  tickets_[ticket] = {principal, now + ticket_seconds};
  return ticket;
}

std::optional<Principal> Sessions::redeem_ticket(std::string_view ticket, std::int64_t now) const {
  std::lock_guard lock(tickets_mutex_);
  auto found = tickets_.find(std::string(ticket));
  if (found == tickets_.end()) return std::nullopt;
  auto entry = std::move(found->second);
  tickets_.erase(found);  // single use, whether or not it is still fresh
  if (entry.expires_at < now) return std::nullopt;
  return entry.principal;
}

std::optional<Principal> SessionAuthenticator::authenticate(const HttpRequest& request) const {
  auto token = token_from(request);
  if (!token.empty()) return sessions_->authenticate(token, unix_now());
  // Only the WebSocket upgrade takes a ticket: elsewhere a URL credential would end up in logs.
  if (request.path == "/api/v1/ws")
    if (auto ticket = request.query_param("ticket")) return sessions_->redeem_ticket(*ticket, unix_now());
  return std::nullopt;
}

}  // namespace synthorg::auth
