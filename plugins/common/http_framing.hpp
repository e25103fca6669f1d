// The request-framing rules of RFC 9112 that Beast 1.74's parser leaves to its user. Beast reads
// a request whose Transfer-Encoding does not end in `chunked` as having no body, so the body would
// be parsed as the next request on the connection (request smuggling). Both first-party listeners
// (http-api, web) call this once a request's head is parsed; a refusal is answered and the
// connection closed, since its framing can no longer be trusted.
#pragma once

#include <optional>
#include <string>

#include <boost/beast/http/fields.hpp>

namespace synthorg::http_relay {

struct FramingError {
  int status;          // 400, or 501 for a transfer coding we do not decode
  std::string code;    // problem+json code
  std::string detail;  // what was wrong and how to send it instead
};

// nullopt when the head's framing is sound. `version` is 10 or 11.
std::optional<FramingError> framing_error(const boost::beast::http::fields& head, unsigned version);

}  // namespace synthorg::http_relay
