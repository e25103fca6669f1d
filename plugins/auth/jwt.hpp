// JSON Web Tokens (RFC 7519) as compact JWS (RFC 7515) with HMAC only: HS256 by default,
// HS384 and HS512 when an operator configures them. No other algorithm exists here, so a
// header naming `none` or an RSA/EC algorithm can never select a weaker check.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace synthorg::auth {

enum class JwtAlgorithm { hs256, hs384, hs512 };

std::string_view to_string(JwtAlgorithm algorithm) noexcept;
// "HS256", "HS384" or "HS512" exactly (JOSE names are case-sensitive); nullopt otherwise.
std::optional<JwtAlgorithm> parse_algorithm(std::string_view name) noexcept;

// Why a token was refused: for logs and tests, never for the caller (who just gets 401).
enum class JwtErrc {
  ok,
  malformed,          // not three base64url segments, too long, or a segment that does not decode
  bad_header,         // the header is not a JSON object with a string "alg", or it has "crit"
  algorithm_refused,  // "alg" is not one of the configured ones ("none", RS256, ...)
  bad_signature,      // signed with another secret or algorithm, or altered
  bad_claims,         // the payload is not a JSON object, or exp/nbf/iat are not numbers
  expired,            // exp + leeway is past
  not_yet_valid,      // nbf - leeway is still to come
  issued_in_future,   // iat is later than now + leeway
};
std::string_view to_string(JwtErrc code) noexcept;

struct JwtOptions {
  std::string secret;                    // the raw key bytes (the env value as is)
  std::vector<JwtAlgorithm> algorithms;  // accepted; the first one signs
  std::chrono::seconds leeway{30};       // allowed clock skew for exp, nbf and iat
};

struct JwtVerified {
  JwtErrc error = JwtErrc::ok;
  nlohmann::json claims;  // the payload, when error is ok
  explicit operator bool() const noexcept { return error == JwtErrc::ok; }
};

// Longer tokens are refused before any decoding: a header or cookie is not a place for them.
inline constexpr std::size_t max_token_bytes = 8192;

class JwtCodec {
 public:
  // Throws std::invalid_argument for an empty secret or an empty algorithm list. The length
  // rule for operators (>= 32 characters) is the plugin's; the RFC vectors use other keys.
  explicit JwtCodec(JwtOptions options);

  // Signs `claims` (a JSON object) with the first configured algorithm.
  std::string sign(const nlohmann::json& claims) const;
  // Checks the form, the algorithm, the signature (in constant time, over the segments exactly
  // as received), then exp/nbf/iat against `now` (seconds since the epoch).
  JwtVerified verify(std::string_view token, std::int64_t now) const;

  JwtAlgorithm signing_algorithm() const noexcept { return options_.algorithms.front(); }
  std::chrono::seconds leeway() const noexcept { return options_.leeway; }

 private:
  // The HMAC of `message` under the secret, with contexts keyed once per thread.
  std::string mac(JwtAlgorithm algorithm, std::string_view message) const;
  // exp, nbf and iat (numbers, or absent) of claims whose signature checked out, against `now`.
  JwtVerified check_time_claims(const nlohmann::json& claims, std::int64_t now) const;

  JwtOptions options_;
  std::uint64_t id_;  // tells this codec's per-thread state from another's at the same address
};

// Raw HMAC of `message` under `key` with the algorithm's hash.
std::string jwt_hmac(JwtAlgorithm algorithm, std::string_view key, std::string_view message);

}  // namespace synthorg::auth
