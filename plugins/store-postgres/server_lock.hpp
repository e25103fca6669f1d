// "A synthorg server is using this database": a shared session advisory lock held on a
// connection of its own for as long as the store serves. A restore takes the same lock
// exclusively, so it refuses while another server is live, and a server refuses to start
// while a restore runs.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <pqxx/connection>

#include "connection_settings.hpp"
#include "synthorg/log.hpp"

namespace synthorg::store_postgres {

class ServerLock {
 public:
  // Advisory locks are per database, so servers on other databases never meet this key.
  static constexpr std::int64_t key = 0x73796e74686f7267;  // "synthorg"

  ServerLock(const ConnectionSettings& settings, log::Logger log);
  ~ServerLock();

  // Connects and takes the shared lock; throws StoreError(conflict) while a restore holds it
  // exclusively, or StoreError(unavailable) when the server cannot be reached.
  void acquire_shared();
  // A round trip on the lock's own connection, which no call ever holds, so it answers even
  // while every pooled connection is busy. After a server restart the session and its lock
  // are gone: both are taken again first. Throws StoreError(unavailable).
  void ping();

  // Swaps our shared lock for the exclusive one; false (holding the shared lock again) when
  // another server holds a shared lock.
  bool try_exclusive();
  // Back from exclusive to shared, after a restore.
  void back_to_shared() noexcept;

 private:
  bool query_bool(const std::string& statement);

  const ConnectionSettings& settings_;
  log::Logger log_;
  std::mutex mutex_;
  std::unique_ptr<pqxx::connection> connection_;
};

}  // namespace synthorg::store_postgres
