#include "call_policy.hpp"

#include <algorithm>
#include <array>

namespace synthorg::flight_gateway {
namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
         });
}

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// The credentials after `scheme` and a space, or nullopt when the value has another scheme.
std::optional<std::string_view> after_scheme(std::string_view value, std::string_view scheme) noexcept {
  value = trim(value);
  if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme) || value[scheme.size()] != ' ')
    return std::nullopt;
  return trim(value.substr(scheme.size() + 1));
}

// Standard base64 (RFC 4648 section 4, what Basic uses), padding optional; nullopt on any other
// character.
std::optional<std::string> base64_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int value = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '+'             ? 62
                : c == '/'             ? 63
                                       : -1;
    if (value < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  if (count >= 6) return std::nullopt;  // a lone sixth of a byte: not base64
  return out;
}

void varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void length_delimited(std::string& out, int field, std::string_view bytes) {
  varint(out, static_cast<std::uint64_t>(field) << 3 | 2);
  varint(out, bytes.size());
  out.append(bytes);
}

}  // namespace

bool single_request(std::string_view method) noexcept {
  return !method.empty() && method != "DoPut" && method != "DoExchange" && method != "Handshake";
}

bool single_response(std::string_view method) noexcept {
  return method == "GetFlightInfo" || method == "GetSchema" || method == "PollFlightInfo";
}

std::string_view flight_method(std::string_view path) noexcept {
  if (path.size() <= kFlightService.size() || path.substr(0, kFlightService.size()) != kFlightService) return {};
  auto name = path.substr(kFlightService.size());
  return name.find('/') == std::string_view::npos ? name : std::string_view{};
}

std::optional<BasicCredentials> parse_basic(std::string_view authorization) {
  auto encoded = after_scheme(authorization, "Basic");
  if (!encoded) return std::nullopt;
  auto decoded = base64_decode(*encoded);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

std::string_view bearer_token(std::string_view authorization) noexcept {
  auto token = after_scheme(authorization, "Bearer");
  return token ? *token : std::string_view{};
}

bool forwarded_to_workload(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 8> dropped{
      "authorization", "cookie", "proxy-authorization", "host", "te", "content-type", "user-agent", "content-length"};
  if (name.empty() || name.front() == ':' || name.substr(0, 5) == "grpc-") return false;
  return std::none_of(dropped.begin(), dropped.end(), [&](std::string_view drop) { return iequals(name, drop); });
}

bool forwarded_to_client(std::string_view name) noexcept {
  if (name.empty() || name.front() == ':' || name.substr(0, 5) == "grpc-") return false;
  return !iequals(name, "content-type") && !iequals(name, "content-length");
}

std::string retry_info_details(int code, std::string_view message, std::int64_t retry_after_seconds) {
  std::string duration;  // google.protobuf.Duration{seconds = 1}
  varint(duration, 1 << 3 | 0);
  varint(duration, static_cast<std::uint64_t>(std::max<std::int64_t>(retry_after_seconds, 0)));
  std::string retry_info;  // google.rpc.RetryInfo{retry_delay = 1}
  length_delimited(retry_info, 1, duration);
  std::string any;  // google.protobuf.Any{type_url = 1, value = 2}
  length_delimited(any, 1, "type.googleapis.com/google.rpc.RetryInfo");
  length_delimited(any, 2, retry_info);
  std::string status;  // google.rpc.Status{code = 1, message = 2, details = 3}
  varint(status, 1 << 3 | 0);
  varint(status, static_cast<std::uint64_t>(code));
  length_delimited(status, 2, message);
  length_delimited(status, 3, any);
  return status;
}

}  // namespace synthorg::flight_gateway
