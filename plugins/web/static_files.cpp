#include "static_files.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "synthorg/services/http.hpp"

namespace synthorg::web {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

struct Representation {
  fs::path path;
  std::uint64_t size = 0;
  std::shared_ptr<const std::string> contents;  // null: too large to cache, read from disk
  std::string etag;
  std::shared_ptr<const std::string> head;  // its header lines for a 200 of the whole (StaticReply::preformatted)
};

struct FileStore::Entry {
  bool exists = false;
  bool outside = false;  // the path resolves (through a symlink) out of the root: 404, never the SPA
  Clock::time_point checked;
  std::int64_t mtime_ns = 0;
  std::time_t mtime = 0;
  std::string last_modified;
  std::string_view mime;
  Representation identity;
  std::optional<Representation> br, gz;
  bool is_index = false;
  std::vector<std::string> pieces;  // index.html split at each nonce placeholder
  std::shared_ptr<const std::string> index_head;  // index.html's header lines
};

namespace {

// Strict, unlike the SDK's query decoding: a bad escape refuses the path, '+' stays '+'.
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string http_date(std::time_t time) {
  std::tm parts{};
  gmtime_r(&time, &parts);
  char text[64];
  std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return text;
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
  std::tm parts{};
  std::string copy(text);
  const char* end = strptime(copy.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts);
  if (!end || *end != '\0') return std::nullopt;
  return timegm(&parts);
}

std::string trim(std::string_view text) {
  auto start = text.find_first_not_of(" \t");
  if (start == std::string_view::npos) return {};
  auto end = text.find_last_not_of(" \t");
  return std::string(text.substr(start, end - start + 1));
}

std::string lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The q-value Accept-Encoding gives `coding` (an explicit entry, else "*", else 0).
double encoding_quality(std::string_view header, std::string_view coding) {
  double star = 0, exact = -1;
  std::size_t start = 0;
  while (start <= header.size()) {
    auto end = header.find(',', start);
    if (end == std::string_view::npos) end = header.size();
    auto item = header.substr(start, end - start);
    auto semicolon = item.find(';');
    auto name = lower(trim(item.substr(0, semicolon)));
    double quality = 1;
    if (semicolon != std::string_view::npos) {
      auto parameter = trim(item.substr(semicolon + 1));
      if (parameter.size() > 2 && (parameter[0] == 'q' || parameter[0] == 'Q') && parameter[1] == '=')
        quality = std::strtod(parameter.c_str() + 2, nullptr);
    }
    if (name == coding) exact = quality;
    else if (name == "*") star = quality;
    start = end + 1;
  }
  return exact >= 0 ? exact : star;
}

bool etag_matches(std::string_view header, std::string_view etag) {
  if (trim(header) == "*") return true;
  std::size_t start = 0;
  while (start <= header.size()) {
    auto end = header.find(',', start);
    if (end == std::string_view::npos) end = header.size();
    auto candidate = trim(header.substr(start, end - start));
    if (candidate.rfind("W/", 0) == 0) candidate = candidate.substr(2);  // If-None-Match compares weakly
    if (candidate == etag) return true;
    start = end + 1;
  }
  return false;
}

// A decimal that fits in 63 bits; nullopt for anything else, overflow included.
std::optional<std::uint64_t> parse_offset(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

enum class RangeResult { none, partial, unsatisfiable };

// One byte range of "bytes=a-b", "bytes=a-" or "bytes=-n". Several ranges are served whole
// (RFC 9110 lets a server ignore Range), bad syntax too; numbers too big to be offsets of this
// file are unsatisfiable.
RangeResult parse_range(std::string_view header, std::uint64_t size, std::uint64_t& first, std::uint64_t& last) {
  if (header.rfind("bytes=", 0) != 0) return RangeResult::none;
  auto spec = header.substr(6);
  if (spec.find(',') != std::string_view::npos) return RangeResult::none;
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeResult::none;
  auto left = trim(spec.substr(0, dash)), right = trim(spec.substr(dash + 1));
  auto digits = [](const std::string& text) {
    return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  };
  if (left.empty()) {
    if (!digits(right)) return RangeResult::none;
    auto suffix = parse_offset(right);
    if (!suffix) return size == 0 ? RangeResult::unsatisfiable : (first = 0, last = size - 1, RangeResult::partial);
    if (*suffix == 0 || size == 0) return RangeResult::unsatisfiable;
    first = *suffix >= size ? 0 : size - *suffix;
    last = size - 1;
    return RangeResult::partial;
  }
  if (!digits(left) || (!right.empty() && !digits(right))) return RangeResult::none;
  auto start = parse_offset(left);
  if (!start || *start >= size) return RangeResult::unsatisfiable;
  std::uint64_t end = size - 1;
  if (!right.empty()) {
    auto given = parse_offset(right);
    if (given) {
      if (*given < *start) return RangeResult::none;  // invalid: ignored
      end = std::min(*given, size - 1);
    }  // an end past anything representable is "to the end"
  }
  first = *start;
  last = end;
  return RangeResult::partial;
}

std::shared_ptr<const std::string> read_file(const fs::path& path, std::uint64_t size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;
  auto contents = std::make_shared<std::string>(size, '\0');
  in.read(contents->data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(in.gcount()) != size) return nullptr;
  return contents;
}


}  // namespace

StaticReply problem_reply(int status, std::string_view code, std::string_view detail) {
  StaticReply reply;
  reply.status = static_cast<http::status>(status);
  reply.headers.set(http::field::content_type, "application/problem+json");
  reply.headers.set(http::field::cache_control, "no-store");
  reply.body = StaticReply::Body::owned;
  reply.owned = HttpResponse::problem(status, code, detail).body;
  return reply;
}

std::optional<std::string> safe_relative_path(std::string_view target, bool& hidden) {
  hidden = false;
  auto path = target.substr(0, target.find_first_of("?#"));
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::string decoded;
  decoded.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size()) return std::nullopt;
      int high = hex_value(path[i + 1]), low = hex_value(path[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      c = static_cast<char>(high * 16 + low);
      i += 2;
    }
    if (c == '\0' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return std::nullopt;
    decoded.push_back(c);
  }
  std::string relative;
  std::size_t start = 0;
  while (start <= decoded.size()) {
    auto end = decoded.find('/', start);
    if (end == std::string::npos) end = decoded.size();
    auto segment = std::string_view(decoded).substr(start, end - start);
    if (segment == "." || segment == "..") return std::nullopt;
    if (!segment.empty()) {
      if (segment.front() == '.') hidden = true;
      if (!relative.empty()) relative.push_back('/');
      relative.append(segment);
    }
    start = end + 1;
  }
  return relative;
}

std::string_view mime_type(std::string_view name) {
  static const std::unordered_map<std::string_view, std::string_view> types{
      {"html", "text/html; charset=utf-8"},       {"htm", "text/html; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},   {"mjs", "text/javascript; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},         {"json", "application/json"},
      {"map", "application/json"},                {"webmanifest", "application/manifest+json"},
      {"txt", "text/plain; charset=utf-8"},       {"xml", "application/xml"},
      {"svg", "image/svg+xml"},                   {"png", "image/png"},
      {"jpg", "image/jpeg"},                      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},                       {"webp", "image/webp"},
      {"avif", "image/avif"},                     {"ico", "image/x-icon"},
      {"woff", "font/woff"},                      {"woff2", "font/woff2"},
      {"ttf", "font/ttf"},                        {"otf", "font/otf"},
      {"wasm", "application/wasm"},               {"pdf", "application/pdf"},
      {"mp4", "video/mp4"},                       {"webm", "video/webm"},
      {"csv", "text/csv; charset=utf-8"},         {"md", "text/markdown; charset=utf-8"},
  };
  auto slash = name.rfind('/');
  auto base = slash == std::string_view::npos ? name : name.substr(slash + 1);
  auto dot = base.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  auto it = types.find(lower(std::string(base.substr(dot + 1))));
  return it == types.end() ? std::string_view("application/octet-stream") : it->second;
}

FileStore::FileStore(StaticOptions options) : options_(std::move(options)) {
  std::error_code ec;
  if (options_.root.empty())
    throw std::runtime_error("web: no root directory is configured (fix: set plugins.web.config.root)");
  auto status = fs::status(options_.root, ec);
  if (ec || !fs::exists(status))
    throw std::runtime_error(fmt::format("web: the root directory {} does not exist (fix: build the dashboard, "
                                         "or set plugins.web.config.root to a directory of files)",
                                         options_.root.string()));
  if (!fs::is_directory(status))
    throw std::runtime_error(fmt::format("web: the root {} is not a directory (fix: point root at a directory)",
                                         options_.root.string()));
  root_ = fs::canonical(options_.root);
  root_prefix_ = root_.string() + "/";
  if (!fs::is_regular_file(root_ / "index.html", ec))
    throw std::runtime_error(fmt::format("web: {} has no index.html, which every page falls back to (fix: build "
                                         "the dashboard into it, or point root at a directory with index.html)",
                                         root_.string()));
}

FileStore::~FileStore() = default;

std::shared_ptr<const FileStore::Entry> FileStore::load(const std::string& relative) {
  auto entry = std::make_shared<Entry>();
  entry->checked = Clock::now();
  // realpath resolves every symlink: what it names must still be inside the root.
  auto joined = root_ / relative;
  char resolved[PATH_MAX];
  if (!::realpath(joined.c_str(), resolved)) return entry;
  std::string canonical(resolved);
  if (canonical.rfind(root_prefix_, 0) != 0) {  // outside the root (a symlink out)
    entry->outside = true;
    return entry;
  }
  struct stat info {};
  if (::stat(resolved, &info) != 0 || !S_ISREG(info.st_mode)) return entry;
  entry->mtime_ns = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
  entry->mtime = info.st_mtim.tv_sec;
  auto size = static_cast<std::uint64_t>(info.st_size);
  {
    // A file unchanged since the last look keeps its cached bytes.
    std::shared_lock lock(mutex_);
    auto it = entries_.find(relative);
    if (it != entries_.end() && it->second->exists && it->second->mtime_ns == entry->mtime_ns &&
        it->second->identity.size == size) {
      auto same = std::make_shared<Entry>(*it->second);
      same->checked = entry->checked;
      return same;
    }
  }
  entry->exists = true;
  entry->last_modified = http_date(entry->mtime);
  entry->mime = mime_type(relative);
  auto tag = fmt::format("{:x}-{:x}", entry->mtime, size);
  // The budget is read without the lock: it is a soft limit, overshot at most by one file per thread.
  auto cacheable = [&](std::uint64_t bytes) {
    return bytes <= options_.cache_file_bytes && cached_bytes_ + bytes <= options_.cache_total_bytes;
  };
  entry->identity = {canonical, size, cacheable(size) ? read_file(canonical, size) : nullptr, "\"" + tag + "\""};
  entry->is_index = relative == "index.html";
  if (entry->is_index) {
    auto contents = entry->identity.contents ? entry->identity.contents : read_file(canonical, size);
    if (!contents) return std::make_shared<Entry>();
    std::size_t start = 0;
    for (;;) {
      auto at = contents->find(options_.nonce_placeholder, start);
      entry->pieces.push_back(contents->substr(start, at == std::string::npos ? std::string::npos : at - start));
      if (at == std::string::npos) break;
      start = at + options_.nonce_placeholder.size();
    }
    entry->index_head = std::make_shared<const std::string>(
        fmt::format("Content-Type: {}\r\nCache-Control: no-cache\r\n", entry->mime));
    return entry;  // index.html is never sent compressed: its nonce differs every time
  }
  for (auto [suffix, slot] : {std::pair{".br", &entry->br}, std::pair{".gz", &entry->gz}}) {
    auto sibling = joined.string() + suffix;
    if (!::realpath(sibling.c_str(), resolved) || std::string_view(resolved).rfind(root_prefix_, 0) != 0) continue;
    struct stat sibling_info {};
    if (::stat(resolved, &sibling_info) != 0 || !S_ISREG(sibling_info.st_mode)) continue;
    auto bytes = static_cast<std::uint64_t>(sibling_info.st_size);
    *slot = Representation{resolved, bytes, cacheable(size + bytes) ? read_file(resolved, bytes) : nullptr,
                           "\"" + tag + "-" + std::string(suffix + 1) + "\""};
  }
  // The same lines serve() would set field by field (keep the two in step).
  bool siblings = entry->br || entry->gz;
  auto cache_control = relative.rfind("assets/", 0) == 0 ? "public, max-age=31536000, immutable" : "no-cache";
  for (auto [representation, encoding] : {std::pair{&entry->identity, ""}, std::pair{entry->br ? &*entry->br : nullptr, "br"},
                                           std::pair{entry->gz ? &*entry->gz : nullptr, "gzip"}}) {
    if (!representation) continue;
    representation->head = std::make_shared<const std::string>(fmt::format(
        "Content-Type: {}\r\n{}Cache-Control: {}\r\nETag: {}\r\nLast-Modified: {}\r\nAccept-Ranges: bytes\r\n{}",
        entry->mime, *encoding ? fmt::format("Content-Encoding: {}\r\n", encoding) : "", cache_control,
        representation->etag, entry->last_modified, siblings ? "Vary: Accept-Encoding\r\n" : ""));
  }
  return entry;
}

std::shared_ptr<const FileStore::Entry> FileStore::lookup(const std::string& relative) {
  auto now = Clock::now();
  {
    std::shared_lock lock(mutex_);
    auto it = entries_.find(relative);
    if (it != entries_.end() && now - it->second->checked < options_.revalidate) return it->second;
  }
  auto entry = load(relative);
  std::unique_lock lock(mutex_);
  // Unknown paths are cached too (SPA routes), so the table is bounded: start over when full.
  if (entries_.size() > 10'000) {
    entries_.clear();
    cached_bytes_ = 0;
  }
  auto& slot = entries_[relative];
  auto held = [](const std::shared_ptr<const Entry>& e) {
    if (!e) return std::uint64_t{0};
    std::uint64_t total = e->identity.contents ? e->identity.size : 0;
    if (e->br && e->br->contents) total += e->br->size;
    if (e->gz && e->gz->contents) total += e->gz->size;
    return total;
  };
  cached_bytes_ -= std::min<std::uint64_t>(cached_bytes_, held(slot));
  cached_bytes_ += held(entry);
  slot = entry;
  return entry;
}

StaticReply FileStore::serve(const http::request_header<>& request, std::string_view nonce) {
  StaticReply reply;
  bool hidden = false;
  auto target = std::string_view(request.target().data(), request.target().size());
  auto relative = safe_relative_path(target, hidden);
  if (!relative) {
    reply = problem_reply(400, "bad_path", "the path is not allowed: it is malformed or leaves the web root");
    return reply;
  }
  if (hidden) {
    reply = problem_reply(404, "not_found", "there is no such file");
    return reply;
  }
  auto entry = relative->empty() ? nullptr : lookup(*relative);
  if (entry && entry->outside) {
    reply = problem_reply(404, "not_found", "there is no such file");
    return reply;
  }
  if (!entry || !entry->exists) {
    // Files under assets/ are content-hashed build output: a missing one is a real 404, not a
    // page of the app (HTML served for a script would only confuse the browser).
    if (relative->rfind("assets/", 0) == 0) {
      reply = problem_reply(404, "not_found", "there is no such file");
      return reply;
    }
    entry = lookup("index.html");
    if (!entry->exists) {
      reply = problem_reply(503, "index_missing", "the web root has no index.html; rebuild the dashboard");
      return reply;
    }
  }

  if (entry->is_index) {
    reply.preformatted = entry->index_head;
    reply.body = StaticReply::Body::owned;
    std::size_t total = 0;
    for (const auto& piece : entry->pieces) total += piece.size() + nonce.size();
    reply.owned.reserve(total);
    for (std::size_t i = 0; i < entry->pieces.size(); ++i) {
      if (i) reply.owned.append(nonce);
      reply.owned.append(entry->pieces[i]);
    }
    return reply;
  }

  const Representation* chosen = &entry->identity;
  std::string_view encoding;
  if (entry->br || entry->gz) {
    auto accept = request[http::field::accept_encoding];
    auto accepted = std::string_view(accept.data(), accept.size());
    if (entry->br && encoding_quality(accepted, "br") > 0) chosen = &*entry->br, encoding = "br";
    else if (entry->gz && encoding_quality(accepted, "gzip") > 0) chosen = &*entry->gz, encoding = "gzip";
  }
  auto if_none_match = request[http::field::if_none_match];
  auto if_modified_since = request[http::field::if_modified_since];
  auto range = request[http::field::range];
  if (if_none_match.empty() && if_modified_since.empty() && range.empty()) {
    // The whole file, unconditionally: the common case, with its header lines made once.
    reply.preformatted = chosen->head;
    reply.length = chosen->size;
    reply.body = chosen->contents ? StaticReply::Body::shared : StaticReply::Body::file;
    reply.shared = chosen->contents;
    if (!chosen->contents) reply.file = chosen->path;
    return reply;
  }
  if (entry->br || entry->gz) reply.headers.set(http::field::vary, "Accept-Encoding");
  reply.headers.set(http::field::content_type, boost::beast::string_view(entry->mime.data(), entry->mime.size()));
  if (!encoding.empty())
    reply.headers.set(http::field::content_encoding, boost::beast::string_view(encoding.data(), encoding.size()));
  reply.headers.set(http::field::cache_control, relative->rfind("assets/", 0) == 0
                                                    ? "public, max-age=31536000, immutable"
                                                    : "no-cache");
  reply.headers.set(http::field::etag, chosen->etag);
  reply.headers.set(http::field::last_modified, entry->last_modified);
  reply.headers.set(http::field::accept_ranges, "bytes");

  bool not_modified = false;
  if (!if_none_match.empty()) {
    not_modified = etag_matches(std::string_view(if_none_match.data(), if_none_match.size()), chosen->etag);
  } else if (!if_modified_since.empty()) {
    auto since = parse_http_date(std::string_view(if_modified_since.data(), if_modified_since.size()));
    not_modified = since && entry->mtime <= *since;
  }
  if (not_modified) {
    reply.status = http::status::not_modified;
    reply.headers.erase(http::field::content_encoding);
    return reply;
  }

  std::uint64_t first = 0, last = chosen->size ? chosen->size - 1 : 0;
  auto if_range = request[http::field::if_range];
  auto outcome = RangeResult::none;
  if (!range.empty() && request.method() == http::verb::get &&
      (if_range.empty() || std::string_view(if_range.data(), if_range.size()) == chosen->etag))
    outcome = parse_range(std::string_view(range.data(), range.size()), chosen->size, first, last);
  if (outcome == RangeResult::unsatisfiable) {
    reply = problem_reply(416, "range_not_satisfiable",
                  fmt::format("the range is outside the {} bytes of this file", chosen->size));
    reply.headers.set(http::field::content_range, fmt::format("bytes */{}", chosen->size));
    return reply;
  }
  if (outcome == RangeResult::partial) {
    reply.status = http::status::partial_content;
    reply.headers.set(http::field::content_range, fmt::format("bytes {}-{}/{}", first, last, chosen->size));
  }
  reply.offset = first;
  reply.length = chosen->size == 0 ? 0 : last - first + 1;
  if (chosen->contents) {
    reply.body = StaticReply::Body::shared;
    reply.shared = chosen->contents;
  } else {
    reply.body = StaticReply::Body::file;
    reply.file = chosen->path;
  }
  return reply;
}

}  // namespace synthorg::web
