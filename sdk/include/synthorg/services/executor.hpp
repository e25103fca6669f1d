#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace synthorg {

struct ExecutorStats {
  std::size_t io_threads = 0;
  std::size_t blocking_threads = 0;
  std::size_t blocking_queued = 0;  // accepted and not yet finished
  std::size_t blocking_capacity = 0;
  std::uint64_t blocking_rejected = 0;
};

// The kernel's threads, shared by every plugin: one io_context run by N I/O threads, and a
// bounded pool for blocking work (database, orchestrator calls). Never block an I/O thread.
class Executor {
 public:
  static constexpr std::string_view service_id = "synthorg.Executor/1";
  virtual ~Executor() = default;

  virtual boost::asio::io_context& io_context() = 0;
  // Runs `task` on an I/O thread.
  virtual void post(std::function<void()> task) = 0;
  // Runs `task` on the blocking pool; false, without running it, when the pool's queue is
  // full (the caller answers "busy" instead of piling up work).
  virtual bool try_post_blocking(std::function<void()> task) = 0;
  virtual ExecutorStats stats() const = 0;
};

}  // namespace synthorg
