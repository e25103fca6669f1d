// libpq and libpqxx failures as StoreErrors that say what happened and what to do, naming the
// server by host:port and never quoting a password or a parameter value.
#pragma once

#include <string>
#include <string_view>

#include "connection_settings.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::store_postgres {

// A failed connection attempt (libpq's message, as pqxx::broken_connection carries it):
// a refused password, a missing database or role, TLS refused, or an unreachable server.
StoreError connect_error(const ConnectionSettings& settings, std::string_view libpq_message);

// A connection that broke in the middle of a call.
StoreError unreachable(const ConnectionSettings& settings, std::string_view libpq_message);

// What the current exception (caught as pqxx::pqxx_exception) means, prefixed by `context`
// ("collection 'users'"). `broken` is set when the connection cannot be used again.
// A missing table (42P01) becomes not_found, so the caller can forget what it cached.
StoreError translate_current_exception(const ConnectionSettings& settings, std::string_view context, bool& broken);

// libpq's first line, without its "ERROR:  " or "connection to server ... failed: " prefix.
std::string first_line(std::string_view message);

}  // namespace synthorg::store_postgres
