// libFuzzer target: arbitrary bytes as the Flight gateway's call metadata (call_policy.hpp): the
// method path, the authorization header as Basic and as Bearer, header names to forward, and the
// RetryInfo details built from them. Nothing may crash; a credential that parses must be one the
// header really holds, and the credentials header must never be forwarded in any spelling.
#include <cstdint>
#include <string>
#include <string_view>

#include "call_policy.hpp"

using namespace synthorg::flight_gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto method = flight_method(input);
  if (!method.empty() && (method.find('/') != std::string_view::npos || input.find(method) == std::string_view::npos))
    __builtin_trap();
  if (auto basic = parse_basic(input)) {
    if (basic->username.empty() || basic->username.find(':') != std::string::npos) __builtin_trap();
  }
  auto token = bearer_token(input);
  if (!token.empty() && input.find(token) == std::string_view::npos) __builtin_trap();
  std::string lower(input);
  for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  if ((lower == "authorization" || lower == "cookie") && forwarded_to_workload(input)) __builtin_trap();
  (void)forwarded_to_client(input);
  auto details = retry_info_details(8, input, static_cast<std::int64_t>(size));
  if (details.size() < input.size()) __builtin_trap();
  return 0;
}
