#include "request_id.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <random>

#include "synthorg/crypto.hpp"
#include "synthorg/trace_context.hpp"

namespace synthorg::http_relay {

bool acceptable_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string new_request_id() {
  thread_local std::mt19937_64 generator = [] {
    auto seed = crypto::random_bytes(8);
    std::uint64_t value = 0;
    std::memcpy(&value, seed.data(), sizeof value);
    return std::mt19937_64(value);
  }();
  auto value = generator();
  return trace::to_hex(reinterpret_cast<const std::uint8_t*>(&value), sizeof value);
}

}  // namespace synthorg::http_relay
