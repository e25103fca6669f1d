// The Docker Engine API as orchestrator-docker uses it: version negotiation, JSON calls with
// the engine's errors mapped to OrchestratorError, and the multiplexed log stream.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "synthorg/http_client.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_docker {

// Every request is written for this API version (Docker 20.10); newer engines accept it.
inline constexpr std::string_view api_version = "1.41";

struct EngineReply {
  int status = 0;
  nlohmann::json body;  // null when the answer had no JSON body
};

class DockerEngine {
 public:
  // `host`: unix:///path, tcp://host:port or http(s)://host:port.
  DockerEngine(const std::string& host, std::chrono::milliseconds request_timeout);

  // GET /_ping and /version: throws unavailable with the reason and the fix when the engine
  // cannot be reached or is older than API 1.41. Returns /version's answer.
  nlohmann::json negotiate();

  // One call to /v1.41`path`. Statuses in `accepted` come back; any other raises an
  // OrchestratorError carrying the engine's message. `timeout` 0 uses the default. When
  // `timed_out` is given, running out of time sets it and returns an empty reply instead of
  // raising (waits, where a timeout is an answer).
  EngineReply call(std::string_view method, const std::string& path, const nlohmann::json* body,
                   std::initializer_list<int> accepted, std::chrono::milliseconds timeout = {},
                   bool* timed_out = nullptr);

  // Streams a multiplexed (stdout/stderr) body, as /containers/{id}/logs sends it without a
  // TTY, to `sink` one line at a time.
  void stream_lines(const std::string& path, const std::stop_token& stop, const LogSink& sink);

  // Streams a body of newline-separated JSON objects (image pulls) to `on_object`.
  EngineReply stream_json(std::string_view method, const std::string& path,
                          const std::function<void(const nlohmann::json&)>& on_object, std::chrono::milliseconds timeout);

  std::string describe() const { return client_.describe(); }

 private:
  [[noreturn]] void raise_unreachable(const http::ClientError& error, std::string_view what);
  void ensure_negotiated();

  http::HttpClient client_;
  std::chrono::milliseconds request_timeout_;
  std::mutex mutex_;
  bool negotiated_ = false;
};

// Maps an engine answer to the error a caller can act on; `what` says what was attempted.
OrchestratorError engine_error(int status, const nlohmann::json& body, std::string_view what);

}  // namespace synthorg::orchestrator_docker
