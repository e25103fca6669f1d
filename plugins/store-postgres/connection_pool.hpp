// A fixed-size pool of libpqxx connections. Callers block (with a deadline) while all are in
// use; a connection that broke is dropped and a fresh one is opened on the next use, which is
// how the store comes back by itself after the server restarts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include <pqxx/connection>

#include "connection_settings.hpp"
#include "errors.hpp"
#include "synthorg/log.hpp"

namespace synthorg::store_postgres {

struct PoolStats {
  std::size_t size = 0;  // the most it opens
  std::size_t open = 0;  // open now, idle or in use
  std::size_t idle = 0;
};

// Opens one connection; throws StoreError (unavailable) saying why it could not.
std::unique_ptr<pqxx::connection> open_connection(const ConnectionSettings& settings);

// False when the server has closed an idle connection (or sent anything unasked), which is
// what a restart looks like from here; costs one poll(2), no round trip.
bool idle_connection_usable(pqxx::connection& connection) noexcept;

class ConnectionPool {
 public:
  ConnectionPool(ConnectionSettings settings, std::size_t size, std::chrono::milliseconds acquire_timeout,
                 log::Logger log);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // One connection, held for as long as the lease lives.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    pqxx::connection& connection() const noexcept { return *connection_; }
    // The connection cannot be used again: close it instead of returning it.
    void mark_broken() noexcept { broken_ = true; }

    // Runs `work`, turning libpqxx's exceptions into StoreError prefixed by `context`; a
    // broken connection is marked so it is replaced. Other exceptions pass unchanged.
    template <class F>
    auto guarded(std::string_view context, F&& work) -> decltype(work()) {
      try {
        return work();
      } catch (const pqxx::pqxx_exception&) {
        throw translate(context);
      }
    }
    StoreError translate(std::string_view context);

   private:
    friend class ConnectionPool;
    Lease(ConnectionPool& pool, std::unique_ptr<pqxx::connection> connection) noexcept
        : pool_(&pool), connection_(std::move(connection)) {}
    ConnectionPool* pool_;
    std::unique_ptr<pqxx::connection> connection_;
    bool broken_ = false;
  };

  // Waits up to the acquire timeout for a free connection; throws StoreError(unavailable)
  // when none frees up or a new one cannot be opened.
  Lease acquire();
  // Closes every idle connection: once one is found broken, the rest are likely dead too.
  void drop_idle() noexcept;

  const ConnectionSettings& settings() const noexcept { return settings_; }
  PoolStats stats() const;

 private:
  void give_back(std::unique_ptr<pqxx::connection> connection, bool broken) noexcept;

  const ConnectionSettings settings_;
  const std::size_t size_;
  const std::chrono::milliseconds acquire_timeout_;
  log::Logger log_;
  mutable std::mutex mutex_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t open_ = 0;
};

}  // namespace synthorg::store_postgres
