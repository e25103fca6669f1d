// A workload's output as lines, bounded in bytes: the oldest lines go first. Lines carry a
// sequence number so a follower can tell what it has already seen, even after some were dropped.
// Not thread-safe: the orchestrator's mutex guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_process {

struct LogLine {
  std::uint64_t seq = 0;
  LogStream stream = LogStream::stdout_stream;
  std::string text;
};

class LogBuffer {
 public:
  explicit LogBuffer(std::size_t capacity_bytes) : capacity_(capacity_bytes) {}

  void append(LogStream stream, std::string text) {
    bytes_ += cost(text);
    lines_.push_back({next_, stream, std::move(text)});
    ++next_;
    while (bytes_ > capacity_ && lines_.size() > 1) {
      bytes_ -= cost(lines_.front().text);
      lines_.pop_front();
    }
  }

  // The last `count` lines (all when 0).
  std::vector<LogLine> tail(std::size_t count) const {
    auto skip = count == 0 || count >= lines_.size() ? 0 : lines_.size() - count;
    return {lines_.begin() + static_cast<std::ptrdiff_t>(skip), lines_.end()};
  }

  // Lines numbered `seq` or later that are still held.
  std::vector<LogLine> since(std::uint64_t seq) const {
    if (lines_.empty() || seq >= next_) return {};
    auto first = lines_.front().seq;
    auto skip = seq <= first ? 0 : seq - first;
    return {lines_.begin() + static_cast<std::ptrdiff_t>(skip), lines_.end()};
  }

  std::uint64_t next_seq() const noexcept { return next_; }

 private:
  static std::size_t cost(const std::string& text) noexcept { return text.size() + 32; }

  std::size_t capacity_;
  std::size_t bytes_ = 0;
  std::uint64_t next_ = 0;
  std::deque<LogLine> lines_;
};

// Splits one stream's bytes into lines. A line longer than `max_line` is cut into pieces, so a
// workload that never writes a newline cannot hold its output back forever.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line) : max_line_(max_line) {}

  template <class Emit>
  void feed(std::string_view bytes, Emit&& emit) {
    for (char c : bytes) {
      if (c == '\n') {
        if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
        emit(std::move(partial_));
        partial_.clear();
      } else {
        partial_ += c;
        if (partial_.size() >= max_line_) {
          emit(std::move(partial_));
          partial_.clear();
        }
      }
    }
  }

  template <class Emit>
  void finish(Emit&& emit) {
    if (!partial_.empty()) emit(std::move(partial_));
    partial_.clear();
  }

 private:
  std::size_t max_line_;
  std::string partial_;
};

}  // namespace synthorg::orchestrator_process
