#include "errors.hpp"

#include <fmt/format.h>
#include <pqxx/except>

namespace synthorg::store_postgres {
namespace {

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// The name libpq quotes in `... "name" does not exist`.
std::string quoted_name(std::string_view message, std::string_view before) {
  auto start = message.find(before);
  if (start == std::string_view::npos) return {};
  start += before.size();
  auto end = message.find('"', start);
  return end == std::string_view::npos ? std::string() : std::string(message.substr(start, end - start));
}

std::string milliseconds_text(std::chrono::milliseconds duration) {
  if (duration.count() % 1000 == 0) return fmt::format("{}s", duration.count() / 1000);
  return fmt::format("{}ms", duration.count());
}

}  // namespace

std::string first_line(std::string_view message) {
  // "connection to server at "h", port 5432 failed: FATAL:  reason" -> "reason"
  if (message.starts_with("connection to server")) {
    auto failed = message.find(" failed: ");
    if (failed != std::string_view::npos) message.remove_prefix(failed + 9);
  }
  for (std::string_view prefix : {"FATAL:  ", "ERROR:  ", "PANIC:  "})
    if (message.starts_with(prefix)) message.remove_prefix(prefix.size());
  message = message.substr(0, message.find('\n'));
  while (!message.empty() && (message.back() == ' ' || message.back() == '\r')) message.remove_suffix(1);
  return message.empty() ? std::string("no reason given") : std::string(message);
}

StoreError unreachable(const ConnectionSettings& settings, std::string_view libpq_message) {
  return StoreError(StoreErrc::unavailable,
                    fmt::format("PostgreSQL at {} is unreachable: {}; the store retries on the next call",
                                settings.endpoint(), first_line(libpq_message)));
}

StoreError connect_error(const ConnectionSettings& settings, std::string_view message) {
  const auto at = settings.endpoint();
  if (contains(message, "password authentication failed"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL refused the password for user '{}' at {} (fix: check "
                                  "SYNTHORG_DATABASE_URL)",
                                  settings.user, at));
  if (contains(message, "no password supplied"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} wants a password for user '{}' and none was given (fix: put it "
                                  "in SYNTHORG_DATABASE_URL: postgres://user:password@host:port/database)",
                                  at, settings.user));
  if (contains(message, "database \"") && contains(message, "does not exist"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} has no database '{}' (fix: create it, or correct the database "
                                  "name in SYNTHORG_DATABASE_URL)",
                                  at, quoted_name(message, "database \"")));
  if (contains(message, "role \"") && contains(message, "does not exist"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} has no role '{}' (fix: create it, or correct the user in "
                                  "SYNTHORG_DATABASE_URL)",
                                  at, quoted_name(message, "role \"")));
  if (contains(message, "does not support SSL"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} does not offer TLS, and SYNTHORG_POSTGRES_SSL_MODE is '{}' (fix: "
                                  "enable ssl on the server, or set SYNTHORG_POSTGRES_SSL_MODE=disable on a trusted "
                                  "network such as loopback)",
                                  at, settings.ssl_mode));
  if (contains(message, "no pg_hba.conf entry"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} does not let user '{}' connect from here: {} (fix: add a "
                                  "pg_hba.conf entry, or change SYNTHORG_POSTGRES_SSL_MODE)",
                                  at, settings.user, first_line(message)));
  if (contains(message, "too many clients") || contains(message, "remaining connection slots"))
    return StoreError(StoreErrc::unavailable,
                      fmt::format("PostgreSQL at {} has no free connection slots: {} (fix: lower pool_size, or raise "
                                  "max_connections on the server)",
                                  at, first_line(message)));
  return unreachable(settings, message);
}

StoreError translate_current_exception(const ConnectionSettings& settings, std::string_view context, bool& broken) {
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    broken = true;
    return unreachable(settings, e.what());
  } catch (const pqxx::in_doubt_error& e) {
    broken = true;
    return StoreError(StoreErrc::unavailable,
                      fmt::format("{}: the connection to PostgreSQL at {} broke while committing ({}); the "
                                  "transaction may or may not have been applied: check before retrying",
                                  context, settings.endpoint(), first_line(e.what())));
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    if (state.starts_with("08") || state == "57P01" || state == "57P02" || state == "57P03") {
      broken = true;  // the server is going away or never finished the connection
      return unreachable(settings, e.what());
    }
    if (state == "53100")
      return StoreError(StoreErrc::full,
                        fmt::format("{}: PostgreSQL at {} is out of disk space: {} (fix: free disk space on the "
                                    "database server, or remove old documents)",
                                    context, settings.endpoint(), first_line(e.what())));
    if (state == "53300")
      return StoreError(StoreErrc::unavailable,
                        fmt::format("PostgreSQL at {} has no free connection slots (fix: lower pool_size, or raise "
                                    "max_connections on the server)",
                                    settings.endpoint()));
    if (state == "42P01")
      return StoreError(StoreErrc::not_found, fmt::format("{}: its table is missing from the database; call "
                                                          "ensure_collection to create it again",
                                                          context));
    if (state == "57014")
      return StoreError(StoreErrc::failed,
                        fmt::format("{}: the statement ran longer than statement_timeout ({}) and was cancelled",
                                    context, milliseconds_text(settings.statement_timeout)));
    if (state == "40001" || state == "40P01")
      return StoreError(StoreErrc::conflict,
                        fmt::format("{}: PostgreSQL aborted the transaction to resolve a conflict with another one "
                                    "({}: {}); retry it",
                                    context, state, first_line(e.what())));
    if (state == "25P02")
      return StoreError(StoreErrc::failed, fmt::format("{}: an earlier statement in this transaction failed, so "
                                                       "PostgreSQL ignores the rest until it rolls back",
                                                       context));
    // Data exceptions can quote the offending value, which may be anything a caller stored.
    if (state.starts_with("22"))
      return StoreError(StoreErrc::failed,
                        fmt::format("{}: PostgreSQL rejected a value (SQL state {})", context, state));
    return StoreError(StoreErrc::failed,
                      fmt::format("{}: PostgreSQL error {}: {}", context, state.empty() ? "?" : state,
                                  first_line(e.what())));
  } catch (const pqxx::failure& e) {
    return StoreError(StoreErrc::failed, fmt::format("{}: {}", context, first_line(e.what())));
  } catch (const std::exception& e) {
    return StoreError(StoreErrc::failed, fmt::format("{}: libpqxx: {}", context, e.what()));
  }
}

}  // namespace synthorg::store_postgres
