// Helpers of the orchestrator kit (orchestrator_kit.cpp); not installed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::conformance::kit_support {

using Labels = std::map<std::string, std::string>;

std::string random_hex(std::size_t digits);
std::string demangled(const std::type_info& type);
std::string show(const Labels& labels);
std::string show(const std::set<std::string>& ids);
std::string show(const std::optional<int>& code);
bool has_label(const Labels& labels, const std::string& key, const std::string& value);
const char* stream_name(LogStream stream);

// What a call did: returned, or threw which exception.
struct Outcome {
  bool threw = false;
  bool orchestrator_error = false;
  OrchestratorErrc code = OrchestratorErrc::failed;
  std::string description = "returned normally";
};
Outcome outcome_of(const std::function<void()>& call);

// Runs `call` on a thread of its own and waits at most `limit` for it. A call still running
// then is left behind (it holds only what it captured), so a hung backend fails the test
// instead of hanging the kit.
bool finishes_within(std::chrono::milliseconds limit, std::function<void()> call, Outcome* outcome = nullptr);

// GET / over plain TCP; the status line, or "" with `error` set. Any HTTP status will do: the
// kit only proves that the endpoint reaches the workload.
std::string http_status_line(const Endpoint& endpoint, std::chrono::milliseconds timeout, std::string& error);

// `inner` with every call marked in flight (synthorg/host/call_in_flight.hpp), so a crash inside
// the plugin is reported with the call that caused it, e.g. "spawn(kit-x-1f2e3d)".
std::shared_ptr<Orchestrator> marking_calls(std::shared_ptr<Orchestrator> inner);

// Lines a logs() call delivered, shared with the thread that makes the call.
struct LogCapture {
  std::mutex mutex;
  std::vector<std::pair<LogStream, std::string>> lines;
  std::condition_variable changed;

  void add(LogStream stream, std::string_view line);
  std::optional<LogStream> stream_of(const std::string& text);
  std::string dump();
};

}  // namespace synthorg::conformance::kit_support
