#include "limits.hpp"

namespace synthorg::auth {

std::int64_t LoginThrottle::retry_after(const std::string& username, Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  auto at = entries_.find(username);
  if (at == entries_.end() || at->second.locked_until <= now) return 0;
  auto left = std::chrono::ceil<std::chrono::seconds>(at->second.locked_until - now).count();
  return left > 0 ? left : 1;
}

std::int64_t LoginThrottle::fail(const std::string& username, Clock::time_point now, int attempts,
                                 std::chrono::seconds lock) {
  std::lock_guard guard(mutex_);
  auto at = entries_.find(username);
  if (at == entries_.end()) {
    if (entries_.size() >= max_tracked_) {
      std::erase_if(entries_, [now](const auto& entry) { return entry.second.locked_until <= now; });
      if (entries_.size() >= max_tracked_) return 0;
    }
    at = entries_.emplace(username, Entry{}).first;
  }
  auto& entry = at->second;
  if (entry.locked_until > now) return 0;  // a straggler that was already hashing when it locked
  // A run of failures ends when the name has been quiet for a whole lock period.
  if (entry.failures > 0 && now - entry.last_failure > lock) entry.failures = 0;
  entry.last_failure = now;
  if (++entry.failures < attempts) return 0;
  entry.failures = 0;
  entry.locked_until = now + lock;
  return lock.count();
}

void LoginThrottle::succeed(const std::string& username) {
  std::lock_guard lock(mutex_);
  entries_.erase(username);
}

std::size_t LoginThrottle::tracked() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

bool HashQueue::submit(Job job) {
  auto shared = std::make_shared<Job>(std::move(job));
  {
    std::lock_guard lock(mutex_);
    if (active_ >= concurrency_) {
      if (pending_.size() >= capacity_) return false;
      pending_.push_back(std::move(shared));
      return true;
    }
    ++active_;
  }
  if (post(shared)) return true;
  finished();  // gives the slot back, or to a job that waited for it
  return false;
}

bool HashQueue::post(std::shared_ptr<Job> job) {
  return executor_.try_post_blocking([self = shared_from_this(), job] {
    try {
      job->run();
    } catch (...) {  // jobs answer their own errors; this only keeps the slot accounting right
    }
    self->finished();
  });
}

void HashQueue::finished() {
  for (;;) {
    std::shared_ptr<Job> next;
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) {
        --active_;
        return;
      }
      next = std::move(pending_.front());
      pending_.pop_front();
    }
    if (post(next)) return;  // the slot passes to it
    if (next->refused) next->refused();
  }
}

}  // namespace synthorg::auth
