// libFuzzer target: arbitrary bytes through the SDK's Fernet (sdk/src/crypto.cpp), which guards
// settings encrypted at rest, with a fixed key, three ways. As a token, with and without a TTL.
// As the time, IV and ciphertext of a token signed with the key, so the fuzzer also reaches the
// clock and padding checks a signature would otherwise keep it from: one that decrypts must
// encrypt again to the same token (same time and IV: CBC is then deterministic). And as a
// plaintext, encrypted and decrypted: it must come back unchanged. Only FernetError may come out.
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "synthorg/crypto.hpp"

namespace {

namespace crypto = synthorg::crypto;
constexpr std::string_view key = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";  // the specification's
constexpr std::int64_t now = 499'162'800;  // its vectors' "now", 1985-10-26T01:20:00-07:00
constexpr std::string_view iv = "0123456789abcdef";

const crypto::Fernet& fernet() {
  static const crypto::Fernet instance(key);
  return instance;
}

std::optional<std::string> decrypt(std::string_view token, std::optional<std::chrono::seconds> ttl) {
  try {
    return fernet().decrypt(token, ttl, now);
  } catch (const crypto::FernetError&) {
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)decrypt(input, std::nullopt);
  (void)decrypt(input, std::chrono::seconds(60));
  if (size >= 8 + 16 + 16) {
    static const std::string signing_key = crypto::base64url_decode(key)->substr(0, 16);
    std::string body = "\x80" + std::string(input.substr(0, 24 + (size - 24) / 16 * 16));
    auto token = crypto::base64url_encode(body + crypto::hmac_sha256(signing_key, body), true);
    auto plaintext = decrypt(token, std::nullopt);
    if (decrypt(token, std::chrono::seconds(60)) && !plaintext) __builtin_trap();
    std::uint64_t stamped = 0;
    for (std::size_t i = 0; i < 8; ++i) stamped = stamped << 8 | data[i];
    if (plaintext && stamped <= std::numeric_limits<std::int64_t>::max() &&
        fernet().encrypt(*plaintext, static_cast<std::int64_t>(stamped), input.substr(8, 16)) != token)
      __builtin_trap();
  }
  auto back = decrypt(fernet().encrypt(input, now, iv), std::chrono::seconds(60));
  if (!back || *back != input) __builtin_trap();
  return 0;
}
