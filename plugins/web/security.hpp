// The headers every answer of the web listener carries, and the per-request CSP nonce.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

namespace synthorg::web {

// 128 bits from OpenSSL, base64url: unguessable per response. Drawn from a per-thread pool
// refilled 256 nonces at a time, so a request costs no RAND_bytes call of its own.
std::string new_nonce();

// The Content-Security-Policy for one response: scripts only from this origin, styles from this
// origin or carrying the nonce (the dashboard's <style nonce> and libraries reading
// <meta name="csp-nonce">), nothing framed, no plugins, no <base> hijack.
std::string content_security_policy(std::string_view nonce);

// X-Content-Type-Options, X-Frame-Options, Referrer-Policy, Permissions-Policy,
// Strict-Transport-Security (when `hsts`) and the CSP with `nonce`. Set, never appended, so an
// upstream's own values are replaced.
void set_security_headers(boost::beast::http::fields& fields, std::string_view nonce, bool hsts);

// The same headers as raw lines ("Name: value\r\n"), for replies whose head is written without
// Beast's fields (one allocation-free append instead of six field insertions).
void append_security_headers(std::string& out, std::string_view nonce, bool hsts);

}  // namespace synthorg::web
