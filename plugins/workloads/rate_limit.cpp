#include "rate_limit.hpp"

#include <algorithm>
#include <cmath>

namespace synthorg::workloads {

std::int64_t RateLimiter::take(const std::string& user, double per_minute, double burst, Clock::time_point now) {
  double rate = per_minute / 60.0;  // tokens a second
  std::lock_guard guard(mutex_);
  auto it = buckets_.find(user);
  if (it == buckets_.end()) {
    // Full buckets are the same as no bucket: forget those first when the map grows too big.
    if (buckets_.size() >= max_tracked_)
      std::erase_if(buckets_, [&](const auto& entry) {
        auto elapsed = std::chrono::duration<double>(now - entry.second.updated).count();
        return entry.second.tokens + elapsed * rate >= burst;
      });
    it = buckets_.emplace(user, Bucket{burst, now}).first;
  }
  auto& bucket = it->second;
  auto elapsed = std::chrono::duration<double>(now - bucket.updated).count();
  bucket.tokens = std::min(burst, bucket.tokens + std::max(0.0, elapsed) * rate);
  bucket.updated = now;
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return 0;
  }
  if (rate <= 0) return 60;
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1.0 - bucket.tokens) / rate)));
}

}  // namespace synthorg::workloads
