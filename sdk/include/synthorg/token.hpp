#pragma once

#include <functional>
#include <utility>

namespace synthorg {

// An RAII handle that undoes something when destroyed or reset: a service registration, a
// tracker, a bus subscription. Move-only. Releasing twice is harmless, and a token outliving
// the registry or bus that issued it releases nothing.
class Token {
 public:
  Token() = default;
  explicit Token(std::function<void()> release) : release_(std::move(release)) {}
  Token(Token&& other) noexcept : release_(std::exchange(other.release_, nullptr)) {}
  Token& operator=(Token&& other) noexcept {
    if (this != &other) {
      reset();
      release_ = std::exchange(other.release_, nullptr);
    }
    return *this;
  }
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;
  ~Token() { reset(); }

  void reset() noexcept {
    if (auto release = std::exchange(release_, nullptr)) {
      try {
        release();
      } catch (...) {  // a release that throws must not take a destructor down with it
      }
    }
  }
  explicit operator bool() const noexcept { return static_cast<bool>(release_); }

 private:
  std::function<void()> release_;
};

using Registration = Token;
using Tracker = Token;
using Subscription = Token;

}  // namespace synthorg
