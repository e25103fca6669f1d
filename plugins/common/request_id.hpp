// X-Request-Id for the first-party HTTP listeners (http-api, web): a caller's id is kept when it
// is safe to log and echo, otherwise one is made.
#pragma once

#include <string>
#include <string_view>

namespace synthorg::http_relay {

// Up to 128 characters of [A-Za-z0-9._-].
bool acceptable_request_id(std::string_view id);
// 16 hex digits, unique rather than secret: a per-thread generator seeded once from OpenSSL
// (RAND_bytes per request showed up in profiles).
std::string new_request_id();

}  // namespace synthorg::http_relay
