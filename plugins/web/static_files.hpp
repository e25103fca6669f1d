// The files of the web root: safe resolution of request paths, a small-file cache, and the
// HTTP semantics of static files (SPA fallback, caching headers, validators, precompressed
// siblings, single ranges).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

namespace synthorg::web {

struct StaticOptions {
  std::filesystem::path root;
  std::size_t cache_file_bytes = 256 * 1024;        // files up to this size are held in memory
  std::size_t cache_total_bytes = 64 * 1024 * 1024;  // across all cached files
  std::chrono::milliseconds revalidate{1000};        // how stale a cached stat may be
  std::string nonce_placeholder = "__CSP_NONCE__";   // in index.html, replaced per request
};

// What to send, decided without touching the socket; the server writes it.
struct StaticReply {
  enum class Body { none, shared, owned, file };
  boost::beast::http::status status = boost::beast::http::status::ok;
  // Everything but the security headers and Content-Length; a whole response header, so the
  // server moves it into the message instead of copying each field.
  boost::beast::http::response_header<> headers;
  Body body = Body::none;
  std::shared_ptr<const std::string> shared;  // Body::shared: cached bytes [offset, offset+length)
  std::string owned;                          // Body::owned
  std::filesystem::path file;                 // Body::file: bytes [offset, offset+length) of it
  std::uint64_t offset = 0, length = 0;
  // A 200 of a whole file or of index.html: its own header lines, preformatted once per cached
  // file ("Name: value\r\n" each; all but Server, Date, Content-Length, the security headers
  // and Connection). `headers` is then empty: the server writes the head without Beast's fields.
  std::shared_ptr<const std::string> preformatted;
  std::uint64_t content_length() const { return body == Body::owned ? owned.size() : length; }
};

// An application/problem+json reply (never cached) with a stable code.
StaticReply problem_reply(int status, std::string_view code, std::string_view detail);

class FileStore {
 public:
  // Throws std::runtime_error with the fix when the root is missing, is not a directory, or has
  // no index.html.
  explicit FileStore(StaticOptions options);
  ~FileStore();

  StaticReply serve(const boost::beast::http::request_header<>& request, std::string_view nonce);
  const std::filesystem::path& root() const noexcept { return root_; }

  struct Entry;

 private:
  std::shared_ptr<const Entry> lookup(const std::string& relative);
  std::shared_ptr<const Entry> load(const std::string& relative);

  StaticOptions options_;
  std::filesystem::path root_;  // canonical
  std::string root_prefix_;     // canonical root + '/'
  std::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
  std::size_t cached_bytes_ = 0;
};

// The request path as a list of safe segments joined by '/', or nullopt when it must be
// refused: bad percent-encoding, NUL, backslash, "." or ".." segments (however encoded).
// Hidden segments (a leading '.') are reported through `hidden`.
std::optional<std::string> safe_relative_path(std::string_view target, bool& hidden);

// A MIME type for a file name (by extension), with charset for text.
std::string_view mime_type(std::string_view name);

}  // namespace synthorg::web
