// Password hashing with Argon2id (libargon2), stored in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash) so the parameters travel with each hash and can
// be raised later without breaking existing ones. Both calls are slow on purpose (tens of ms and
// memory_kib of RAM): run them on the blocking pool, never on an I/O thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace synthorg::auth {

struct Argon2Params {
  std::uint32_t memory_kib = 19 * 1024;  // OWASP's baseline for Argon2id: m=19 MiB, t=2, p=1
  std::uint32_t iterations = 2;
  std::uint32_t parallelism = 1;
};

// Refused before hashing: Argon2 would take them, but nobody types a password this long and
// the body limit should not be the only bound.
inline constexpr std::size_t max_password_bytes = 1024;

class PasswordHasher {
 public:
  explicit PasswordHasher(Argon2Params params);

  // A fresh salt each call; throws std::runtime_error if libargon2 fails (out of memory).
  std::string hash(std::string_view password) const;
  // False for a wrong password and for anything that is not an Argon2id PHC string.
  bool verify(std::string_view encoded, std::string_view password) const;
  // Burns the same time as verify() against a real hash, for unknown usernames: a login must
  // not reveal by its speed whether the name exists.
  void verify_dummy(std::string_view password) const;

  const Argon2Params& params() const noexcept { return params_; }

 private:
  Argon2Params params_;
  std::string dummy_;  // a hash of random bytes under the current parameters
};

}  // namespace synthorg::auth
