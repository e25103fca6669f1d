// The crypto helpers against published vectors: RFC 4648 (base64), FIPS 180-2 (SHA-256),
// RFC 4231 (HMAC-SHA256) and the Fernet specification's own generate/verify/invalid files.
#include "synthorg/crypto.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace synthorg::crypto {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string all_byte_values() {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  return bytes;
}

TEST(CryptoBase64Url, Rfc4648VectorsPaddedAndNot) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [bytes, padded] : vectors) {
    SCOPED_TRACE(bytes);
    EXPECT_EQ(base64url_encode(bytes, true), padded);
    auto unpadded = padded.substr(0, padded.find('='));
    EXPECT_EQ(base64url_encode(bytes), unpadded) << "no padding unless asked";
    EXPECT_EQ(base64url_decode(padded), bytes);
    EXPECT_EQ(base64url_decode(unpadded), bytes);
  }
}

TEST(CryptoBase64Url, UsesTheUrlSafeAlphabet) {
  EXPECT_EQ(base64url_encode("\xfb\xff\xbf"), "-_-_");
  EXPECT_EQ(base64url_decode("-_-_"), "\xfb\xff\xbf");
}

TEST(CryptoBase64Url, RoundTripsEveryByteAndLength) {
  auto bytes = all_byte_values();
  for (std::size_t n = 0; n <= bytes.size(); ++n) {
    auto slice = bytes.substr(256 - n);
    ASSERT_EQ(base64url_decode(base64url_encode(slice)), slice) << n;
    ASSERT_EQ(base64url_decode(base64url_encode(slice, true)), slice) << n;
  }
  // Longer than one internal slice of OpenSSL calls.
  auto big = random_bytes(100'003);
  EXPECT_EQ(base64url_decode(base64url_encode(big)), big);
  EXPECT_EQ(base64url_decode(base64url_encode(big, true)), big);
}

TEST(CryptoBase64Url, RejectsBadInput) {
  for (const char* bad : {"Z",           // one character cannot hold a byte
                          "Zm9vY",       // nor can 4k+1
                          "Zg=",         // padded but not to a multiple of 4
                          "Zg===",       // too much padding
                          "Zm9v====",    //
                          "=Zg=",        // padding first
                          "Zg==Zg==",    // padding in the middle
                          "Zm9v+g",      // standard alphabet, not base64url
                          "Zm9v/g",      //
                          "Zm 9v",       // whitespace
                          "Zm9v\n",      //
                          "Zm9v%",       //
                          "Zh==",        // non-zero unused bits: a second spelling of "f"
                          "Zm9=",        // and of "fo"
                          "\xc3\xa9"}) {
    EXPECT_FALSE(base64url_decode(bad).has_value()) << bad;
  }
  EXPECT_EQ(base64url_decode(""), "");
}

TEST(CryptoHash, Sha256KnownAnswers) {
  EXPECT_EQ(to_hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256("abc").size(), 32u);
}

TEST(CryptoHash, Sha256FileIsHexAndReportsIoErrors) {
  synthorg::testing::TempDir dir;
  auto file = dir.write("abc.txt", "abc");
  EXPECT_EQ(sha256_file(file), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto big = random_bytes(200'000);  // several read buffers
  std::ofstream(dir / "big.bin", std::ios::binary) << big;
  EXPECT_EQ(sha256_file(dir / "big.bin"), to_hex(sha256(big)));
  try {
    sha256_file(dir / "absent");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "absent").string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(sha256_file(dir.path()), std::runtime_error) << "a directory cannot be read as a file";
}

TEST(CryptoHash, HmacSha256Rfc4231) {
  // Test case 1 and test case 2 (the key shorter than the output).
  EXPECT_EQ(to_hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block size is hashed first.
  EXPECT_EQ(to_hex(hmac_sha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // Empty key and message: OpenSSL must not mistake the empty key for "reuse the last one".
  EXPECT_EQ(to_hex(hmac_sha256("", "")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoHash, ToHexAndRandomBytes) {
  EXPECT_EQ(to_hex(std::string("\x00\xff\x10\xab", 4)), "00ff10ab");
  EXPECT_EQ(to_hex(""), "");
  EXPECT_EQ(random_bytes(0), "");
  EXPECT_EQ(random_bytes(33).size(), 33u);
  EXPECT_NE(random_bytes(32), random_bytes(32));
}

TEST(CryptoConstantTimeEqual, ComparesWholeStrings) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal("secret", "Secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secre"));
  EXPECT_FALSE(constant_time_equal("secre", "secret"));
  EXPECT_FALSE(constant_time_equal("", "x"));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

// --- Fernet -------------------------------------------------------------------------------

// "1985-10-26T01:20:00-07:00" as the vectors write their clocks.
std::int64_t rfc3339_to_unix(const std::string& text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, oh = 0, om = 0;
  char sign = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d%c%d:%d", &y, &mo, &d, &h, &mi, &s, &sign, &oh, &om) != 9)
    throw std::runtime_error("unexpected time in a vector: " + text);
  using namespace std::chrono;
  auto days = sys_days{year{y} / month{static_cast<unsigned>(mo)} / day{static_cast<unsigned>(d)}}.time_since_epoch();
  std::int64_t local = days.count() * 86400 + h * 3600 + mi * 60 + s;
  std::int64_t offset = (oh * 3600 + om * 60) * (sign == '-' ? -1 : 1);
  return local - offset;
}

std::string bytes_from(const json& list) {
  std::string out;
  for (const auto& b : list) out += static_cast<char>(b.get<int>());
  return out;
}

// The official vectors are read where they are kept, never copied into this repository.
std::optional<json> fernet_vectors(const std::string& name) {
  std::filesystem::path file = std::filesystem::path(SYNTHORG_CONTRACTS_DIR) / "fernet" / (name + ".json");
  std::ifstream in(file);
  if (!in) return std::nullopt;
  return json::parse(in);
}

#define LOAD_VECTORS_OR_SKIP(var, name)                                                                      \
  auto var = fernet_vectors(name);                                                                           \
  if (!var) {                                                                                                \
    GTEST_SKIP() << "\n\n*** SKIPPED: the official Fernet vectors are absent: " SYNTHORG_CONTRACTS_DIR       \
                    "/fernet/" name ".json ***\n*** (the shared contracts folder is not next to this checkout) " \
                    "***\n\n";                                                                               \
  }                                                                                                          \
  ASSERT_FALSE(var->empty()) << name << ".json holds no vectors"

TEST(CryptoFernetVectors, Generate) {
  LOAD_VECTORS_OR_SKIP(vectors, "generate");
  for (const auto& v : *vectors) {
    Fernet fernet(v["secret"].get<std::string>());
    auto now = rfc3339_to_unix(v["now"]);
    auto token = fernet.encrypt(v["src"].get<std::string>(), now, bytes_from(v["iv"]));
    EXPECT_EQ(token, v["token"].get<std::string>());
    EXPECT_EQ(fernet.decrypt(token, std::nullopt, now), v["src"].get<std::string>());
  }
}

TEST(CryptoFernetVectors, Verify) {
  LOAD_VECTORS_OR_SKIP(vectors, "verify");
  for (const auto& v : *vectors) {
    Fernet fernet(v["secret"].get<std::string>());
    EXPECT_EQ(fernet.decrypt(v["token"].get<std::string>(), std::chrono::seconds(v["ttl_sec"].get<int>()),
                             rfc3339_to_unix(v["now"])),
              v["src"].get<std::string>());
  }
}

TEST(CryptoFernetVectors, Invalid) {
  LOAD_VECTORS_OR_SKIP(vectors, "invalid");
  // Each vector should fail for the reason it describes, not merely fail: that shows every
  // check works on its own. A description not listed here only has to fail.
  const std::map<std::string, std::string> reasons = {
      {"incorrect mac", "signature does not match"},
      {"too short", "wrong length"},
      {"invalid base64", "not base64url"},
      {"payload size not multiple of block size", "wrong length"},
      {"payload padding error", "bad padding"},
      {"far-future TS (unacceptable clock skew)", "in the future"},
      {"expired TTL", "expired"},
      {"incorrect IV (causes padding error)", "bad padding"}};
  for (const auto& v : *vectors) {
    auto desc = v["desc"].get<std::string>();
    SCOPED_TRACE(desc);
    Fernet fernet(v["secret"].get<std::string>());
    try {
      fernet.decrypt(v["token"].get<std::string>(), std::chrono::seconds(v["ttl_sec"].get<int>()),
                     rfc3339_to_unix(v["now"]));
      ADD_FAILURE() << "accepted";
    } catch (const FernetError& e) {
      std::string message = e.what();
      EXPECT_EQ(message.rfind("invalid token", 0), 0u) << message;
      if (auto reason = reasons.find(desc); reason != reasons.end()) {
        EXPECT_NE(message.find(reason->second), std::string::npos) << message;
      }
    }
  }
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const FernetError& e) {
    return e.what();
  }
  return "(no error)";
}

constexpr const char* vector_key = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

TEST(CryptoFernet, GeneratedKeysAre44CharactersOf32Bytes) {
  std::set<std::string> keys;
  for (int i = 0; i < 20; ++i) {
    auto key = Fernet::generate_key();
    EXPECT_EQ(key.size(), 44u);
    EXPECT_EQ(key.back(), '=');
    EXPECT_EQ(base64url_decode(key).value_or("").size(), 32u);
    EXPECT_NO_THROW(Fernet{key});
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), 20u);
}

TEST(CryptoFernet, RoundTripsAnyBytes) {
  Fernet fernet(Fernet::generate_key());
  for (const std::string& message : {std::string(), std::string("hello"), std::string(15, 'x'), std::string(16, 'y'),
                                     all_byte_values(), random_bytes(1 << 20)}) {
    auto token = fernet.encrypt(message);
    EXPECT_EQ(fernet.decrypt(token), message);
    EXPECT_EQ(fernet.decrypt(token, 60s), message);
  }
  EXPECT_NE(fernet.encrypt("same"), fernet.encrypt("same")) << "a fresh IV every time";
}

TEST(CryptoFernet, AcceptsAKeyWithoutPadding) {
  std::string unpadded(vector_key, 43);
  EXPECT_EQ(Fernet(unpadded).decrypt(Fernet(vector_key).encrypt("x")), "x");
}

TEST(CryptoFernet, WrongKeyFails) {
  auto token = Fernet(Fernet::generate_key()).encrypt("secret value");
  auto message = error_of([&] { Fernet(Fernet::generate_key()).decrypt(token); });
  EXPECT_EQ(message.rfind("invalid token", 0), 0u) << message;
}

TEST(CryptoFernet, EveryTamperedByteFails) {
  Fernet fernet(Fernet::generate_key());
  auto token = fernet.encrypt("pay 100 to alice", 1'700'000'000, std::string(16, '\x42'));
  auto raw = *base64url_decode(token);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80}) {
      auto tampered = raw;
      tampered[i] = static_cast<char>(tampered[i] ^ flip);
      auto message = error_of([&] { fernet.decrypt(base64url_encode(tampered, true), std::nullopt, 1'700'000'000); });
      ASSERT_EQ(message.rfind("invalid token", 0), 0u) << "byte " << i << ": " << message;
    }
  }
  for (const auto& bad : {token.substr(0, token.size() - 4), token + "AAAA", std::string(), std::string("gAAAAA"),
                          token.substr(0, 20) + "!" + token.substr(21), " " + token}) {
    auto message = error_of([&] { fernet.decrypt(bad); });
    EXPECT_EQ(message.rfind("invalid token", 0), 0u) << message;
  }
}

TEST(CryptoFernet, TtlAndClockSkew) {
  Fernet fernet(vector_key);
  const std::int64_t stamped = 1'700'000'000;
  auto token = fernet.encrypt("x", stamped, std::string(16, '\0'));
  EXPECT_EQ(fernet.decrypt(token, 60s, stamped + 60), "x") << "exactly at the TTL is still valid";
  EXPECT_NE(error_of([&] { fernet.decrypt(token, 60s, stamped + 61); }).find("invalid token: expired"), std::string::npos);
  EXPECT_EQ(fernet.decrypt(token, 60s, stamped - 60), "x") << "up to 60 s of clock skew is tolerated";
  EXPECT_NE(error_of([&] { fernet.decrypt(token, 60s, stamped - 61); }).find("invalid token: stamped more than 60 s in the future"),
            std::string::npos);
  // Without a TTL the clock is not consulted: stored values stay readable whatever the time,
  // as in the Python and Go implementations.
  EXPECT_EQ(fernet.decrypt(token, std::nullopt, stamped + 10 * 365 * 86400), "x");
  EXPECT_EQ(fernet.decrypt(token, std::nullopt, stamped - 3600), "x");
  // A timestamp at the end of time neither overflows nor passes a TTL.
  auto far = fernet.encrypt("x", std::numeric_limits<std::int64_t>::max(), std::string(16, '\0'));
  EXPECT_THROW(fernet.decrypt(far, 60s, stamped), FernetError);
  EXPECT_THROW(fernet.decrypt(token, std::chrono::seconds(std::numeric_limits<std::int64_t>::min()), stamped), FernetError);
}

TEST(CryptoFernet, EncryptRefusesBadIvAndTime) {
  Fernet fernet(vector_key);
  EXPECT_THROW(fernet.encrypt("x", 0, "short"), FernetError);
  EXPECT_THROW(fernet.encrypt("x", -1, std::string(16, '\0')), FernetError);
}

TEST(CryptoFernet, MalformedKeysSayWhatIsWrongWithoutEchoingTheKey) {
  auto real = Fernet::generate_key();
  struct Case {
    std::string key;
    std::string says;
  };
  std::string standard = "Qm+tZWFuIGtleSB3aXRoIHN0YW5kYXJkIGFscGhhYmV/";  // 44 chars, '+' and '/'
  const Case cases[] = {
      {"", "is empty"},
      {real + "\n", "contains whitespace"},
      {" " + real, "contains whitespace"},
      {standard, "standard base64 alphabet"},
      {"not*a*key*not*a*key*not*a*key*not*a*key*not*", "is not valid base64url"},
      {std::string(41, 'A'), "is not valid base64url"},  // 4k+1 characters cannot be base64
      {base64url_encode("sixteen bytes!!!", true), "decodes to 16 bytes but must decode to 32"},
      {base64url_encode(std::string(48, 'k'), true), "decodes to 48 bytes but must decode to 32"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.says);
    auto message = error_of([&] { Fernet{c.key}; });
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_NE(message.find("generate one with `synthorg keygen fernet`"), std::string::npos) << message;
    if (c.key.size() > 8) {
      EXPECT_EQ(message.find(c.key.substr(2, 8)), std::string::npos) << "the key leaked: " << message;
    }
  }
}

}  // namespace
}  // namespace synthorg::crypto
