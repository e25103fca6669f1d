// store-sqlite: the Store on an embedded SQLite file, the default backend.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "sqlite_store.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::store_sqlite {
namespace {

namespace fs = std::filesystem;

class StoreHealth final : public HealthCheck {
 public:
  explicit StoreHealth(std::shared_ptr<Store> store) : store_(std::move(store)) {}
  std::string name() const override { return "store"; }
  HealthReport check() override {
    try {
      store_->ping();
      return {true, "", {{"backend", "sqlite"}}};
    } catch (const std::exception& error) {
      return {false, error.what(), {{"backend", "sqlite"}}};
    }
  }

 private:
  std::shared_ptr<Store> store_;
};

void prepare_directory(const fs::path& file) {
  auto directory = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  std::error_code error;
  fs::create_directories(directory, error);
  if (error)
    throw StoreError(StoreErrc::unavailable,
                     fmt::format("cannot create the database directory {}: {} (fix: mount a writable volume there "
                                 "or set SYNTHORG_DB_PATH)",
                                 directory.string(), error.message()));
  if (::access(directory.c_str(), W_OK) != 0)
    throw StoreError(StoreErrc::unavailable,
                     fmt::format("the database directory {} is not writable by this user (uid {}) (fix: chown it, "
                                 "mount a writable volume, or set SYNTHORG_DB_PATH)",
                                 directory.string(), ::getuid()));
}

class SqlitePlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "store-sqlite",
            .version = "0.1.0",
            .description = "The Store on an embedded SQLite database file (WAL)",
            .provides = {std::string(Store::service_id), std::string(HealthCheck::service_id)},
            .needs = {},
            .config = ConfigMap{}
                          .string("path", "/data/synthorg.db",
                                  "Database file; SYNTHORG_DB_PATH, when set, wins over this")
                          .duration("busy_timeout", "5s", "How long a write waits for another writer")
                          .enumeration("synchronous", {"normal", "full"}, "normal",
                                       "normal: durable across crashes of synthorg; full: also across power loss")
                          .integer("readers", 4, "Reader connections beside the one writer")
                          .range(1, 64)
                          .integer("max_size_mb", 0, "Refuse writes beyond this size in MiB (0: no limit)")
                          .range(0, 1 << 24)};
  }
  explicit SqlitePlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    options_ = {};
    const char* from_env = std::getenv("SYNTHORG_DB_PATH");
    options_.connection.path = from_env && *from_env ? from_env : config.at("path").get<std::string>();
    options_.connection.busy_timeout_ms = static_cast<int>(config.at("busy_timeout").get<std::int64_t>());
    options_.connection.synchronous = config.at("synchronous").get<std::string>();
    options_.readers = static_cast<std::size_t>(config.at("readers").get<std::int64_t>());
    // SQLite's default page size is 4096 bytes.
    options_.connection.max_pages = config.at("max_size_mb").get<std::int64_t>() * 256;
  }

  void start() override {
    const auto& path = options_.connection.path;
    prepare_directory(path);
    // Everything into locals first: a start that fails part-way must leave nothing held.
    auto store = std::make_shared<SqliteStore>(options_);
    store->ping();
    auto store_registration = context_.registry().provide<Store>(store);
    auto health_registration = context_.registry().provide<HealthCheck>(std::make_shared<StoreHealth>(store));
    store_registration_ = std::move(store_registration);
    health_registration_ = std::move(health_registration);
    context_.log().info("SQLite store open", {{"path", path.string()}, {"sqlite", sqlite3_libversion()}});
  }

  void stop() override {
    health_registration_.reset();
    store_registration_.reset();
  }

 private:
  PluginContext& context_;
  StoreOptions options_;
  Registration store_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::store_sqlite

SYNTHORG_PLUGIN(synthorg::store_sqlite::SqlitePlugin)
