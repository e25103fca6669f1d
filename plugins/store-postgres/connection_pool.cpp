#include "connection_pool.hpp"

#include <poll.h>

#include <fmt/format.h>
#include <pqxx/except>

namespace synthorg::store_postgres {

std::unique_ptr<pqxx::connection> open_connection(const ConnectionSettings& settings) {
  std::unique_ptr<pqxx::connection> connection;
  try {
    connection = std::make_unique<pqxx::connection>(settings.conninfo());
  } catch (const pqxx::broken_connection& e) {
    throw connect_error(settings, e.what());
  } catch (const pqxx::failure& e) {
    throw connect_error(settings, e.what());
  }
  // libpqxx 6 would otherwise reconnect silently inside the next call, losing session state
  // such as the server lock; we would rather see the break and replace the connection.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  connection->inhibit_reactivation(true);
#pragma GCC diagnostic pop
  return connection;
}

bool idle_connection_usable(pqxx::connection& connection) noexcept {
  if (!connection.is_open()) return false;
  int socket = connection.sock();
  if (socket < 0) return false;
  pollfd descriptor{socket, POLLIN, 0};
  int ready = ::poll(&descriptor, 1, 0);
  // Nothing to read is the healthy state of an idle connection; a readable socket means EOF
  // or a termination notice (57P01 on shutdown).
  return ready == 0;
}

ConnectionPool::ConnectionPool(ConnectionSettings settings, std::size_t size, std::chrono::milliseconds acquire_timeout,
                               log::Logger log)
    : settings_(std::move(settings)), size_(size), acquire_timeout_(acquire_timeout), log_(std::move(log)) {}

ConnectionPool::~ConnectionPool() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

ConnectionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), connection_(std::move(other.connection_)), broken_(other.broken_) {}

ConnectionPool::Lease::~Lease() {
  if (connection_) pool_->give_back(std::move(connection_), broken_);
}

StoreError ConnectionPool::Lease::translate(std::string_view context) {
  bool broken = false;
  auto error = translate_current_exception(pool_->settings_, context, broken);
  if (broken || !connection_->is_open()) {
    broken_ = true;
    pool_->drop_idle();
    pool_->log_.warn("PostgreSQL connection lost; it is replaced on the next call",
                     {{"server", pool_->settings_.endpoint()}, {"reason", std::string_view(error.what())}});
  }
  return error;
}

ConnectionPool::Lease ConnectionPool::acquire() {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + acquire_timeout_;
  for (;;) {
    while (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      if (idle_connection_usable(*connection)) return Lease(*this, std::move(connection));
      --open_;
      lock.unlock();
      connection.reset();  // closing may touch the network: not under the lock
      lock.lock();
    }
    if (open_ < size_) {
      ++open_;
      lock.unlock();
      try {
        return Lease(*this, open_connection(settings_));
      } catch (...) {
        lock.lock();
        --open_;
        returned_.notify_one();
        throw;
      }
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= size_)
      throw StoreError(StoreErrc::unavailable,
                       fmt::format("all {} connections to PostgreSQL at {} stayed busy for {} ms (fix: raise "
                                   "pool_size, or keep transactions short)",
                                   size_, settings_.endpoint(), acquire_timeout_.count()));
  }
}

void ConnectionPool::give_back(std::unique_ptr<pqxx::connection> connection, bool broken) noexcept {
  if (broken || !connection->is_open()) {
    connection.reset();
    std::lock_guard lock(mutex_);
    --open_;
  } else {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(connection));
  }
  returned_.notify_one();
}

void ConnectionPool::drop_idle() noexcept {
  std::vector<std::unique_ptr<pqxx::connection>> dropped;
  {
    std::lock_guard lock(mutex_);
    dropped.swap(idle_);
    open_ -= dropped.size();
  }
  returned_.notify_all();
}

PoolStats ConnectionPool::stats() const {
  std::lock_guard lock(mutex_);
  return {size_, open_, idle_.size()};
}

}  // namespace synthorg::store_postgres
