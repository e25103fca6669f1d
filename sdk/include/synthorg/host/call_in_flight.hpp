// What a host was doing when it died. Each thread marks the plugin call it is making; a fatal
// signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) then writes the marks to a file descriptor
// and the process dies as it would have. The kernel reports to stderr; the conformance kit to
// its supervisor, which names the call in its crash report.
#pragma once

#include <initializer_list>
#include <string_view>

namespace synthorg::host {

// Marks one call for the lifetime of the object, on this thread. The pieces, joined, name it:
// {"start() of plugin '", name, "'"}; text past the slot's size is cut. Never allocates or
// throws: with every slot taken the call is simply not marked.
class CallInFlight {
 public:
  explicit CallInFlight(std::initializer_list<std::string_view> what) noexcept;
  ~CallInFlight();
  CallInFlight(const CallInFlight&) = delete;
  CallInFlight& operator=(const CallInFlight&) = delete;

 private:
  int slot_;
  int outer_;  // the mark this one hides on the same thread (nested calls), or -1
};

// Installs the fatal-signal handler (once per process; a later call changes fd and prefix).
// Each report line starts with `prefix`. The handler uses only async-signal-safe calls and
// then hands the signal to whatever handler was installed before it (the default: die, dump).
void report_fatal_signals(int fd, std::string_view prefix);

}  // namespace synthorg::host
