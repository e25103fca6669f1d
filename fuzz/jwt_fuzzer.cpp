// libFuzzer target: arbitrary bytes as a JWT through the auth plugin's verifier, twice. First
// as they come (form, header, algorithm and signature checks). Then split at the first two
// bytes 0x00 into header and payload and signed with the secret, so the fuzzer also reaches the
// JSON and claim checks a signature would otherwise keep it from.
#include <cstdint>
#include <string_view>

#include "jwt.hpp"
#include "synthorg/crypto.hpp"

namespace {

using synthorg::auth::JwtAlgorithm;
using synthorg::auth::JwtCodec;
constexpr std::string_view secret = "fuzzing-secret-fuzzing-secret-fuzzing-secret";

const JwtCodec& codec() {
  static const JwtCodec instance({std::string(secret), {JwtAlgorithm::hs256, JwtAlgorithm::hs512}, std::chrono::seconds(30)});
  return instance;
}

void check(std::string_view token) {
  auto verified = codec().verify(token, 1'700'000'000);
  // A token that passes has an object payload; anything else is a bug in the verifier.
  if (verified && !verified.claims.is_object()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input);
  auto first = input.find('\0');
  auto second = first == std::string_view::npos ? first : input.find('\0', first + 1);
  if (second == std::string_view::npos) return 0;
  auto algorithm = input.substr(second + 1) == "512" ? JwtAlgorithm::hs512 : JwtAlgorithm::hs256;
  auto signing_input = synthorg::crypto::base64url_encode(input.substr(0, first)) + "." +
                       synthorg::crypto::base64url_encode(input.substr(first + 1, second - first - 1));
  auto token = signing_input + "." +
               synthorg::crypto::base64url_encode(synthorg::auth::jwt_hmac(algorithm, secret, signing_input));
  check(token);
  return 0;
}
