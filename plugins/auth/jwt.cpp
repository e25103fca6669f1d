#include "jwt.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

#include "synthorg/crypto.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;

bool base64url_alphabet(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

// A JSON object from a segment, or discarded/null when it is not one.
json object_from(std::string_view decoded) {
  auto value = parse_client_json(decoded);
  return value.is_object() ? value : json();
}

// A NumericDate claim: absent is fine, present must be a number (booleans are not).
bool numeric_or_absent(const json& claims, const char* name) {
  auto at = claims.find(name);
  return at == claims.end() || at->is_number();
}

const EVP_MD* digest_of(JwtAlgorithm algorithm) {
  return algorithm == JwtAlgorithm::hs512 ? EVP_sha512() : algorithm == JwtAlgorithm::hs384 ? EVP_sha384() : EVP_sha256();
}

std::atomic<std::uint64_t> next_codec_id{1};

// A token whose signature checked out, with its claims: a client sends the same token with
// every request, and decoding, the HMAC and the JSON parse were most of a request's CPU time
// (`/me` cost 4x healthz). Only what cannot change is kept: exp, nbf and iat are checked
// against the clock on every use, revocation and roles by Sessions after verify().
struct VerifiedToken {
  std::string token;
  json claims;
};

// What verifying the same token shape again and again can skip, per thread and codec: OpenSSL
// 3's one-shot HMAC() fetches the digest and hashes the key on every call, every token we issue
// has the same header segment, and the clients an I/O thread serves send the same tokens again.
struct CodecThreadState {
  struct MacContextFree {
    void operator()(EVP_MAC_CTX* context) const { EVP_MAC_CTX_free(context); }
  };
  // Direct-mapped by a hash of the token: bounded (a few hundred KiB at most), no eviction list.
  static constexpr std::size_t verified_slots = 256;

  std::uint64_t codec = 0;
  std::unique_ptr<EVP_MAC_CTX, MacContextFree> macs[3];
  std::string accepted_header;  // a header segment already found valid, and its algorithm
  JwtAlgorithm accepted_algorithm = JwtAlgorithm::hs256;
  std::vector<VerifiedToken> verified = std::vector<VerifiedToken>(verified_slots);

  VerifiedToken& slot(std::string_view token) { return verified[std::hash<std::string_view>{}(token) % verified_slots]; }
};

CodecThreadState& thread_state(std::uint64_t codec) {
  // A few entries: a process has one codec, tests a handful over time.
  thread_local std::vector<CodecThreadState> states;
  for (auto& state : states)
    if (state.codec == codec) return state;
  if (states.size() >= 4) states.erase(states.begin());
  states.emplace_back().codec = codec;
  return states.back();
}

}  // namespace

std::string_view to_string(JwtAlgorithm algorithm) noexcept {
  switch (algorithm) {
    case JwtAlgorithm::hs256: return "HS256";
    case JwtAlgorithm::hs384: return "HS384";
    case JwtAlgorithm::hs512: return "HS512";
  }
  return "HS256";
}

std::optional<JwtAlgorithm> parse_algorithm(std::string_view name) noexcept {
  if (name == "HS256") return JwtAlgorithm::hs256;
  if (name == "HS384") return JwtAlgorithm::hs384;
  if (name == "HS512") return JwtAlgorithm::hs512;
  return std::nullopt;
}

std::string_view to_string(JwtErrc code) noexcept {
  switch (code) {
    case JwtErrc::ok: return "ok";
    case JwtErrc::malformed: return "malformed";
    case JwtErrc::bad_header: return "bad_header";
    case JwtErrc::algorithm_refused: return "algorithm_refused";
    case JwtErrc::bad_signature: return "bad_signature";
    case JwtErrc::bad_claims: return "bad_claims";
    case JwtErrc::expired: return "expired";
    case JwtErrc::not_yet_valid: return "not_yet_valid";
    case JwtErrc::issued_in_future: return "issued_in_future";
  }
  return "unknown";
}

std::string jwt_hmac(JwtAlgorithm algorithm, std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (!HMAC(digest_of(algorithm), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &length))
    throw std::runtime_error("OpenSSL could not compute an HMAC");
  return {reinterpret_cast<const char*>(out), length};
}

std::string JwtCodec::mac(JwtAlgorithm algorithm, std::string_view message) const {
  auto& context = thread_state(id_).macs[static_cast<int>(algorithm)];
  if (!context) {
    std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> hmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr), EVP_MAC_free);
    if (hmac) context.reset(EVP_MAC_CTX_new(hmac.get()));
    std::string digest = EVP_MD_get0_name(digest_of(algorithm));
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
                           OSSL_PARAM_construct_end()};
    if (!context || !EVP_MAC_init(context.get(), reinterpret_cast<const unsigned char*>(options_.secret.data()),
                                  options_.secret.size(), params)) {
      context.reset();
      throw std::runtime_error("OpenSSL could not set up an HMAC");
    }
  } else if (!EVP_MAC_init(context.get(), nullptr, 0, nullptr)) {  // the same key again
    throw std::runtime_error("OpenSSL could not restart an HMAC");
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  std::size_t length = 0;
  if (!EVP_MAC_update(context.get(), reinterpret_cast<const unsigned char*>(message.data()), message.size()) ||
      !EVP_MAC_final(context.get(), out, &length, sizeof out))
    throw std::runtime_error("OpenSSL could not compute an HMAC");
  return {reinterpret_cast<const char*>(out), length};
}

JwtCodec::JwtCodec(JwtOptions options) : options_(std::move(options)), id_(next_codec_id++) {
  if (options_.secret.empty()) throw std::invalid_argument("the JWT secret is empty");
  if (options_.algorithms.empty()) throw std::invalid_argument("no JWT algorithm is configured");
}

std::string JwtCodec::sign(const json& claims) const {
  if (!claims.is_object()) throw std::invalid_argument("JWT claims must be a JSON object");
  json header = {{"alg", to_string(signing_algorithm())}, {"typ", "JWT"}};
  auto input = crypto::base64url_encode(header.dump()) + "." + crypto::base64url_encode(claims.dump());
  auto signature = mac(signing_algorithm(), input);
  return input + "." + crypto::base64url_encode(signature);
}

JwtVerified JwtCodec::verify(std::string_view token, std::int64_t now) const {
  auto refuse = [](JwtErrc code) { return JwtVerified{code, {}}; };
  if (token.empty() || token.size() > max_token_bytes) return refuse(JwtErrc::malformed);
  auto first = token.find('.');
  if (first == std::string_view::npos) return refuse(JwtErrc::malformed);
  auto second = token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
    return refuse(JwtErrc::malformed);
  auto header_segment = token.substr(0, first);
  auto payload_segment = token.substr(first + 1, second - first - 1);
  auto signature_segment = token.substr(second + 1);
  // No padding in compact JWS (RFC 7515 §2): '=' is refused with everything outside the alphabet.
  for (auto segment : {header_segment, payload_segment, signature_segment})
    if (segment.empty() || !base64url_alphabet(segment)) return refuse(JwtErrc::malformed);

  auto& state = thread_state(id_);
  // Compared in constant time, whole: how far a guess matches a cached token must not show.
  auto& cached = state.slot(token);
  if (crypto::constant_time_equal(cached.token, token))
    return check_time_claims(cached.claims, now);

  JwtAlgorithm algorithm = state.accepted_algorithm;
  if (state.accepted_header.empty() || header_segment != state.accepted_header) {
    auto header_bytes = crypto::base64url_decode(header_segment);
    if (!header_bytes) return refuse(JwtErrc::malformed);
    auto header = object_from(*header_bytes);
    if (!header.is_object()) return refuse(JwtErrc::bad_header);
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string()) return refuse(JwtErrc::bad_header);
    // We understand no header extension, and RFC 7515 §4.1.11 says to refuse what we do not.
    if (header.contains("crit")) return refuse(JwtErrc::bad_header);
    auto named = parse_algorithm(alg->get_ref<const std::string&>());
    if (!named || std::find(options_.algorithms.begin(), options_.algorithms.end(), *named) ==
                      options_.algorithms.end())
      return refuse(JwtErrc::algorithm_refused);
    algorithm = *named;
    state.accepted_header = header_segment;
    state.accepted_algorithm = algorithm;
  }

  auto signature = crypto::base64url_decode(signature_segment);
  // Only the canonical spelling: otherwise the unused low bits of the last character would give
  // one signature several spellings, and a token several identities.
  if (!signature || crypto::base64url_encode(*signature) != signature_segment) return refuse(JwtErrc::malformed);
  // Over the segments as received: a re-serialised header would not be the bytes that were
  // signed (RFC 7515 A.1 has CRLFs in its header).
  auto expected = mac(algorithm, token.substr(0, second));
  if (!crypto::constant_time_equal(expected, *signature)) return refuse(JwtErrc::bad_signature);

  auto payload_bytes = crypto::base64url_decode(payload_segment);
  if (!payload_bytes) return refuse(JwtErrc::malformed);
  auto claims = object_from(*payload_bytes);
  if (!claims.is_object()) return refuse(JwtErrc::bad_claims);
  if (!numeric_or_absent(claims, "exp") || !numeric_or_absent(claims, "nbf") || !numeric_or_absent(claims, "iat"))
    return refuse(JwtErrc::bad_claims);
  cached.token = token;
  cached.claims = std::move(claims);
  return check_time_claims(cached.claims, now);
}

JwtVerified JwtCodec::check_time_claims(const json& claims, std::int64_t now) const {
  // The same comparisons as PyJWT, so a token valid on one side is valid on the other.
  const double leeway = static_cast<double>(options_.leeway.count());
  const double at = static_cast<double>(now);
  auto fails = [&](const char* name, auto refused) {
    auto at_claim = claims.find(name);
    return at_claim != claims.end() && refused(at_claim->get<double>());
  };
  if (fails("exp", [&](double exp) { return exp <= at - leeway; })) return {JwtErrc::expired, {}};
  if (fails("nbf", [&](double nbf) { return nbf > at + leeway; })) return {JwtErrc::not_yet_valid, {}};
  if (fails("iat", [&](double iat) { return iat > at + leeway; })) return {JwtErrc::issued_in_future, {}};
  return {JwtErrc::ok, claims};
}

}  // namespace synthorg::auth
