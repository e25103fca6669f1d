#include "connection_settings.hpp"

#include <algorithm>
#include <stdexcept>

#include <Poco/Exception.h>
#include <Poco/URI.h>
#include <fmt/format.h>

namespace synthorg::store_postgres {
namespace {

// Poco's own messages quote the part it choked on, which may be the password: ours never do.
constexpr const char* kEncodingHint =
    "percent-encode special characters in the user name and password (@ as %40, : as %3A, / as %2F, "
    "? as %3F, # as %23, % as %25)";

std::string decode(const std::string& raw, std::string_view source, std::string_view what) {
  std::string decoded;
  try {
    Poco::URI::decode(raw, decoded);
  } catch (const Poco::Exception&) {
    throw std::invalid_argument(fmt::format("{} has a malformed percent-escape in its {}; {}", source, what,
                                            kEncodingHint));
  }
  return decoded;
}

// libpq's keyword/value syntax: single quotes, with ' and \ escaped by a backslash.
std::string quoted(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string host_for_display(const std::string& host) {
  if (host.empty()) return "localhost";
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// libpq counts whole seconds, and treats anything under 2 as 2.
long long timeout_seconds(std::chrono::milliseconds timeout) {
  return std::max<long long>(2, (timeout.count() + 999) / 1000);
}

}  // namespace

std::string ConnectionSettings::endpoint() const { return fmt::format("{}:{}", host_for_display(host), port); }

std::string ConnectionSettings::location() const {
  return fmt::format("postgres://{}{}/{}", user.empty() ? "" : user + "@", endpoint(), database);
}

std::string ConnectionSettings::conninfo() const {
  std::string info;
  auto add = [&](std::string_view key, std::string_view value) {
    if (value.empty()) return;
    if (!info.empty()) info += ' ';
    info += fmt::format("{}={}", key, quoted(value));
  };
  add("host", host);
  add("port", std::to_string(port));
  add("user", user);
  add("password", password);
  add("dbname", database);
  add("sslmode", ssl_mode);
  add("connect_timeout", std::to_string(timeout_seconds(connect_timeout)));
  add("application_name", "synthorg");
  add("client_encoding", "UTF8");
  // Server-side settings: statement_timeout 0 means no limit, as in PostgreSQL itself; and
  // no NOTICEs ("relation already exists, skipping"), which libpqxx would print on stderr.
  add("options", fmt::format("-c statement_timeout={} -c client_min_messages=warning", statement_timeout.count()));
  return info;
}

std::map<std::string, std::string> ConnectionSettings::environment() const {
  std::map<std::string, std::string> env = {
      {"PGPORT", std::to_string(port)},
      {"PGSSLMODE", ssl_mode},
      {"PGCONNECT_TIMEOUT", std::to_string(timeout_seconds(connect_timeout))},
      {"PGAPPNAME", "synthorg-backup"},
      {"PGCLIENTENCODING", "UTF8"},
  };
  if (!host.empty()) env["PGHOST"] = host;
  if (!user.empty()) env["PGUSER"] = user;
  if (!password.empty()) env["PGPASSWORD"] = password;
  if (!database.empty()) env["PGDATABASE"] = database;
  return env;
}

void parse_database_url(std::string_view url, std::string_view source, ConnectionSettings& settings) {
  const std::string text(url);
  if (!text.starts_with("postgres://") && !text.starts_with("postgresql://"))
    throw std::invalid_argument(fmt::format("{} must start with postgres:// or postgresql:// "
                                            "(postgres://user:password@host:5432/database)",
                                            source));
  // Checked on the raw text: Poco drops an empty "?" and would read an unencoded '?' or '#'
  // in a password as the start of a query or fragment.
  if (text.find('?') != std::string::npos)
    throw std::invalid_argument(fmt::format("query parameters are not accepted in {}; set SSL mode with "
                                            "SYNTHORG_POSTGRES_SSL_MODE (if the password contains '?', write it "
                                            "as %3F)",
                                            source));
  if (text.find('#') != std::string::npos)
    throw std::invalid_argument(fmt::format("{} contains '#'; {}", source, kEncodingHint));
  auto authority_end = text.find('/', text.find("://") + 3);
  auto authority = text.substr(0, authority_end);
  if (std::count(authority.begin(), authority.end(), '@') > 1)
    throw std::invalid_argument(fmt::format("{} contains '@' more than once; {}", source, kEncodingHint));

  Poco::URI uri;
  try {
    uri = Poco::URI(text);
  } catch (const Poco::Exception&) {
    throw std::invalid_argument(fmt::format("{} is not a valid URL; {}", source, kEncodingHint));
  }

  ConnectionSettings parsed = settings;
  // Poco leaves the user information encoded, so the user name and password are split at the
  // first ':' before either is decoded.
  const std::string& user_info = uri.getUserInfo();
  auto colon = user_info.find(':');
  parsed.user = decode(user_info.substr(0, colon), source, "user name");
  parsed.password = colon == std::string::npos ? std::string() : decode(user_info.substr(colon + 1), source,
                                                                        "password");
  parsed.host = uri.getHost();
  parsed.port = uri.getSpecifiedPort() != 0 ? uri.getSpecifiedPort() : 5432;
  std::string path = uri.getPath();  // decoded by Poco
  if (path.starts_with('/')) path.erase(0, 1);
  if (path.find('/') != std::string::npos)
    throw std::invalid_argument(fmt::format("{} has a path with more than a database name: '/{}'; use "
                                            "postgres://user:password@host:5432/database",
                                            source, path));
  parsed.database = path;
  settings = std::move(parsed);
}

std::string check_ssl_mode(std::string_view mode) {
  for (const auto& valid : ssl_modes)
    if (mode == valid) return valid;
  throw std::invalid_argument(fmt::format("SYNTHORG_POSTGRES_SSL_MODE='{}' is not a valid SSL mode; use one of: {}",
                                          mode, fmt::join(ssl_modes, ", ")));
}

}  // namespace synthorg::store_postgres
