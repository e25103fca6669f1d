// The marks live in fixed slots written before they are published, so the signal handler reads
// them without locks or allocation; it calls only write(2), sigaction(2) and raise(3).
#include "synthorg/host/call_in_flight.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace synthorg::host {
namespace {

constexpr int slot_count = 128;
constexpr std::size_t text_size = 200;

struct Slot {
  std::atomic<bool> taken{false};
  std::atomic<bool> published{false};
  char text[text_size] = {};
};
Slot slots[slot_count];

// initial-exec: the handler must not reach __tls_get_addr, which may allocate.
thread_local int current_slot __attribute__((tls_model("initial-exec"))) = -1;

constexpr int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
struct sigaction previous[NSIG];
std::atomic<int> report_fd{-1};
char prefix[64] = {};

const char* signal_name(int signal) {
  switch (signal) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGFPE: return "SIGFPE (arithmetic error)";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "a fatal signal";
  }
}

void put(int fd, const char* text) {
  std::size_t length = std::strlen(text);
  while (length > 0) {
    ssize_t written = ::write(fd, text, length);
    if (written <= 0) {
      if (written < 0 && errno == EINTR) continue;
      return;
    }
    text += written;
    length -= static_cast<std::size_t>(written);
  }
}

void on_fatal_signal(int signal) {
  int saved_errno = errno;
  if (int fd = report_fd.load(std::memory_order_acquire); fd >= 0) {
    int mine = current_slot;
    put(fd, prefix);
    put(fd, "fatal ");
    put(fd, signal_name(signal));
    if (mine >= 0 && slots[mine].published.load(std::memory_order_acquire)) {
      put(fd, " while ");
      put(fd, slots[mine].text);
      put(fd, " was in flight on the crashing thread\n");
    } else {
      put(fd, " on a thread that was making no call the host marks (a plugin's own thread, or the host itself)\n");
    }
    for (int i = 0; i < slot_count; ++i) {
      if (i == mine || !slots[i].published.load(std::memory_order_acquire)) continue;
      put(fd, prefix);
      put(fd, "  also in flight: ");
      put(fd, slots[i].text);
      put(fd, "\n");
    }
  }
  // The previous handler (usually the default: terminate, dump core) gets the signal as soon as
  // this one returns, since the signal is blocked while it runs.
  ::sigaction(signal, &previous[signal], nullptr);
  ::raise(signal);
  errno = saved_errno;
}

}  // namespace

CallInFlight::CallInFlight(std::initializer_list<std::string_view> what) noexcept : slot_(-1), outer_(current_slot) {
  for (int i = 0; i < slot_count; ++i) {
    bool expected = false;
    if (slots[i].taken.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      slot_ = i;
      break;
    }
  }
  if (slot_ < 0) return;
  std::size_t length = 0;
  for (auto piece : what) {
    auto take = std::min(piece.size(), text_size - 1 - length);
    std::memcpy(slots[slot_].text + length, piece.data(), take);
    length += take;
  }
  slots[slot_].text[length] = '\0';
  slots[slot_].published.store(true, std::memory_order_release);
  current_slot = slot_;
}

CallInFlight::~CallInFlight() {
  if (slot_ < 0) return;
  current_slot = outer_;
  slots[slot_].published.store(false, std::memory_order_release);
  slots[slot_].taken.store(false, std::memory_order_release);
}

void report_fatal_signals(int fd, std::string_view line_prefix) {
  auto length = std::min(line_prefix.size(), sizeof prefix - 1);
  std::memcpy(prefix, line_prefix.data(), length);
  prefix[length] = '\0';
  static std::atomic<bool> installed{false};
  if (!installed.exchange(true)) {
    for (int signal : fatal_signals) {
      struct sigaction action {};
      action.sa_handler = on_fatal_signal;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_ONSTACK;
      ::sigaction(signal, &action, &previous[signal]);
    }
  }
  report_fd.store(fd, std::memory_order_release);
}

}  // namespace synthorg::host
