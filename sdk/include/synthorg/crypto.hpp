// The few cryptographic primitives the kernel and plugins share, all on OpenSSL 3:
// randomness, SHA-256, HMAC-SHA256, base64url, constant-time comparison, and Fernet
// (https://github.com/fernet/spec) for settings encrypted at rest.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace synthorg::crypto {

// Cryptographically strong random bytes; throws std::runtime_error if OpenSSL cannot give them.
std::string random_bytes(std::size_t count);
std::string to_hex(std::string_view bytes);

// RFC 4648 §5 alphabet. encode pads with '=' only when asked; decode accepts both forms and
// returns nullopt on any character outside the alphabet or a bad length.
std::string base64url_encode(std::string_view bytes, bool pad = false);
std::optional<std::string> base64url_decode(std::string_view text);

// What is wrong with an HMAC signing secret for JWTs by the deployment guides' rule — at least
// 32 characters of URL-safe base64 (A-Z a-z 0-9 - _, '=' padding allowed) — or empty when
// nothing is. Never quotes the secret. `synthorg keygen jwt` makes one that passes.
inline constexpr std::size_t min_jwt_secret_characters = 32;
std::string jwt_secret_problem(std::string_view secret);

std::string sha256(std::string_view bytes);                      // 32 raw bytes
std::string sha256_file(const std::filesystem::path& path);     // hex; throws on I/O error
std::string hmac_sha256(std::string_view key, std::string_view message);  // 32 raw bytes

// Compares in time that depends only on the lengths, never on where the bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

class FernetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A Fernet key: 32 bytes, base64url with padding (44 characters); the first half signs,
// the second half encrypts.
class Fernet {
 public:
  // A fresh key, as `synthorg keygen fernet` prints it.
  static std::string generate_key();
  // Throws FernetError saying what is wrong with the key (never echoing it).
  explicit Fernet(std::string_view key);

  std::string encrypt(std::string_view plaintext) const;
  // Fixed time and IV, for the specification's test vectors.
  std::string encrypt(std::string_view plaintext, std::int64_t unix_time, std::string_view iv) const;

  // Throws FernetError("invalid token...") on a bad signature, format, version or padding,
  // and when `ttl` is given and the token is older than that or stamped more than 60 s in the
  // future (clock skew), as the specification's vectors and the Python and Go implementations
  // do. Without `ttl` the clock is not consulted, so values stored at rest stay readable after
  // the clock is set back.
  std::string decrypt(std::string_view token, std::optional<std::chrono::seconds> ttl = std::nullopt) const;
  std::string decrypt(std::string_view token, std::optional<std::chrono::seconds> ttl, std::int64_t now) const;

 private:
  std::string signing_key_;
  std::string encryption_key_;
};

}  // namespace synthorg::crypto
