#include "security.hpp"

#include <array>

#include "synthorg/crypto.hpp"

namespace synthorg::web {

namespace {
constexpr std::size_t kNonceBytes = 16;
constexpr std::size_t kPoolNonces = 256;
}  // namespace

std::string new_nonce() {
  thread_local std::string pool;
  thread_local std::size_t used = 0;
  if (used + kNonceBytes > pool.size()) {
    pool = crypto::random_bytes(kNonceBytes * kPoolNonces);
    used = 0;
  }
  auto nonce = crypto::base64url_encode(std::string_view(pool).substr(used, kNonceBytes));
  used += kNonceBytes;
  return nonce;
}

namespace {
void append_policy(std::string& out, std::string_view nonce) {
  out += "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-";
  out += nonce;
  out += "'; style-src-elem 'self' 'nonce-";
  out += nonce;
  out +=
      "'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
      "form-action 'self'; frame-ancestors 'none'; manifest-src 'self'; worker-src 'self'";
}

}  // namespace

std::string content_security_policy(std::string_view nonce) {
  std::string policy;
  policy.reserve(400);
  append_policy(policy, nonce);
  return policy;
}

void set_security_headers(boost::beast::http::fields& fields, std::string_view nonce, bool hsts) {
  fields.set("X-Content-Type-Options", "nosniff");
  fields.set("X-Frame-Options", "DENY");
  fields.set("Referrer-Policy", "strict-origin-when-cross-origin");
  fields.set("Permissions-Policy", "geolocation=(), camera=(), microphone=()");
  if (hsts) fields.set("Strict-Transport-Security", "max-age=63072000");
  fields.set("Content-Security-Policy", content_security_policy(nonce));
}

void append_security_headers(std::string& out, std::string_view nonce, bool hsts) {
  out +=
      "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: strict-origin-when-cross-origin\r\n"
      "Permissions-Policy: geolocation=(), camera=(), microphone=()\r\n";
  if (hsts) out += "Strict-Transport-Security: max-age=63072000\r\n";
  out += "Content-Security-Policy: ";
  append_policy(out, nonce);
  out += "\r\n";
}

}  // namespace synthorg::web
