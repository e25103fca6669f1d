// A token bucket per user, in memory, checked on the I/O thread before any work is queued.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace synthorg::workloads {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RateLimiter(std::size_t max_tracked = 100'000) : max_tracked_(max_tracked) {}

  // Takes one token from `user`'s bucket (refilled at per_minute / 60 a second, holding at most
  // `burst`). Returns 0 when taken, else the whole seconds until one is there (at least 1).
  std::int64_t take(const std::string& user, double per_minute, double burst, Clock::time_point now);

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated{};
  };
  std::size_t max_tracked_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace synthorg::workloads
