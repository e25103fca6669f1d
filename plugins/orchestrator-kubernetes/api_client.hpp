// The API server as the orchestrator sees it: every request carries the bearer token (re-read
// as it rotates, and once more after a 401), and every refusal becomes an OrchestratorError
// whose message carries the server's own Status.message and what to do about it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cluster_config.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_kubernetes {

enum class StreamEnd { finished, cancelled, timed_out };

class ApiClient {
 public:
  // Throws std::invalid_argument when the server URL or CA cannot be used.
  ApiClient(const ClusterConfig& config, log::Logger log, std::chrono::milliseconds request_timeout);

  // One request; any HTTP status is returned. Transport failures throw unavailable.
  http::ClientResponse send(const std::string& method, const std::string& target, const std::string& body = {},
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));
  // One request whose answer must be 2xx: the parsed body (null when empty). Otherwise throws
  // the OrchestratorError for the status; `what` says what was being done ("creating pod x").
  nlohmann::json call(const std::string& method, const std::string& target, std::string_view what,
                      const std::string& body = {}, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));
  // A streamed GET (watch, logs): `on_data` gets the body as it arrives. A non-2xx answer throws
  // as call() does; a stop request or the timeout (0: none) ends it quietly.
  StreamEnd stream(const std::string& target, std::string_view what,
                   const std::function<bool(std::string_view)>& on_data, std::stop_token stop,
                   std::chrono::milliseconds timeout);

  [[noreturn]] void raise(int status, const std::string& body, std::string_view what) const;

  const std::string& namespace_name() const noexcept { return namespace_; }
  std::string pods_path() const;                         // /api/v1/namespaces/<ns>/pods
  std::string pod_path(const std::string& name) const;  // .../pods/<name>
  std::string describe() const { return client_.describe(); }
  const std::string& source() const noexcept { return source_; }

 private:
  http::Headers headers(const std::string& token, bool with_body) const;
  [[noreturn]] void unreachable(const http::ClientError& error, std::string_view what) const;

  http::HttpClient client_;
  TokenSource tokens_;
  log::Logger log_;
  std::string namespace_;
  std::string source_;
  std::chrono::milliseconds request_timeout_;
};

// Status.message (or the raw body, shortened) of an error answer.
std::string status_message(const std::string& body);

}  // namespace synthorg::orchestrator_kubernetes
