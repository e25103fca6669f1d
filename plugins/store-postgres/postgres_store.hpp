// The Store on PostgreSQL: a table per collection with the document in a JSONB column,
// expression indexes on the declared fields, a pool of libpqxx connections, and a server lock
// that keeps a restore from running under another live server.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include <pqxx/transaction_base>

#include "connection_pool.hpp"
#include "connection_settings.hpp"
#include "server_lock.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::store_postgres {

struct StoreOptions {
  ConnectionSettings connection;
  std::size_t pool_size = 4;
  // How long a call waits for a free connection before it fails as unavailable.
  std::chrono::milliseconds acquire_timeout{30000};
};

class PostgresStore final : public Store {
 public:
  // Connects, creates the metadata table and takes the shared server lock; throws StoreError
  // (unavailable with the reason, e.g. a refused password) when it cannot.
  PostgresStore(StoreOptions options, log::Logger log);
  ~PostgresStore() override;

  Document insert(std::string_view collection, const nlohmann::json& data, std::string_view id = {}) override;
  std::optional<Document> get(std::string_view collection, std::string_view id) override;
  Document update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                  std::int64_t expected_version) override;
  bool remove(std::string_view collection, std::string_view id, std::optional<std::int64_t> expected_version) override;
  Page query(std::string_view collection, const Query& query) override;
  std::int64_t count(std::string_view collection,
                     const std::vector<std::pair<std::string, nlohmann::json>>& where) override;

  void ensure_collection(const CollectionSpec& spec) override;
  int schema_version(std::string_view collection) override;
  void transaction(const std::function<void(StoreOps&)>& body) override;
  void ping() override;
  StoreInfo info() const override;
  Snapshot snapshot(const std::filesystem::path& directory) override;
  void restore(const Snapshot& snapshot) override;

  PoolStats pool_stats() const { return pool_.stats(); }

 private:
  class Ops;

  // Throws StoreError(invalid) when called from inside this store's transaction body.
  void refuse_nested() const;
  // A pooled connection for one call on the Store itself; refuses a nested call made from
  // inside a transaction body, which would otherwise wait for a connection the body holds.
  ConnectionPool::Lease lease();
  // Runs `work` with Ops on a fresh connection in autocommit mode: every single-call
  // operation is one statement (or a read after one), so it needs no BEGIN/COMMIT.
  template <class F>
  auto autocommit(std::string_view context, F&& work);

  // The declared indexes of a collection, from the cache or the metadata table; throws
  // not_found when the collection was never ensured.
  std::vector<IndexSpec> indexes_of(pqxx::transaction_base& tx, std::string_view collection);
  void remember(const std::string& collection, std::vector<IndexSpec> indexes);
  void forget(std::string_view collection);
  void forget_all();
  void create_meta_table();

  StoreOptions options_;
  log::Logger log_;
  ConnectionPool pool_;
  ServerLock server_lock_;
  std::string server_version_;
  mutable std::shared_mutex collections_mutex_;
  std::map<std::string, std::vector<IndexSpec>, std::less<>> collections_;
};

}  // namespace synthorg::store_postgres
