// Request smuggling, from the client's side: requests whose framing (RFC 9112 section 6, and the
// Host rule of 3.2) a front end and a back end could read two ways, each followed on the same
// connection by a second request. A server that reads the first one safely answers it once with
// the status below and closes; one that desyncs also answers the smuggled request.
#pragma once

#include <iterator>
#include <regex>
#include <string>
#include <vector>

namespace synthorg::testing {

struct FramingCase {
  std::string name;
  std::string request;  // the head and whatever follows it, smuggled request included
  int status;           // the one answer expected
};

inline std::vector<FramingCase> framing_cases(const std::string& path) {
  const std::string smuggled = "GET /api/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  auto post = [&](const std::string& headers, const std::string& version = "HTTP/1.1") {
    return "POST " + path + " " + version + "\r\n" + headers + "\r\n" + smuggled;
  };
  return {
      {"TE gzip", post("Host: x\r\nTransfer-Encoding: gzip\r\n"), 400},
      {"TE identity", post("Host: x\r\nTransfer-Encoding: identity\r\n"), 400},
      {"TE chunked, identity", post("Host: x\r\nTransfer-Encoding: chunked, identity\r\n"), 400},
      {"TE xchunked", post("Host: x\r\nTransfer-Encoding: xchunked\r\n"), 400},
      {"TE chunked then identity on two lines", post("Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"), 400},
      {"TE chunked, chunked", post("Host: x\r\nTransfer-Encoding: chunked, chunked\r\n"), 400},
      {"TE empty", post("Host: x\r\nTransfer-Encoding: \r\n"), 400},
      {"TE and Content-Length", post("Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"), 400},
      {"Content-Length and TE", post("Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n"), 400},
      {"TE in HTTP/1.0", post("Host: x\r\nTransfer-Encoding: chunked\r\n", "HTTP/1.0"), 400},
      // Found by fuzz/http_framing_fuzzer: an element that is no coding must not be skipped.
      {"TE with an element that is no token", post("Host: x\r\nTransfer-Encoding: ;zip, chunked\r\n"), 400},
      {"TE with a stray character", post("Host: x\r\nTransfer-Encoding: @, chunked\r\n"), 400},
      {"TE gzip, chunked (not decoded)", post("Host: x\r\nTransfer-Encoding: gzip, chunked\r\n"), 501},
      {"space before the colon", post("Host: x\r\nTransfer-Encoding : chunked\r\n"), 400},
      // Beast unfolds the line (RFC 9112 5.2 allows that, or a 400): "gzip, chunked", refused.
      {"TE folded onto a second line", post("Host: x\r\nTransfer-Encoding: gzip,\r\n chunked\r\n"), 501},
      {"two Content-Lengths", post("Host: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n"), 400},
      {"Content-Length with a sign", post("Host: x\r\nContent-Length: +0\r\n"), 400},
      {"Content-Length negative", post("Host: x\r\nContent-Length: -1\r\n"), 400},
      {"Content-Length in hex", post("Host: x\r\nContent-Length: 0x0\r\n"), 400},
      {"two Hosts", post("Host: x\r\nHost: y\r\nContent-Length: 0\r\n"), 400},
      {"no Host in HTTP/1.1", post("Content-Length: 0\r\n"), 400},
  };
}

// The chunked-body cases: the head is sound, the chunk framing is not.
inline std::vector<FramingCase> chunk_cases(const std::string& path) {
  const std::string smuggled = "GET /api/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  auto post = [&](const std::string& chunks) {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + smuggled;
  };
  return {
      {"chunk size overflows 64 bits", post("10000000000000001\r\nx\r\n0\r\n\r\n"), 400},
      {"chunk size with 0x", post("0x1\r\nx\r\n0\r\n\r\n"), 400},
      {"chunk size negative", post("-1\r\nx\r\n0\r\n\r\n"), 400},
      {"chunk longer than its size", post("1\r\nxx\r\n0\r\n\r\n"), 400},
      {"chunk size line with bare LF", post("1\nx\r\n0\r\n\r\n"), 400},
  };
}

// How many responses `received` holds: status lines ("HTTP/1.x NNN ").
inline int responses_in(const std::string& received) {
  static const std::regex status_line("HTTP/1\\.[01] [1-5][0-9][0-9] ");
  return static_cast<int>(std::distance(std::sregex_iterator(received.begin(), received.end(), status_line),
                                        std::sregex_iterator()));
}

}  // namespace synthorg::testing
