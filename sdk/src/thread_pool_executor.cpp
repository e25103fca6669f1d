#include "synthorg/host/thread_pool_executor.hpp"

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "synthorg/log.hpp"
#include "synthorg/trace_context.hpp"

namespace synthorg::host {

struct ThreadPoolExecutor::State {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::vector<std::thread> io_threads;

  std::mutex mutex;  // guards the blocking queue
  std::condition_variable wake;
  std::deque<std::function<void()>> blocking_queue;
  std::vector<std::thread> blocking_threads;
  std::size_t blocking_busy = 0;
  std::size_t blocking_capacity = 0;
  std::uint64_t blocking_rejected = 0;
  bool stopping = false;
  bool stopped = false;
  log::Logger log{"executor"};

  void run_io() {
    for (;;) {
      try {
        io.run();
        return;
      } catch (const std::exception& e) {  // one failing handler must not take the thread down
        log.error("I/O task failed", {{"error", e.what()}});
      } catch (...) {
        log.error("I/O task failed", {{"error", "unknown exception"}});
      }
    }
  }

  void run_blocking() {
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !blocking_queue.empty(); });
      if (blocking_queue.empty()) return;  // stopping, and the queue is drained
      auto task = std::move(blocking_queue.front());
      blocking_queue.pop_front();
      ++blocking_busy;
      lock.unlock();
      try {
        task();
      } catch (const std::exception& e) {
        log.error("Blocking task failed", {{"error", e.what()}});
      } catch (...) {
        log.error("Blocking task failed", {{"error", "unknown exception"}});
      }
      lock.lock();
      --blocking_busy;
    }
  }
};

ThreadPoolExecutor::ThreadPoolExecutor(ExecutorOptions options) : state_(std::make_unique<State>()) {
  std::size_t io_threads = options.io_threads ? options.io_threads : std::max(1u, std::thread::hardware_concurrency());
  std::size_t blocking_threads = std::max<std::size_t>(1, options.blocking_threads);
  state_->blocking_capacity = options.blocking_queue;
  for (std::size_t i = 0; i < io_threads; ++i) {
    state_->io_threads.emplace_back([this] { state_->run_io(); });
    pthread_setname_np(state_->io_threads.back().native_handle(), ("synthorg-io-" + std::to_string(i)).c_str());
  }
  for (std::size_t i = 0; i < blocking_threads; ++i) {
    state_->blocking_threads.emplace_back([this] { state_->run_blocking(); });
    pthread_setname_np(state_->blocking_threads.back().native_handle(), ("synthorg-blk-" + std::to_string(i)).c_str());
  }
}

ThreadPoolExecutor::~ThreadPoolExecutor() { stop(); }

boost::asio::io_context& ThreadPoolExecutor::io_context() { return state_->io; }

void ThreadPoolExecutor::post(std::function<void()> task) { boost::asio::post(state_->io, std::move(task)); }

bool ThreadPoolExecutor::try_post_blocking(std::function<void()> task) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopping || state_->blocking_queue.size() >= state_->blocking_capacity) {
      ++state_->blocking_rejected;
      return false;
    }
    // The poster's trace context goes with the task, so a handler's database or orchestrator
    // call stays in its request's trace. Nothing is wrapped when tracing is off.
    if (const auto& context = trace::current(); context.valid())
      task = [context, task = std::move(task)] {
        trace::ScopedContext scope(context);
        task();
      };
    state_->blocking_queue.push_back(std::move(task));
  }
  state_->wake.notify_one();
  return true;
}

ExecutorStats ThreadPoolExecutor::stats() const {
  std::lock_guard lock(state_->mutex);
  return {state_->io_threads.size(), state_->blocking_threads.size(),
          state_->blocking_queue.size() + state_->blocking_busy, state_->blocking_capacity, state_->blocking_rejected};
}

void ThreadPoolExecutor::stop() {
  {
    std::lock_guard lock(state_->mutex);
    if (std::exchange(state_->stopped, true)) return;
    state_->stopping = true;  // accepted blocking work still runs: it may be a write to keep
  }
  state_->wake.notify_all();
  for (auto& thread : state_->blocking_threads) thread.join();
  state_->work.reset();
  state_->io.stop();
  for (auto& thread : state_->io_threads) thread.join();
}

}  // namespace synthorg::host
