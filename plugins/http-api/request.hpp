// Beast's parsed message to the HttpRequest routes see: one place, used by the server, the
// WebSocket upgrade and the request-parsing fuzzer.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "synthorg/services/http.hpp"

namespace synthorg::http_api {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// Copies method, path, query and headers (names lower-cased); moves the body out of `message`.
HttpRequest to_http_request(BeastRequest& message, std::string remote_address);

}  // namespace synthorg::http_api
