// The Store on one SQLite file: a table per collection, expression indexes on json_extract,
// one writer connection (SQLite allows one writer at a time anyway) and a small pool of
// reader connections that WAL lets run beside it.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "connection.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::store_sqlite {

struct StoreOptions {
  ConnectionOptions connection;
  std::size_t readers = 4;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) the database and its metadata table; throws StoreError.
  explicit SqliteStore(StoreOptions options);
  ~SqliteStore() override;

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

  // The indexes declared for a collection; throws not_found when it was never ensured.
  std::vector<IndexSpec> indexes_of(Connection& connection, std::string_view collection);

 private:
  class Ops;
  class ReaderLease;

  std::unique_lock<std::mutex> lock_writer();
  ReaderLease lease_reader();
  void forget_collections();

  StoreOptions options_;
  // <path>.lock: every process using the database holds it shared; a restore needs it alone.
  int lock_fd_ = -1;
  std::mutex writer_mutex_;
  std::unique_ptr<Connection> writer_;
  std::mutex readers_mutex_;
  std::condition_variable reader_returned_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;
  std::size_t open_readers_ = 0;
  std::shared_mutex collections_mutex_;
  std::map<std::string, std::vector<IndexSpec>, std::less<>> collections_;
};

}  // namespace synthorg::store_sqlite
