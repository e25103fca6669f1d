// Where and how to reach PostgreSQL: parsed from SYNTHORG_DATABASE_URL (or the `url` config
// key) and SYNTHORG_POSTGRES_SSL_MODE, and handed to libpq and to pg_dump/pg_restore as
// separate keyword values, so a password with any characters in it works and never has to
// appear on a command line or in a message.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace synthorg::store_postgres {

struct ConnectionSettings {
  std::string host;  // empty: libpq's default (the local socket)
  unsigned short port = 5432;
  std::string user;
  std::string password;
  std::string database;  // empty: libpq's default (the user name)
  std::string ssl_mode = "require";
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds statement_timeout{30000};

  // "host:port", for messages.
  std::string endpoint() const;
  // postgres://user@host:port/db: the URL without its password.
  std::string location() const;
  // A libpq keyword/value connection string, every value quoted.
  std::string conninfo() const;
  // The same, as the PG* variables that pg_dump and pg_restore read.
  std::map<std::string, std::string> environment() const;
};

inline const std::vector<std::string> ssl_modes = {"disable", "require", "verify-ca", "verify-full"};

// Parses a postgres:// or postgresql:// URL into `settings`, URL-decoding the user and
// password. `source` names where the URL came from ("SYNTHORG_DATABASE_URL") for messages.
// Throws std::invalid_argument with a message that never contains the password.
void parse_database_url(std::string_view url, std::string_view source, ConnectionSettings& settings);

// Checks an SSL mode (as SYNTHORG_POSTGRES_SSL_MODE gives it); throws std::invalid_argument
// listing the valid ones.
std::string check_ssl_mode(std::string_view mode);

}  // namespace synthorg::store_postgres
