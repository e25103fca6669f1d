// libFuzzer target: arbitrary bytes as an HTTP/1.1 request through Beast's parser (with the
// server's limits), our conversion to HttpRequest, routing, query and header lookups, and a
// problem response built from whatever came in.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "request.hpp"
#include "router.hpp"

namespace {

synthorg::http_api::Router& router() {
  static auto instance = [] {
    auto router = std::make_shared<synthorg::http_api::Router>();
    static std::vector<synthorg::Token> tokens;
    auto noop = [](synthorg::HttpRequest&, synthorg::Responder) {};
    for (const char* pattern : {"/api/v1/healthz", "/api/v1/settings/{ns}/{key}", "/api/v1/settings/{ns}", "/a/{b}/c"})
      tokens.push_back(router->add({"GET", pattern, synthorg::Access::open, {}, {}, noop}));
    return router;
  }();
  return *instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (used < size && !parser.is_done()) {
    auto consumed = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) break;
    if (ec || consumed == 0) return 0;
    used += consumed;
  }
  if (!parser.is_done()) return 0;
  auto message = parser.release();
  auto request = synthorg::http_api::to_http_request(message, "fuzz");
  auto match = router().match(request.method, request.path);
  (void)request.query_param("key");
  (void)request.header("x-request-id");
  auto problem = synthorg::HttpResponse::problem(400, "fuzz", request.path + request.query, {{"echo", request.body}});
  if (problem.body.empty() || match.params.size() > 8) __builtin_trap();
  return 0;
}
