#include "synthorg/crypto.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace synthorg::crypto {
namespace {

// OpenSSL's one-shot calls take `int` lengths; everything larger goes through in slices.
constexpr std::size_t max_slice = 1u << 30;

// OpenSSL treats a null key as "reuse the previous key", so empty inputs point here instead.
const unsigned char empty_input[1] = {0};

const unsigned char* bytes_of(std::string_view text) {
  return text.empty() ? empty_input : reinterpret_cast<const unsigned char*>(text.data());
}

[[noreturn]] void throw_openssl(const char* what) {
  unsigned long code = ERR_get_error();
  std::array<char, 256> reason{};
  if (code != 0) ERR_error_string_n(code, reason.data(), reason.size());
  ERR_clear_error();
  throw std::runtime_error(std::string(what) + (code != 0 ? std::string(": ") + reason.data() : std::string()));
}

// Position in the base64url alphabet, or -1. Needed beyond OpenSSL's decoder because that one
// speaks the standard alphabet and tolerates whitespace; we want neither.
int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// AES-128-CBC with PKCS#7 padding. nullopt when decryption finds bad padding; callers turn that
// into their own error so a padding failure reads like every other token failure.
std::optional<std::string> aes_128_cbc(bool encrypt, std::string_view key, std::string_view iv, std::string_view input) {
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  if (!ctx) throw_openssl("EVP_CIPHER_CTX_new failed");
  if (EVP_CipherInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, bytes_of(key), bytes_of(iv), encrypt ? 1 : 0) != 1)
    throw_openssl("AES-128-CBC initialisation failed");
  std::string out(input.size() + 16, '\0');
  auto* cursor = reinterpret_cast<unsigned char*>(out.data());
  for (std::size_t at = 0; at < input.size(); at += max_slice) {
    int n = static_cast<int>(std::min(max_slice, input.size() - at));
    int written = 0;
    if (EVP_CipherUpdate(ctx.get(), cursor, &written, bytes_of(input) + at, n) != 1)
      throw_openssl("AES-128-CBC failed");
    cursor += written;
  }
  int written = 0;
  if (EVP_CipherFinal_ex(ctx.get(), cursor, &written) != 1) {
    if (encrypt) throw_openssl("AES-128-CBC failed");
    ERR_clear_error();
    return std::nullopt;
  }
  cursor += written;
  out.resize(static_cast<std::size_t>(cursor - reinterpret_cast<unsigned char*>(out.data())));
  return out;
}

constexpr unsigned char fernet_version = 0x80;
constexpr std::size_t fernet_header = 1 + 8 + 16;  // version, timestamp, IV
constexpr std::size_t fernet_block = 16;
constexpr std::size_t fernet_mac = 32;
constexpr std::int64_t fernet_max_clock_skew = 60;
constexpr const char* fernet_key_fix = "generate one with `synthorg keygen fernet`";

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string random_bytes(std::size_t count) {
  std::string out(count, '\0');
  for (std::size_t at = 0; at < count; at += max_slice) {
    int n = static_cast<int>(std::min(max_slice, count - at));
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()) + at, n) != 1)
      throw_openssl("cannot get random bytes from OpenSSL");
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0x0f];
  }
  return out;
}

std::string base64url_encode(std::string_view bytes, bool pad) {
  // Slices of a multiple of 3 bytes encode without padding in the middle.
  constexpr std::size_t slice = 3 * 4096;
  std::array<unsigned char, 4 * 4096 + 1> buffer{};
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t at = 0; at < bytes.size(); at += slice) {
    int n = static_cast<int>(std::min(slice, bytes.size() - at));
    int written = EVP_EncodeBlock(buffer.data(), bytes_of(bytes) + at, n);
    out.append(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(written));
  }
  for (char& c : out) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  if (!pad) {
    while (!out.empty() && out.back() == '=') out.pop_back();
  }
  return out;
}

std::string jwt_secret_problem(std::string_view secret) {
  // No fmt here: this file is also built alone into the Fernet fuzzer.
  if (secret.size() < min_jwt_secret_characters)
    return "is " + std::to_string(secret.size()) + " characters long; it must be at least " +
           std::to_string(min_jwt_secret_characters);
  for (std::size_t i = 0; i < secret.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(secret[i]);
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '=')
      return "has a character outside URL-safe base64 (A-Z, a-z, 0-9, '-', '_') at position " + std::to_string(i + 1) +
             "; a secret in standard base64 becomes URL-safe with + replaced by - and / by _";
  }
  return {};
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::size_t pads = 0;
  while (pads < text.size() && text[text.size() - 1 - pads] == '=') ++pads;
  if (pads > 2 || (pads > 0 && text.size() % 4 != 0)) return std::nullopt;
  auto body = text.substr(0, text.size() - pads);
  std::size_t tail = body.size() % 4;
  if (tail == 1) return std::nullopt;
  std::string standard;
  standard.reserve(body.size() + 3);
  for (char c : body) {
    if (sextet(c) < 0) return std::nullopt;
    standard += c == '-' ? '+' : c == '_' ? '/' : c;
  }
  // Unused low bits of the last character must be zero, so each byte string has exactly one
  // encoding: a token or key cannot be altered in its text while decoding to the same bytes.
  if (tail == 2 && (sextet(body.back()) & 0x0f) != 0) return std::nullopt;
  if (tail == 3 && (sextet(body.back()) & 0x03) != 0) return std::nullopt;
  if (tail != 0) standard.append(4 - tail, '=');

  std::string out;
  out.reserve(standard.size() / 4 * 3);
  constexpr std::size_t slice = 4 * 4096;
  std::array<unsigned char, 3 * 4096> buffer{};
  for (std::size_t at = 0; at < standard.size(); at += slice) {
    int n = static_cast<int>(std::min(slice, standard.size() - at));
    int written = EVP_DecodeBlock(buffer.data(), bytes_of(standard) + at, n);
    if (written < 0) return std::nullopt;
    out.append(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(written));
  }
  // EVP_DecodeBlock counts the zero bytes behind '=' padding as output.
  out.resize(body.size() * 3 / 4);
  return out;
}

std::string sha256(std::string_view bytes) {
  std::string out(32, '\0');
  unsigned int size = 0;
  if (EVP_Digest(bytes_of(bytes), bytes.size(), reinterpret_cast<unsigned char*>(out.data()), &size, EVP_sha256(),
                 nullptr) != 1)
    throw_openssl("SHA-256 failed");
  return out;
}

std::string sha256_file(const std::filesystem::path& path) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw_openssl("SHA-256 failed");
  std::array<char, 64 * 1024> buffer{};
  for (;;) {
    std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), n) != 1) throw_openssl("SHA-256 failed");
    if (n < buffer.size()) {
      if (std::ferror(file.get())) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
      break;
    }
  }
  std::string digest(32, '\0');
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(digest.data()), &size) != 1)
    throw_openssl("SHA-256 failed");
  return to_hex(digest);
}

std::string hmac_sha256(std::string_view key, std::string_view message) {
  if (key.size() > static_cast<std::size_t>(INT_MAX)) throw std::invalid_argument("HMAC key too long");
  std::string out(32, '\0');
  unsigned int size = 0;
  if (HMAC(EVP_sha256(), bytes_of(key), static_cast<int>(key.size()), bytes_of(message), message.size(),
           reinterpret_cast<unsigned char*>(out.data()), &size) == nullptr)
    throw_openssl("HMAC-SHA256 failed");
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Fernet::generate_key() {
  auto key = random_bytes(32);
  auto text = base64url_encode(key, true);
  OPENSSL_cleanse(key.data(), key.size());
  return text;
}

Fernet::Fernet(std::string_view key) {
  // Each message says what is wrong and how to fix it, and never includes the key itself:
  // these end up in logs.
  auto fail = [](const std::string& what, const std::string& fix = "") -> FernetError {
    return FernetError("the Fernet key " + what + " (fix: " + fix + fernet_key_fix + ")");
  };
  if (key.empty()) throw fail("is empty");
  if (std::any_of(key.begin(), key.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }))
    throw fail("contains whitespace (a trailing newline?)", "keep only the 44 base64url characters, or ");
  if (key.find_first_of("+/") != std::string_view::npos)
    throw fail("uses the standard base64 alphabet ('+' or '/'), but Fernet keys are base64url ('-' and '_')",
               "replace '+' with '-' and '/' with '_', or ");
  auto raw = base64url_decode(key);
  if (!raw)
    throw fail("is not valid base64url (RFC 4648 section 5: A-Z a-z 0-9 - _, then '=' padding to a multiple of 4)");
  if (raw->size() != 32) {
    auto size = raw->size();
    OPENSSL_cleanse(raw->data(), raw->size());
    throw fail("decodes to " + std::to_string(size) + " bytes but must decode to 32 (44 base64url characters)");
  }
  signing_key_ = raw->substr(0, 16);
  encryption_key_ = raw->substr(16, 16);
  OPENSSL_cleanse(raw->data(), raw->size());
}

std::string Fernet::encrypt(std::string_view plaintext) const {
  return encrypt(plaintext, unix_now(), random_bytes(16));
}

std::string Fernet::encrypt(std::string_view plaintext, std::int64_t unix_time, std::string_view iv) const {
  if (iv.size() != 16) throw FernetError("a Fernet IV must be 16 bytes, not " + std::to_string(iv.size()));
  if (unix_time < 0) throw FernetError("a Fernet timestamp cannot be before 1970");
  std::string token;
  token.reserve(fernet_header + plaintext.size() + fernet_block + fernet_mac);
  token += static_cast<char>(fernet_version);
  auto time = static_cast<std::uint64_t>(unix_time);
  for (int shift = 56; shift >= 0; shift -= 8) token += static_cast<char>((time >> shift) & 0xff);
  token += iv;
  token += *aes_128_cbc(true, encryption_key_, iv, plaintext);
  token += hmac_sha256(signing_key_, token);
  return base64url_encode(token, true);
}

std::string Fernet::decrypt(std::string_view token, std::optional<std::chrono::seconds> ttl) const {
  return decrypt(token, ttl, unix_now());
}

std::string Fernet::decrypt(std::string_view token, std::optional<std::chrono::seconds> ttl, std::int64_t now) const {
  auto data = base64url_decode(token);
  if (!data) throw FernetError("invalid token: not base64url");
  if (data->size() < fernet_header + fernet_block + fernet_mac ||
      (data->size() - fernet_header - fernet_mac) % fernet_block != 0)
    throw FernetError("invalid token: wrong length");
  if (static_cast<unsigned char>((*data)[0]) != fernet_version) throw FernetError("invalid token: unknown version");

  std::string_view signed_part(data->data(), data->size() - fernet_mac);
  std::string_view mac(data->data() + signed_part.size(), fernet_mac);
  // The signature is checked before anything else in the token is believed, the time included.
  if (!constant_time_equal(hmac_sha256(signing_key_, signed_part), mac))
    throw FernetError("invalid token: signature does not match (a different key, or the token was altered)");

  std::uint64_t stamped = 0;
  for (std::size_t i = 1; i <= 8; ++i) stamped = (stamped << 8) | static_cast<unsigned char>((*data)[i]);
  // Like the Python and Go implementations, time is only judged when a TTL is given: values
  // stored at rest must stay readable after the clock is corrected backwards.
  if (ttl) {
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    if (stamped <= static_cast<std::uint64_t>(max)) {
      std::int64_t expires = 0;
      bool overflow = __builtin_add_overflow(static_cast<std::int64_t>(stamped), ttl->count(), &expires);
      if (!overflow && expires < now) throw FernetError("invalid token: expired");
    }
    std::int64_t latest = now > max - fernet_max_clock_skew ? max : now + fernet_max_clock_skew;
    if (latest < 0 || stamped > static_cast<std::uint64_t>(latest))
      throw FernetError("invalid token: stamped more than 60 s in the future (clock skew)");
  }

  auto iv = signed_part.substr(9, 16);
  auto ciphertext = signed_part.substr(fernet_header);
  auto plaintext = aes_128_cbc(false, encryption_key_, iv, ciphertext);
  if (!plaintext) throw FernetError("invalid token: bad padding");
  return std::move(*plaintext);
}

}  // namespace synthorg::crypto
