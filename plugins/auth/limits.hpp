// What keeps password guessing cheap for us and slow for the guesser: a per-username lockout
// decided in memory before any hashing, and a bounded queue in front of Argon2id so failed
// logins can take only some of the blocking pool, never all of it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "synthorg/services/executor.hpp"

namespace synthorg::auth {

class LoginThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  // Beyond `max_tracked` usernames, ones not locked are forgotten first: random names cannot
  // grow this without bound, and each costs the guesser a full hash anyway.
  explicit LoginThrottle(std::size_t max_tracked = 100'000) : max_tracked_(max_tracked) {}

  // Seconds until `username` may try again (rounded up); 0 when it may now.
  std::int64_t retry_after(const std::string& username, Clock::time_point now) const;
  // Counts a failed attempt. After `attempts` failures in a row (each within `lock` of the
  // previous) the name is locked for `lock`; returns the seconds locked when this one locked it.
  std::int64_t fail(const std::string& username, Clock::time_point now, int attempts, std::chrono::seconds lock);
  void succeed(const std::string& username);
  std::size_t tracked() const;

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point last_failure{};
    Clock::time_point locked_until{};
  };
  std::size_t max_tracked_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

// Runs jobs on the blocking pool, at most `concurrency` at once, with up to `capacity` more
// waiting here (not in the pool's queue, so they hold no pool thread while they wait).
class HashQueue : public std::enable_shared_from_this<HashQueue> {
 public:
  struct Job {
    std::function<void()> run;
    std::function<void()> refused;  // when an accepted job could not be run after all (pool full)
  };

  HashQueue(Executor& executor, std::size_t concurrency, std::size_t capacity)
      : executor_(executor), concurrency_(concurrency), capacity_(capacity) {}

  // False, without running anything, when the queue is full or the pool refuses: answer busy.
  bool submit(Job job);

 private:
  bool post(std::shared_ptr<Job> job);
  void finished();

  Executor& executor_;
  std::size_t concurrency_;
  std::size_t capacity_;
  std::mutex mutex_;
  std::size_t active_ = 0;
  std::deque<std::shared_ptr<Job>> pending_;
};

}  // namespace synthorg::auth
