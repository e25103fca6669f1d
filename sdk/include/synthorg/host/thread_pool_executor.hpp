#pragma once

#include <cstddef>
#include <memory>

#include "synthorg/services/executor.hpp"

namespace synthorg::host {

struct ExecutorOptions {
  std::size_t io_threads = 0;         // 0: one per core
  std::size_t blocking_threads = 4;
  std::size_t blocking_queue = 1024;  // tasks accepted beyond the running ones
};

// The kernel's Executor: threads start in the constructor; stop() (or the destructor) lets
// queued work finish, then joins.
class ThreadPoolExecutor final : public Executor {
 public:
  explicit ThreadPoolExecutor(ExecutorOptions options);
  ~ThreadPoolExecutor() override;

  boost::asio::io_context& io_context() override;
  void post(std::function<void()> task) override;
  bool try_post_blocking(std::function<void()> task) override;
  ExecutorStats stats() const override;
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace synthorg::host
