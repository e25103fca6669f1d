// The auth plugin's JWT codec and session rules, without a server: the RFC 7515 A.1 vector,
// then every kind of bad token the issue lists, then what Sessions adds on top (roles,
// revocation, a password change). Also the lockout arithmetic and the bounded hashing queue.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../../plugins/auth/jwt.hpp"
#include "../../plugins/auth/limits.hpp"
#include "../../plugins/auth/passwords.hpp"
#include "../../plugins/auth/sessions.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/host/thread_pool_executor.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string secret = "an-hs256-secret-that-is-long-enough-0123456789";
constexpr std::int64_t now = 1'700'000'000;

std::string b64(std::string_view text) { return crypto::base64url_encode(text); }

// A token from exact header and payload bytes, signed with `algorithm` under `key`.
std::string make(std::string_view header, std::string_view payload, std::string_view key = secret,
                 JwtAlgorithm algorithm = JwtAlgorithm::hs256) {
  auto input = b64(header) + "." + b64(payload);
  return input + "." + b64(jwt_hmac(algorithm, key, input));
}

std::string hs256_header() { return R"({"alg":"HS256","typ":"JWT"})"; }

JwtCodec codec(std::vector<JwtAlgorithm> algorithms = {JwtAlgorithm::hs256}, std::string key = secret) {
  return JwtCodec({std::move(key), std::move(algorithms), 30s});
}

JwtErrc verdict(const JwtCodec& codec, std::string_view token, std::int64_t at = now) {
  return codec.verify(token, at).error;
}

TEST(JwtTest, PassesTheRfc7515AppendixA1Vector) {
  auto path = std::filesystem::path(SYNTHORG_CONTRACTS_DIR) / "jwt" / "rfc7515-a1.json";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << "SKIPPED LOUDLY: " << path << " is absent, so the RFC 7515 A.1 vector cannot be checked here";
  auto vector = json::parse(std::ifstream(path));
  auto key = crypto::base64url_decode(vector["key_b64url"].get<std::string>());
  ASSERT_TRUE(key);
  ASSERT_EQ(key->size(), 64u);
  auto token = vector["token"].get<std::string>();
  JwtCodec rfc({*key, {JwtAlgorithm::hs256}, 30s});

  EXPECT_EQ(crypto::base64url_encode(jwt_hmac(JwtAlgorithm::hs256, *key, vector["signing_input"].get<std::string>())),
            vector["signature_b64url"].get<std::string>());
  // A fixed clock before its exp (1300819380); the header's CRLFs must be verified as sent.
  auto verified = rfc.verify(token, 1300819380 - 3600);
  ASSERT_TRUE(verified) << to_string(verified.error);
  EXPECT_EQ(verified.claims["iss"], "joe");
  EXPECT_EQ(verified.claims["exp"], 1300819380);
  EXPECT_EQ(verified.claims["http://example.com/is_root"], true);
  EXPECT_EQ(verdict(rfc, token, 1300819380 + 31), JwtErrc::expired) << "past exp and the 30 s leeway";
  EXPECT_TRUE(rfc.verify(token, 1300819380 + 29)) << "within the leeway";

  // Re-serialising the header (dropping the CRLF) changes the signed bytes.
  auto dot = token.find('.');
  auto reserialised = b64(json::parse(vector["header"].get<std::string>()).dump()) + token.substr(dot);
  EXPECT_EQ(verdict(rfc, reserialised, 1300819380 - 3600), JwtErrc::bad_signature);
  EXPECT_EQ(verdict(codec(), token, 1300819380 - 3600), JwtErrc::bad_signature) << "another secret";
}

TEST(JwtTest, SignsWhatItVerifies) {
  auto ours = codec();
  auto token = ours.sign({{"sub", "u1"}, {"iat", now}, {"exp", now + 60}});
  auto verified = ours.verify(token, now);
  ASSERT_TRUE(verified);
  EXPECT_EQ(verified.claims["sub"], "u1");
  auto header = json::parse(*crypto::base64url_decode(token.substr(0, token.find('.'))));
  EXPECT_EQ(header, json({{"alg", "HS256"}, {"typ", "JWT"}}));
  EXPECT_EQ(token.find('='), std::string::npos) << "no padding";

  auto wide = codec({JwtAlgorithm::hs512, JwtAlgorithm::hs256});
  auto strong = wide.sign({{"sub", "u1"}, {"exp", now + 60}});
  EXPECT_EQ(json::parse(*crypto::base64url_decode(strong.substr(0, strong.find('.'))))["alg"], "HS512");
  EXPECT_TRUE(wide.verify(strong, now));
  EXPECT_TRUE(wide.verify(token, now)) << "HS256 is still in the list";
}

TEST(JwtTest, TimeClaimsAreCheckedWithTheLeeway) {
  auto ours = codec();
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"exp", now - 31}}.dump())), JwtErrc::expired);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"exp", now - 30}}.dump())), JwtErrc::expired);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"exp", now - 29}}.dump())), JwtErrc::ok);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"exp", now - 100.5}}.dump())), JwtErrc::expired);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"nbf", now + 31}}.dump())), JwtErrc::not_yet_valid);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"nbf", now + 30}}.dump())), JwtErrc::ok);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"iat", now + 3600}}.dump())), JwtErrc::issued_in_future);
  EXPECT_EQ(verdict(ours, make(hs256_header(), json{{"iat", now - 3600}, {"exp", now + 1}}.dump())), JwtErrc::ok);
  for (auto bad : {json{{"exp", "tomorrow"}}, json{{"exp", true}}, json{{"nbf", nullptr}}, json{{"iat", json::array()}}})
    EXPECT_EQ(verdict(ours, make(hs256_header(), bad.dump())), JwtErrc::bad_claims) << bad;
}

TEST(JwtTest, OnlyTheConfiguredHmacAlgorithmsAreAccepted) {
  auto ours = codec();
  std::string claims = json{{"sub", "u1"}, {"exp", now + 60}}.dump();
  // alg none, with and without a signature.
  EXPECT_EQ(verdict(ours, b64(R"({"alg":"none"})") + "." + b64(claims) + "."), JwtErrc::malformed);
  EXPECT_EQ(verdict(ours, make(R"({"alg":"none"})", claims)), JwtErrc::algorithm_refused);
  for (const char* name : {"None", "NONE", "hs256", "RS256", "ES256", "PS256", "EdDSA", "HS1", ""})
    EXPECT_EQ(verdict(ours, make(json{{"alg", name}}.dump(), claims)), JwtErrc::algorithm_refused) << name;
  // HS512 and HS384 under our own secret, while only HS256 is configured.
  EXPECT_EQ(verdict(ours, make(R"({"alg":"HS512"})", claims, secret, JwtAlgorithm::hs512)), JwtErrc::algorithm_refused);
  EXPECT_EQ(verdict(ours, make(R"({"alg":"HS384"})", claims, secret, JwtAlgorithm::hs384)), JwtErrc::algorithm_refused);
  EXPECT_EQ(verdict(codec({JwtAlgorithm::hs256, JwtAlgorithm::hs512}),
                    make(R"({"alg":"HS512"})", claims, secret, JwtAlgorithm::hs512)),
            JwtErrc::ok);
  // The header says HS256 but the signature is HS512 (or the other way round).
  EXPECT_EQ(verdict(ours, make(hs256_header(), claims, secret, JwtAlgorithm::hs512)), JwtErrc::bad_signature);
  EXPECT_EQ(verdict(codec({JwtAlgorithm::hs512}), make(R"({"alg":"HS512"})", claims)), JwtErrc::bad_signature);
}

TEST(JwtTest, AnotherSecretOrAnAlteredTokenFails) {
  auto ours = codec();
  std::string claims = json{{"sub", "u1"}, {"role", "viewer"}, {"exp", now + 60}}.dump();
  EXPECT_EQ(verdict(ours, make(hs256_header(), claims, "another-secret-that-is-also-long-enough!!")),
            JwtErrc::bad_signature);
  auto token = make(hs256_header(), claims);
  auto parts_end = token.rfind('.');
  auto forged = b64(hs256_header()) + "." + b64(json{{"sub", "u1"}, {"role", "admin"}, {"exp", now + 60}}.dump()) +
                token.substr(parts_end);
  EXPECT_EQ(verdict(ours, forged), JwtErrc::bad_signature) << "payload swapped under the old signature";
  auto flipped = token;
  flipped[parts_end + 5] = flipped[parts_end + 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(verdict(ours, flipped), JwtErrc::bad_signature);
  // The last character of a 32-byte signature carries two unused bits: only one spelling counts.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto spelling = token;
  spelling.back() = alphabet[alphabet.find(spelling.back()) ^ 1];
  EXPECT_EQ(verdict(ours, spelling), JwtErrc::malformed);
}

// verify() remembers tokens whose signature checked out (per thread and codec): what it skips
// must never change a verdict.
TEST(JwtTest, RememberedTokensAreStillCheckedInFull) {
  auto ours = codec();
  auto token = make(hs256_header(), json{{"sub", "u1"}, {"exp", now + 60}, {"nbf", now - 10}}.dump());
  for (int i = 0; i < 3; ++i) {
    auto verified = ours.verify(token, now);
    ASSERT_EQ(verified.error, JwtErrc::ok);
    EXPECT_EQ(verified.claims["sub"], "u1");
  }
  // The clock still counts for a token seen before.
  EXPECT_EQ(verdict(ours, token, now + 91), JwtErrc::expired);
  EXPECT_EQ(verdict(ours, token, now - 41), JwtErrc::not_yet_valid);
  EXPECT_EQ(verdict(ours, token, now), JwtErrc::ok);
  // The same length, one signature character changed: not the remembered token.
  auto flipped = token;
  auto at = token.rfind('.') + 3;
  flipped[at] = flipped[at] == 'A' ? 'B' : 'A';
  EXPECT_EQ(verdict(ours, flipped), JwtErrc::bad_signature);
  // Another codec on the same thread (another secret) remembers nothing of this one.
  EXPECT_EQ(verdict(codec({JwtAlgorithm::hs256}, "another-secret-that-is-also-long-enough!!"), token),
            JwtErrc::bad_signature);
  // Nor one that no longer accepts the algorithm.
  EXPECT_EQ(verdict(codec({JwtAlgorithm::hs512}), token), JwtErrc::algorithm_refused);
  // Hundreds of other tokens later (every slot reused), the first is verified again from scratch.
  for (int i = 0; i < 600; ++i)
    ASSERT_EQ(verdict(ours, make(hs256_header(), json{{"sub", "u" + std::to_string(i)}, {"exp", now + 60}}.dump())),
              JwtErrc::ok);
  EXPECT_EQ(verdict(ours, token), JwtErrc::ok);
}

TEST(JwtTest, TruncatedGarbageAndExtraSegmentsAreMalformed) {
  auto ours = codec();
  auto token = make(hs256_header(), json{{"sub", "u1"}, {"exp", now + 60}}.dump());
  ASSERT_EQ(verdict(ours, token), JwtErrc::ok);
  for (std::size_t keep : {std::size_t{0}, std::size_t{1}, token.find('.'), token.find('.') + 1, token.rfind('.'),
                           token.rfind('.') + 1})
    EXPECT_EQ(verdict(ours, token.substr(0, keep)), JwtErrc::malformed) << keep;
  EXPECT_NE(verdict(ours, token.substr(0, token.size() - 1)), JwtErrc::ok) << "one character short";
  EXPECT_EQ(verdict(ours, token.substr(0, token.size() - 2)), JwtErrc::malformed) << "a length base64 cannot have";
  for (const std::string& garbage : std::vector<std::string>{"", ".", "..", "...", "a.b.c", "not a token", "Bearer x.y.z", "\xff\xfe.\x00.\x01", "eyJ.eyJ.eyJ",
        std::string(3, '\0'), token + " ", " " + token, token + "\n", token + "=", token + ".", "." + token})
    EXPECT_NE(verdict(ours, garbage), JwtErrc::ok) << json(garbage).dump(-1, ' ', false, json::error_handler_t::replace);
  EXPECT_EQ(verdict(ours, token + "." + token.substr(0, token.find('.'))), JwtErrc::malformed) << "four segments";
  EXPECT_EQ(verdict(ours, token + ".x.y"), JwtErrc::malformed) << "five segments (a JWE shape)";
  EXPECT_EQ(verdict(ours, token + std::string(max_token_bytes, 'A')), JwtErrc::malformed) << "too long";
  auto padded = b64(hs256_header()) + "=." + token.substr(token.find('.') + 1);
  EXPECT_EQ(verdict(ours, padded), JwtErrc::malformed) << "padding is not compact JWS";
}

TEST(JwtTest, HeaderAndPayloadMustBeJsonObjects) {
  auto ours = codec();
  std::string claims = json{{"sub", "u1"}, {"exp", now + 60}}.dump();
  for (std::string header : {"not json", "[\"HS256\"]", "\"HS256\"", "{}", R"({"alg":256})", R"({"alg":null})",
                             R"({"typ":"JWT"})", R"({"alg":"HS256")", R"({"alg":"HS256","crit":["exp"]})"})
    EXPECT_EQ(verdict(ours, make(header, claims)), JwtErrc::bad_header) << header;
  for (std::string payload : {"not json", "[1,2]", "42", "null", "{\"sub\":"})
    EXPECT_EQ(verdict(ours, make(hs256_header(), payload)), JwtErrc::bad_claims) << payload;
}

TEST(SessionsTest, ForeignTokensAreRefusedUnlessAcceptedThenCapped) {
  Sessions strict(codec(), 3600s);
  std::string why;
  EXPECT_FALSE(strict.authenticate(make(hs256_header(), json{{"sub", "pp-7"}, {"role", "admin"}, {"exp", now + 60}}.dump()),
                                   now, &why));
  EXPECT_EQ(why, "unknown user (another issuer's tokens are not accepted here)");
  Sessions capped(codec(), 3600s, {true, "operator"});
  EXPECT_EQ(capped.authenticate(make(hs256_header(), json{{"sub", "pp-7"}, {"role", "admin"}, {"exp", now + 60}}.dump()), now)->role,
            "operator");
  EXPECT_EQ(capped.authenticate(make(hs256_header(), json{{"sub", "pp-7"}, {"exp", now + 60}}.dump()), now)->role, "viewer");
  // Known users are judged by their record, never by the external cap: disabled and deleted
  // users are refused whatever accept says.
  User gone{"u-gone", "deleted:u-gone", "admin", "2026-01-01T00:00:00.000Z", 0};
  gone.deleted = true;
  capped.remember(gone);
  EXPECT_FALSE(capped.authenticate(make(hs256_header(), json{{"sub", "u-gone"}, {"exp", now + 60}}.dump()), now, &why));
  EXPECT_EQ(why, "the user was deleted");
  User off{"u-off", "off", "viewer", "2026-01-01T00:00:00.000Z", 0};
  off.disabled = true;
  capped.remember(off);
  EXPECT_FALSE(capped.authenticate(make(hs256_header(), json{{"sub", "u-off"}, {"exp", now + 60}}.dump()), now, &why));
  EXPECT_EQ(why, "the user is disabled");
}

TEST(SessionsTest, RolesRevocationAndPasswordChanges) {
  // Foreign tokens accepted up to admin here, to test their other rules.
  Sessions sessions(codec(), 3600s, {true, "admin"});
  User alice{"u-alice", "alice", "operator", "2026-01-01T00:00:00.000Z", 0};
  sessions.remember(alice);
  auto issued = sessions.issue(alice, now);
  EXPECT_EQ(issued.expires_at, now + 3600);
  auto principal = sessions.authenticate(issued.token, now);
  ASSERT_TRUE(principal);
  EXPECT_EQ(principal->subject, "u-alice");
  EXPECT_EQ(principal->role, "operator");
  for (const char* claim : {"sub", "role", "iat", "exp", "jti"}) EXPECT_TRUE(principal->claims.contains(claim)) << claim;

  // Foreign tokens: a sub and no role is a viewer; a role of the three is kept; others refused.
  std::string why;
  EXPECT_EQ(sessions.authenticate(make(hs256_header(), json{{"sub", "pp-7"}, {"exp", now + 60}}.dump()), now)->role,
            "viewer");
  EXPECT_EQ(sessions.authenticate(make(hs256_header(), json{{"sub", "pp-7"}, {"role", "admin"}, {"exp", now + 60}}.dump()), now)->role,
            "admin");
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", "x"}, {"role", "root"}, {"exp", now + 60}}.dump()), now));
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", "x"}, {"role", 3}, {"exp", now + 60}}.dump()), now));
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", ""}, {"exp", now + 60}}.dump()), now, &why));
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", 12}, {"exp", now + 60}}.dump()), now, &why));
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"exp", now + 60}}.dump()), now, &why));
  EXPECT_EQ(why, "no sub claim");
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", "x"}}.dump()), now, &why));
  EXPECT_EQ(why, "no exp claim");
  // A token claiming more than the known user now has is capped at the user's role.
  EXPECT_EQ(sessions.authenticate(make(hs256_header(), json{{"sub", "u-alice"}, {"role", "admin"}, {"exp", now + 60}}.dump()), now)->role,
            "operator");

  // Logout: this token only, by jti; a foreign token without jti, by its signature.
  auto other = sessions.issue(alice, now);
  sessions.revoke({Sessions::revocation_key(principal->claims, issued.token),
                   sessions.revocation_expiry(principal->claims, now)},
                  now);
  EXPECT_FALSE(sessions.authenticate(issued.token, now, &why));
  EXPECT_EQ(why, "revoked (logged out)");
  EXPECT_TRUE(sessions.authenticate(other.token, now));
  auto foreign = make(hs256_header(), json{{"sub", "pp-7"}, {"exp", now + 60}}.dump());
  auto foreign_claims = sessions.authenticate(foreign, now)->claims;
  sessions.revoke({Sessions::revocation_key(foreign_claims, foreign), sessions.revocation_expiry(foreign_claims, now)}, now);
  EXPECT_FALSE(sessions.authenticate(foreign, now));
  EXPECT_EQ(sessions.revocation_expiry(foreign_claims, now), now + 60 + 30 + 1) << "kept past exp + leeway";

  // A password change in this second: older tokens go, a token issued right after stands.
  alice.tokens_valid_after = now + 1;
  sessions.remember(alice);
  EXPECT_FALSE(sessions.authenticate(other.token, now, &why));
  EXPECT_EQ(why, "revoked (password changed)");
  auto fresh = sessions.issue(alice, now);
  EXPECT_EQ(fresh.issued_at, now + 1);
  EXPECT_TRUE(sessions.authenticate(fresh.token, now));
  EXPECT_FALSE(sessions.authenticate(make(hs256_header(), json{{"sub", "u-alice"}, {"exp", now + 60}}.dump()), now))
      << "no iat cannot prove it came after the change";
  // An older copy of the user (a slow reader) does not undo the revocation.
  alice.tokens_valid_after = 0;
  sessions.remember(alice);
  EXPECT_FALSE(sessions.authenticate(other.token, now));
}

TEST(SessionsTest, TheTokenComesFromTheBearerHeaderOrTheCookie) {
  HttpRequest request;
  EXPECT_EQ(token_from(request), "");
  request.headers = {{"cookie", "theme=dark; synthorg_session=abc.def.ghi; other=1"}};
  EXPECT_EQ(token_from(request), "abc.def.ghi");
  request.headers.emplace_back("authorization", "bearer  x.y.z ");
  EXPECT_EQ(token_from(request), "x.y.z") << "the header wins, scheme case-insensitive";
  request.headers = {{"authorization", "Basic dXNlcjpwYXNz"}, {"cookie", "synthorg_session=\"q.r.s\""}};
  EXPECT_EQ(token_from(request), "q.r.s");
  request.headers = {{"cookie", "xsynthorg_session=nope; synthorg_sessionx=nope"}};
  EXPECT_EQ(token_from(request), "");
}

TEST(LimitsTest, LockoutCountsFailuresInARowAndExpires) {
  LoginThrottle throttle(3);
  auto t0 = LoginThrottle::Clock::now();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(throttle.fail("bob", t0, 5, 300s), 0) << i;
  EXPECT_EQ(throttle.retry_after("bob", t0), 0);
  EXPECT_EQ(throttle.fail("bob", t0, 5, 300s), 300);
  EXPECT_EQ(throttle.retry_after("bob", t0), 300);
  EXPECT_EQ(throttle.retry_after("bob", t0 + 299500ms), 1) << "rounded up";
  EXPECT_EQ(throttle.fail("bob", t0 + 1s, 5, 300s), 0) << "a straggler does not extend it";
  EXPECT_EQ(throttle.retry_after("bob", t0 + 300s), 0);
  EXPECT_EQ(throttle.retry_after("carol", t0), 0) << "per username";
  // A success ends the run; a quiet spell longer than the lock period does too.
  throttle.fail("dave", t0, 2, 10s);
  throttle.succeed("dave");
  EXPECT_EQ(throttle.fail("dave", t0, 2, 10s), 0);
  EXPECT_EQ(throttle.fail("dave", t0 + 11s, 2, 10s), 0);
  // Random names cannot grow the table past its bound; locked ones are kept.
  for (int i = 0; i < 100; ++i) throttle.fail("random-" + std::to_string(i), t0 + 20s, 5, 10s);
  EXPECT_LE(throttle.tracked(), 3u);
}

TEST(LimitsTest, TheHashQueueBoundsConcurrencyAndRefusesWhenFull) {
  host::ThreadPoolExecutor executor({.io_threads = 1, .blocking_threads = 4, .blocking_queue = 16});
  auto queue = std::make_shared<HashQueue>(executor, 2, 3);
  std::mutex mutex;
  std::condition_variable released;
  bool open = false;
  std::atomic<int> running{0}, peak{0}, done{0}, refused{0};
  auto job = [&] {
    return HashQueue::Job{[&] {
                            int now_running = ++running;
                            int seen = peak.load();
                            while (now_running > seen && !peak.compare_exchange_weak(seen, now_running)) {
                            }
                            std::unique_lock lock(mutex);
                            released.wait(lock, [&] { return open; });
                            --running;
                            ++done;
                          },
                          [&] { ++refused; }};
  };
  int accepted = 0;
  for (int i = 0; i < 8; ++i) accepted += queue->submit(job());
  EXPECT_EQ(accepted, 5) << "2 running and 3 waiting";
  {
    std::lock_guard lock(mutex);
    open = true;
  }
  released.notify_all();
  for (int i = 0; i < 200 && done < 5; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done, 5);
  EXPECT_LE(peak, 2);
  EXPECT_EQ(refused, 0);
  EXPECT_TRUE(queue->submit(job())) << "slots are given back";
  for (int i = 0; i < 200 && done < 6; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done, 6);
}

TEST(PasswordsTest, Argon2idHashesVerifyAndRefuseOtherVariants) {
  PasswordHasher hasher({.memory_kib = 1024, .iterations = 1, .parallelism = 1});
  auto hash = hasher.hash("correct horse battery staple");
  EXPECT_EQ(hash.rfind("$argon2id$v=19$m=1024,t=1,p=1$", 0), 0u) << hash;
  EXPECT_NE(hasher.hash("correct horse battery staple"), hash) << "a fresh salt each time";
  EXPECT_TRUE(hasher.verify(hash, "correct horse battery staple"));
  EXPECT_FALSE(hasher.verify(hash, "correct horse battery stapler"));
  EXPECT_FALSE(hasher.verify(hash, ""));
  EXPECT_FALSE(hasher.verify("", "x"));
  EXPECT_FALSE(hasher.verify("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "x"));
  EXPECT_FALSE(hasher.verify("$argon2id$garbage", "x"));
  std::string with_nul("a\0b", 3);
  auto nul_hash = hasher.hash(with_nul);
  EXPECT_TRUE(hasher.verify(nul_hash, with_nul));
  EXPECT_FALSE(hasher.verify(nul_hash, "a")) << "the whole password counts, NUL and after";
}

}  // namespace
}  // namespace synthorg::auth
