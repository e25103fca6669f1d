// store-postgres: the Store on PostgreSQL, for teams that outgrow one machine. Setting
// SYNTHORG_DATABASE_URL selects it (the kernel sees to that) and tells it where to connect.
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "postgres_store.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/health.hpp"

namespace synthorg::store_postgres {
namespace {

// An empty variable counts as unset: compose and .env files often write `NAME=`.
const char* environment(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

class StoreHealth final : public HealthCheck {
 public:
  explicit StoreHealth(std::shared_ptr<PostgresStore> store) : store_(std::move(store)) {}
  std::string name() const override { return "store"; }
  HealthReport check() override {
    auto info = store_->info();
    auto pool = store_->pool_stats();
    HealthReport report;
    report.data = {{"backend", info.backend},
                   {"location", info.location},
                   {"server_version", info.server_version},
                   {"pool", {{"size", pool.size}, {"open", pool.open}, {"idle", pool.idle}}}};
    try {
      store_->ping();
      report.up = true;
      report.detail = "PostgreSQL answers";
    } catch (const std::exception& error) {
      report.detail = error.what();
    }
    return report;
  }

 private:
  std::shared_ptr<PostgresStore> store_;
};

class PostgresPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "store-postgres",
            .version = "0.1.0",
            .description = "The Store on PostgreSQL: JSONB documents with expression indexes, a connection pool, "
                           "reconnection after restarts, pg_dump snapshots",
            .provides = {std::string(Store::service_id), std::string(HealthCheck::service_id)},
            .needs = {},
            .config = ConfigMap{}
                          .string("url", "",
                                  "postgres://user:password@host:5432/database; SYNTHORG_DATABASE_URL, when set, "
                                  "wins over this. No query parameters: the SSL mode comes from "
                                  "SYNTHORG_POSTGRES_SSL_MODE (disable, require (default), verify-ca, verify-full)")
                          .sensitive()
                          .integer("pool_size", 4, "Connections kept to the server; calls beyond them wait")
                          .range(1, 64)
                          .duration("connect_timeout", "5s", "How long opening a connection may take")
                          .range(1000, 3'600'000)
                          .duration("statement_timeout", "30s",
                                    "Longest a statement may run, and longest a call waits for a free connection "
                                    "(0s: no limit on statements)")
                          .range(0, 86'400'000)};
  }
  explicit PostgresPlugin(PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    StoreOptions options;
    auto& connection = options.connection;
    const char* ssl_mode = environment("SYNTHORG_POSTGRES_SSL_MODE");
    connection.ssl_mode = check_ssl_mode(ssl_mode ? ssl_mode : "require");
    if (const char* from_env = environment("SYNTHORG_DATABASE_URL")) {
      parse_database_url(from_env, "SYNTHORG_DATABASE_URL", connection);
    } else {
      auto url = config.at("url").get<std::string>();
      if (url.empty())
        throw std::invalid_argument("no database to connect to: set SYNTHORG_DATABASE_URL (or "
                                    "plugins.store-postgres.config.url) to "
                                    "postgres://user:password@host:5432/database");
      parse_database_url(url, "plugins.store-postgres.config.url", connection);
    }
    connection.connect_timeout = std::chrono::milliseconds(config.at("connect_timeout").get<std::int64_t>());
    connection.statement_timeout = std::chrono::milliseconds(config.at("statement_timeout").get<std::int64_t>());
    options.pool_size = static_cast<std::size_t>(config.at("pool_size").get<std::int64_t>());
    options.acquire_timeout = connection.statement_timeout.count() > 0 ? connection.statement_timeout
                                                                       : std::chrono::milliseconds(30000);
    options_ = std::move(options);
    configured_ = true;
  }

  void start() override {
    if (!configured_) throw std::logic_error("store-postgres was started before it was configured");
    // Everything into locals first: a start that fails part-way must leave nothing held.
    auto store = std::make_shared<PostgresStore>(options_, context_.log());
    auto store_registration = context_.registry().provide<Store>(store);
    auto health_registration = context_.registry().provide<HealthCheck>(std::make_shared<StoreHealth>(store));
    store_registration_ = std::move(store_registration);
    health_registration_ = std::move(health_registration);
    auto info = store->info();
    context_.log().info("PostgreSQL store open", {{"location", info.location},
                                                  {"server_version", info.server_version},
                                                  {"ssl_mode", options_.connection.ssl_mode},
                                                  {"pool_size", options_.pool_size}});
  }

  void stop() override {
    health_registration_.reset();
    store_registration_.reset();
  }

 private:
  PluginContext& context_;
  StoreOptions options_;
  bool configured_ = false;
  Registration store_registration_;
  Registration health_registration_;
};

}  // namespace
}  // namespace synthorg::store_postgres

SYNTHORG_PLUGIN(synthorg::store_postgres::PostgresPlugin)
