#include "http_framing.hpp"

#include <cctype>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <fmt/format.h>

namespace synthorg::http_relay {
namespace {

namespace http = boost::beast::http;

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// RFC 9110 5.6.2: tchar.
bool is_token(std::string_view text) {
  if (text.empty()) return false;
  for (unsigned char c : text)
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos))
      return false;
  return true;
}

// The codings of every Transfer-Encoding line, in order, each without its parameters; nullopt
// when an element is not `token *( ";" parameter )`. Found by fuzz/http_framing_fuzzer: a
// malformed element (";zip, chunked") must not be skipped, because Beast, reading the same line,
// does not find it chunked, and would read the chunked body as the next request.
std::optional<std::vector<std::string_view>> transfer_codings(const http::fields& head) {
  std::vector<std::string_view> codings;
  for (auto [it, end] = head.equal_range(http::field::transfer_encoding); it != end; ++it) {
    std::string_view value(it->value().data(), it->value().size());
    while (true) {
      auto comma = value.find(',');
      auto element = trim(value.substr(0, comma));
      auto name = trim(element.substr(0, element.find(';')));
      if (!element.empty() && !is_token(name)) return std::nullopt;
      if (!name.empty()) codings.push_back(name);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return codings;
}

bool is_chunked(std::string_view coding) { return boost::beast::iequals(boost::beast::string_view(coding.data(), coding.size()), "chunked"); }

FramingError bad(std::string detail) { return {400, "bad_framing", std::move(detail)}; }

}  // namespace

std::optional<FramingError> framing_error(const http::fields& head, unsigned version) {
  // RFC 9112 3.2: exactly one Host in an HTTP/1.1 request, so routing sees what every hop sees.
  auto hosts = head.count(http::field::host);
  if (hosts > 1) return bad("the request has more than one Host header; send exactly one");
  if (version >= 11 && hosts == 0) return bad("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)");

  if (head.find(http::field::transfer_encoding) == head.end()) return std::nullopt;
  // 6.1: HTTP/1.0 has no transfer codings; such a message's framing is faulty.
  if (version < 11)
    return bad("Transfer-Encoding is not part of HTTP/1.0; send Content-Length, or use HTTP/1.1 with chunked");
  // 6.3: with both, the length is ambiguous to whoever reads only one of them.
  if (head.find(http::field::content_length) != head.end())
    return bad("the request has both Transfer-Encoding and Content-Length; send only one");
  auto parsed = transfer_codings(head);
  if (!parsed)
    return bad("Transfer-Encoding is not a list of transfer codings; send 'Transfer-Encoding: chunked' or "
               "Content-Length");
  const auto& codings = *parsed;
  if (codings.empty()) return bad("Transfer-Encoding is empty; send 'Transfer-Encoding: chunked' or Content-Length");
  // 6.3: a request whose final coding is not chunked has a length no one can know.
  if (!is_chunked(codings.back()))
    return bad(fmt::format("the final transfer coding is '{}', not chunked, so the body's end cannot be found; "
                           "send 'Transfer-Encoding: chunked' or Content-Length",
                           codings.back()));
  for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
    if (is_chunked(codings[i]))
      return bad("chunked is applied more than once; send 'Transfer-Encoding: chunked' once");
    // 6.1: a coding we cannot decode; the body would reach the handler still encoded.
    return FramingError{501, "transfer_coding_not_supported",
                        fmt::format("the transfer coding '{}' is not supported; send the body with chunked alone",
                                    codings[i])};
  }
  return std::nullopt;
}

}  // namespace synthorg::http_relay
