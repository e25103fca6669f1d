#include "server_lock.hpp"

#include <fmt/format.h>
#include <pqxx/except>
#include <pqxx/nontransaction>

#include "connection_pool.hpp"
#include "errors.hpp"

namespace synthorg::store_postgres {
namespace {

std::string sql(const char* function) { return fmt::format("SELECT {}({})", function, ServerLock::key); }

}  // namespace

ServerLock::ServerLock(const ConnectionSettings& settings, log::Logger log)
    : settings_(settings), log_(std::move(log)) {}

// Closing the session releases the lock; nothing to unlock by hand.
ServerLock::~ServerLock() = default;

bool ServerLock::query_bool(const std::string& statement) {
  if (!connection_) connection_ = open_connection(settings_);
  try {
    pqxx::nontransaction tx(*connection_);
    return tx.exec(statement)[0][0].as<bool>();
  } catch (const pqxx::pqxx_exception&) {
    bool broken = false;
    auto error = translate_current_exception(settings_, "the server lock", broken);
    if (broken || !connection_->is_open()) connection_.reset();
    throw error;
  }
}

void ServerLock::acquire_shared() {
  std::lock_guard lock(mutex_);
  connection_.reset();
  if (!query_bool(sql("pg_try_advisory_lock_shared"))) {
    connection_.reset();
    throw StoreError(StoreErrc::conflict,
                     fmt::format("a restore is running on database '{}' at {}; start again when it has finished",
                                 settings_.database, settings_.endpoint()));
  }
}

void ServerLock::ping() {
  std::lock_guard lock(mutex_);
  if (!connection_ || !idle_connection_usable(*connection_)) {
    connection_.reset();
    if (query_bool(sql("pg_try_advisory_lock_shared")))
      log_.info("Took the server lock again after the connection to PostgreSQL was lost",
                {{"server", settings_.endpoint()}});
    else
      log_.warn("A restore holds the database exclusively; serving on without the server lock",
                {{"server", settings_.endpoint()}});
  }
  query_bool("SELECT true");
}

bool ServerLock::try_exclusive() {
  std::lock_guard lock(mutex_);
  if (connection_ && !idle_connection_usable(*connection_)) connection_.reset();
  if (connection_) query_bool(sql("pg_advisory_unlock_shared"));
  if (query_bool(sql("pg_try_advisory_lock"))) return true;
  query_bool(sql("pg_try_advisory_lock_shared"));
  return false;
}

void ServerLock::back_to_shared() noexcept {
  std::lock_guard lock(mutex_);
  try {
    query_bool(sql("pg_advisory_unlock"));
    if (!query_bool(sql("pg_try_advisory_lock_shared")))
      log_.warn("Another restore took the database; serving on without the server lock",
                {{"server", settings_.endpoint()}});
  } catch (const std::exception& e) {
    connection_.reset();  // dropping the session drops whatever it held
    log_.warn("Could not take the server lock back after a restore", {{"reason", e.what()}});
  }
}

}  // namespace synthorg::store_postgres
