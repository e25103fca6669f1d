#include "api_client.hpp"

#include <algorithm>

namespace synthorg::orchestrator_kubernetes {
namespace {

http::ClientOptions client_options(const ClusterConfig& config) {
  http::ClientOptions options;
  options.base_url = config.server;
  options.ca_file = config.ca_file;
  options.ca_pem = config.ca_pem;
  options.verify_peer = config.verify_peer;
  options.user_agent = "synthorg-orchestrator-kubernetes";
  return options;
}

std::string reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

}  // namespace

std::string status_message(const std::string& body) {
  try {
    auto status = nlohmann::json::parse(body);
    if (status.is_object() && status.contains("message") && status["message"].is_string())
      return status["message"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  std::string text = body.substr(0, 300);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

ApiClient::ApiClient(const ClusterConfig& config, log::Logger log, std::chrono::milliseconds request_timeout)
    : client_(client_options(config)),
      tokens_(config.token, config.token_file),
      log_(std::move(log)),
      namespace_(config.namespace_name),
      source_(config.source),
      request_timeout_(request_timeout) {}

std::string ApiClient::pods_path() const { return "/api/v1/namespaces/" + http::url_encode(namespace_) + "/pods"; }

std::string ApiClient::pod_path(const std::string& name) const { return pods_path() + "/" + http::url_encode(name); }

http::Headers ApiClient::headers(const std::string& token, bool with_body) const {
  http::Headers headers{{"Accept", "application/json"}};
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  if (with_body) headers.emplace_back("Content-Type", "application/json");
  return headers;
}

void ApiClient::unreachable(const http::ClientError& error, std::string_view what) const {
  throw OrchestratorError(OrchestratorErrc::unavailable,
                          "cannot reach the Kubernetes API server at " + client_.describe() + " while " +
                              std::string(what) + ": " + error.what());
}

http::ClientResponse ApiClient::send(const std::string& method, const std::string& target, const std::string& body,
                                     std::chrono::milliseconds timeout) {
  http::ClientRequest request;
  request.method = method;
  request.target = target;
  request.body = body;
  request.timeout = timeout.count() < 0 ? request_timeout_ : timeout;
  auto token = tokens_.current();
  request.headers = headers(token, !body.empty());
  // Only the method and path are logged: never the Authorization header.
  log_.debug("Kubernetes API request", {{"method", method}, {"target", target}});
  try {
    auto response = client_.send(request);
    // A projected token rotates: after a 401, read the file again and retry once with a new one.
    if (response.status == 401 && tokens_.refresh_after_rejection(token)) {
      log_.info("The API server refused the bearer token; retrying with the token file read again",
                {{"token_file", tokens_.file()}});
      request.headers = headers(tokens_.current(), !body.empty());
      response = client_.send(request);
    }
    return response;
  } catch (const http::ClientError& error) {
    unreachable(error, method + " " + target);
  }
}

nlohmann::json ApiClient::call(const std::string& method, const std::string& target, std::string_view what,
                               const std::string& body, std::chrono::milliseconds timeout) {
  auto response = send(method, target, body, timeout);
  if (response.status < 200 || response.status > 299) raise(response.status, response.body, what);
  if (response.body.empty()) return nullptr;
  try {
    return nlohmann::json::parse(response.body);
  } catch (const nlohmann::json::exception& error) {
    throw OrchestratorError(OrchestratorErrc::unavailable, "the Kubernetes API server answered " + std::string(what) +
                                                               " with something that is not JSON: " + error.what());
  }
}

StreamEnd ApiClient::stream(const std::string& target, std::string_view what,
                            const std::function<bool(std::string_view)>& on_data, std::stop_token stop,
                            std::chrono::milliseconds timeout) {
  http::ClientRequest request;
  request.method = "GET";
  request.target = target;
  request.timeout = timeout;
  auto token = tokens_.current();
  request.headers = headers(token, false);
  log_.debug("Kubernetes API stream", {{"target", target}});
  for (int attempt = 0;; ++attempt) {
    try {
      auto response = client_.stream(request, on_data, stop);
      if (response.status == 401 && attempt == 0 && tokens_.refresh_after_rejection(token)) {
        request.headers = headers(tokens_.current(), false);
        continue;
      }
      if (response.status < 200 || response.status > 299) raise(response.status, response.body, what);
      return StreamEnd::finished;
    } catch (const http::ClientError& error) {
      if (error.code() == http::ClientErrc::cancelled) return StreamEnd::cancelled;
      if (error.code() == http::ClientErrc::timeout) return StreamEnd::timed_out;
      unreachable(error, what);
    }
  }
}

void ApiClient::raise(int status, const std::string& body, std::string_view what) const {
  auto message = status_message(body);
  auto answer = " (HTTP " + std::to_string(status) + (reason_phrase(status).empty() ? "" : " " + reason_phrase(status)) + ")";
  std::string doing(what);
  switch (status) {
    case 401:
      throw OrchestratorError(
          OrchestratorErrc::unavailable,
          "the Kubernetes API server refused the bearer token while " + doing + answer + ": " + message +
              ". The service account token " +
              (tokens_.from_file() ? "in " + tokens_.file() + " " : "") +
              "has expired, was revoked or belongs to another cluster: check the kubeconfig user or the pod's "
              "service account");
    case 403:
      // A ResourceQuota refusal is a 403 as well, but it means "no room", not "not allowed".
      if (contains(message, "exceeded quota"))
        throw OrchestratorError(OrchestratorErrc::capacity, doing + answer + ": " + message);
      throw OrchestratorError(
          OrchestratorErrc::unavailable,
          "RBAC forbids " + doing + answer + ": " + message + ". Bind the service account to a Role in namespace " +
              namespace_ + " granting pods: create, get, list, watch, delete and pods/log: get "
              "(packaging/k8s/role.yaml)");
    case 404: throw OrchestratorError(OrchestratorErrc::not_found, doing + answer + ": " + message);
    case 409: throw OrchestratorError(OrchestratorErrc::conflict, doing + answer + ": " + message);
    case 422: throw OrchestratorError(OrchestratorErrc::invalid_spec, doing + answer + ": " + message);
    case 429:
      throw OrchestratorError(OrchestratorErrc::unavailable, doing + answer + ": " + message + "; retry later");
    default:
      if (status >= 500)
        throw OrchestratorError(OrchestratorErrc::unavailable, doing + answer + ": " + message + "; retry later");
      throw OrchestratorError(OrchestratorErrc::failed, doing + answer + ": " + message);
  }
}

}  // namespace synthorg::orchestrator_kubernetes
