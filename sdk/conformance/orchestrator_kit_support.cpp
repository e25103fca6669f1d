// Helpers of the orchestrator kit that are not about the contract: describing outcomes, calling
// with a time limit, a minimal HTTP GET, and collecting log lines.
#include "orchestrator_kit_support.hpp"

#include "synthorg/host/call_in_flight.hpp"

#include <cxxabi.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <future>
#include <random>
#include <thread>

namespace synthorg::conformance::kit_support {

using Clock = std::chrono::steady_clock;

std::string random_hex(std::size_t digits) {
  static std::mutex mutex;
  static std::mt19937_64 random{std::random_device{}()};
  std::lock_guard lock(mutex);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < digits; ++i) out += hex[random() % 16];
  return out;
}

std::string demangled(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : type.name();
  std::free(name);
  return out;
}

std::string show(const Labels& labels) {
  std::string out = "{";
  for (const auto& [key, value] : labels) out += (out.size() > 1 ? ", " : "") + key + "=" + value;
  return out + "}";
}

std::string show(const std::set<std::string>& ids) {
  std::string out = "[";
  for (const auto& id : ids) out += (out.size() > 1 ? ", " : "") + id;
  return out + "]";
}

bool has_label(const Labels& labels, const std::string& key, const std::string& value) {
  auto found = labels.find(key);
  return found != labels.end() && found->second == value;
}

std::string show(const std::optional<int>& code) { return code ? std::to_string(*code) : "none"; }

Outcome outcome_of(const std::function<void()>& call) {
  Outcome out;
  try {
    call();
  } catch (const OrchestratorError& error) {
    out = {true, true, error.code(), "threw OrchestratorError(" + std::string(to_string(error.code())) + "): " + error.what()};
  } catch (const std::exception& error) {
    out = {true, false, OrchestratorErrc::failed,
           "threw " + demangled(typeid(error)) + ", not an OrchestratorError: " + error.what()};
  } catch (...) {
    out = {true, false, OrchestratorErrc::failed, "threw something that is not a std::exception"};
  }
  return out;
}

bool finishes_within(std::chrono::milliseconds limit, std::function<void()> call, Outcome* outcome) {
  auto done = std::make_shared<std::promise<Outcome>>();
  auto future = done->get_future();
  std::thread worker([done, call = std::move(call)] { done->set_value(outcome_of(call)); });
  if (future.wait_for(limit) != std::future_status::ready) {
    worker.detach();
    return false;
  }
  worker.join();
  auto result = future.get();
  if (outcome) *outcome = result;
  return true;
}

std::string http_status_line(const Endpoint& endpoint, std::chrono::milliseconds timeout, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto port = std::to_string(endpoint.port);
  if (int rc = getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    error = std::string("cannot resolve the host: ") + gai_strerror(rc);
    return {};
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);
  auto deadline = Clock::now() + timeout;
  auto remaining_ms = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };
  for (auto* address = found; address; address = address->ai_next) {
    int fd = ::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) continue;
    std::unique_ptr<int, void (*)(int*)> guard(&fd, [](int* f) { ::close(*f); });
    if (::connect(fd, address->ai_addr, address->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error = std::string("connect: ") + std::strerror(errno);
      continue;
    }
    pollfd watch{fd, POLLOUT, 0};
    if (::poll(&watch, 1, remaining_ms()) <= 0) {
      error = "connect timed out";
      continue;
    }
    int so_error = 0;
    socklen_t length = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
    if (so_error != 0) {
      error = std::string("connect: ") + std::strerror(so_error);
      continue;
    }
    std::string request = "GET / HTTP/1.0\r\nHost: " + endpoint.host + "\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      error = std::string("send: ") + std::strerror(errno);
      continue;
    }
    std::string response;
    while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, remaining_ms()) <= 0) break;
      char buffer[1024];
      auto n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<std::size_t>(n));
    }
    if (response.rfind("HTTP/", 0) == 0) return response.substr(0, response.find("\r\n"));
    error = response.empty() ? "the connection closed without an answer" : "not an HTTP answer: " + response.substr(0, 80);
  }
  return {};
}

void LogCapture::add(LogStream stream, std::string_view line) {
  std::lock_guard lock(mutex);
  lines.emplace_back(stream, std::string(line));
  changed.notify_all();
}

std::optional<LogStream> LogCapture::stream_of(const std::string& text) {
  std::lock_guard lock(mutex);
  for (const auto& [stream, line] : lines)
    if (line.find(text) != std::string::npos) return stream;
  return std::nullopt;
}

std::string LogCapture::dump() {
  std::lock_guard lock(mutex);
  std::string out;
  for (const auto& [stream, line] : lines)
    out += std::string(stream == LogStream::stdout_stream ? "  out| " : "  err| ") + line + "\n";
  return out.empty() ? "  (no lines)\n" : out;
}

namespace {

using host::CallInFlight;

class MarkedOrchestrator final : public Orchestrator {
 public:
  explicit MarkedOrchestrator(std::shared_ptr<Orchestrator> inner) : inner_(std::move(inner)) {}
  std::string backend() const override {
    CallInFlight mark({"backend()"});
    return inner_->backend();
  }
  WorkloadStatus spawn(const WorkloadSpec& spec) override {
    CallInFlight mark({"spawn(", spec.name, ")"});
    return inner_->spawn(spec);
  }
  WorkloadStatus inspect(const std::string& id) override {
    CallInFlight mark({"inspect(", id, ")"});
    return inner_->inspect(id);
  }
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override {
    CallInFlight mark({"list(", show(labels), ")"});
    return inner_->list(labels);
  }
  void stop(const std::string& id, std::chrono::seconds grace) override {
    CallInFlight mark({"stop(", id, ")"});
    inner_->stop(id, grace);
  }
  void remove(const std::string& id) override {
    CallInFlight mark({"remove(", id, ")"});
    inner_->remove(id);
  }
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override {
    CallInFlight mark({"wait(", id, ")"});
    return inner_->wait(id, timeout);
  }
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override {
    CallInFlight mark({"logs(", id, ")"});
    inner_->logs(id, options, sink);
  }
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override {
    CallInFlight mark({"endpoint(", id, ")"});
    return inner_->endpoint(id, container_port);
  }
  OrchestratorHealth health() override {
    CallInFlight mark({"health()"});
    return inner_->health();
  }

 private:
  std::shared_ptr<Orchestrator> inner_;
};

}  // namespace

std::shared_ptr<Orchestrator> marking_calls(std::shared_ptr<Orchestrator> inner) {
  return inner ? std::make_shared<MarkedOrchestrator>(std::move(inner)) : nullptr;
}

const char* stream_name(LogStream stream) { return stream == LogStream::stdout_stream ? "stdout" : "stderr"; }

}  // namespace synthorg::conformance::kit_support
