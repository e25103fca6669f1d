#include "passwords.hpp"

#include <argon2.h>
#include <malloc.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "synthorg/crypto.hpp"

namespace synthorg::auth {
namespace {

constexpr std::size_t salt_bytes = 16;
constexpr std::size_t hash_bytes = 32;

// Argon2id's memory (argon2_memory_kib, 19 MiB by default) comes from malloc. Once glibc has
// freed one mmapped block that large it raises its mmap threshold (and its trim threshold, to
// twice that) past the size, so later blocks come from the hashing thread's arena and stay
// resident when freed: about 19.5 MiB kept per blocking thread that ever hashed, which
// malloc_trim does not return either (it leaves an arena's top alone). A fixed threshold turns
// the dynamic one off: blocks of 4 MiB and more are mapped on their own and unmapped when freed.
// Fixing it also fixes the trim threshold at its 128 KiB default, which would hand memory back
// (madvise, then page faults to take it again) after nearly every large free on the hot paths
// (the Flight gateway's 512 KiB messages): it is set to 16 MiB, far above any arena's churn.
void map_large_blocks_alone() {
  static const bool done =
      ::mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024) == 1 && ::mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024) == 1;
  (void)done;
}

}  // namespace

PasswordHasher::PasswordHasher(Argon2Params params) : params_(params) {
  map_large_blocks_alone();
  dummy_ = hash(crypto::to_hex(crypto::random_bytes(24)));
}

std::string PasswordHasher::hash(std::string_view password) const {
  auto salt = crypto::random_bytes(salt_bytes);
  std::vector<char> encoded(argon2_encodedlen(params_.iterations, params_.memory_kib, params_.parallelism,
                                              static_cast<std::uint32_t>(salt_bytes), hash_bytes, Argon2_id) + 1);
  int result = argon2id_hash_encoded(params_.iterations, params_.memory_kib, params_.parallelism, password.data(),
                                     password.size(), salt.data(), salt.size(), hash_bytes, encoded.data(),
                                     encoded.size());
  if (result != ARGON2_OK) throw std::runtime_error(std::string("Argon2id hashing failed: ") + argon2_error_message(result));
  return std::string(encoded.data());
}

bool PasswordHasher::verify(std::string_view encoded, std::string_view password) const {
  // libargon2 wants a NUL-terminated string; an Argon2i or Argon2d hash is refused, not
  // downgraded to.
  if (encoded.rfind("$argon2id$", 0) != 0) return false;
  std::string terminated(encoded);
  return argon2id_verify(terminated.c_str(), password.data(), password.size()) == ARGON2_OK;
}

void PasswordHasher::verify_dummy(std::string_view password) const { (void)verify(dummy_, password); }

}  // namespace synthorg::auth
